//! Exchange metrics' records, and the accounts that watch them: users, their API keys (stored
//! only as a SHA-256 digest) and their watchlists (migration 0005). Two traits next to
//! [`CandleStore`](crate::CandleStore), implemented by both backends and held to the same
//! behavioural suite.
//!
//! **Records** are one value per metric per poll, unchanged polls included (the recorder
//! learns of those from still-current notices). A record is keyed by (metric, time), so a
//! snapshot written twice changes nothing. Reads page by time with the candles' [`Cursor`].

use std::future::Future;

use compact_str::CompactString;

use crate::{Cursor, Error, MAX_LIMIT};

/// One sample of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The metric's id, `exchange:pair:metric`.
    pub metric: CompactString,
    /// Unix ms of the poll.
    pub time: i64,
    pub value: f64,
}

/// A range of one metric's records: `from..=to` (Unix ms), ascending, at most `limit`, after
/// `cursor`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRange {
    pub metric: String,
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl RecordRange {
    /// `(lower, upper, limit + 1)` as the backends bind them.
    pub(crate) fn bounds(&self) -> Result<(i64, i64, i64), Error> {
        if self.from > self.to {
            return Err(Error::InvalidRange {
                from: self.from,
                to: self.to,
            });
        }
        let lower = match self.cursor {
            Some(Cursor(after)) => self.from.max(after.saturating_add(1)),
            None => self.from,
        };
        Ok((lower, self.to, self.limit.clamp(1, MAX_LIMIT) as i64 + 1))
    }
}

/// One page of records: `(time, value)` ascending.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordPage {
    pub records: Vec<(i64, f64)>,
    /// `Some` when more records exist in the range.
    pub next_cursor: Option<Cursor>,
}

impl RecordPage {
    pub(crate) fn from_rows(mut records: Vec<(i64, f64)>, limit_plus_one: i64) -> Self {
        let limit = (limit_plus_one - 1) as usize;
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|(t, _)| Cursor(*t))
        } else {
            None
        };
        RecordPage {
            records,
            next_cursor,
        }
    }
}

/// The record of exchange metrics.
pub trait RecordStore: Send + Sync {
    /// Writes `records` in one transaction; a record already there (same metric and time) is
    /// left as it is.
    fn write_records(&self, records: Vec<Record>)
    -> impl Future<Output = Result<(), Error>> + Send;

    fn records(
        &self,
        range: &RecordRange,
    ) -> impl Future<Output = Result<RecordPage, Error>> + Send;

    /// Deletes records older than `before`, in steps of [`PRUNE_STEP`](crate::PRUNE_STEP)
    /// rows; returns how many.
    fn prune_records(&self, before: i64) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub created: i64,
}

/// An API key as stored: never the key, only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    /// The key's first characters, for telling keys apart in a listing.
    pub prefix: String,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: Option<i64>,
}

/// One metric on a user's watchlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// `exchange:pair:metric`.
    pub metric: String,
    pub exchange: String,
    pub pair: String,
    pub created: i64,
}

/// Users, keys and watchlists.
pub trait AccountStore: Send + Sync {
    /// Creates `user` with its first key, in one transaction.
    fn create_user(
        &self,
        user: User,
        key: ApiKey,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Adds a key for an existing user (`key.user_id`).
    fn add_key(&self, key: ApiKey) -> impl Future<Output = Result<(), Error>> + Send;

    /// The key whose digest is `hash`, revoked or not.
    fn key_by_hash(
        &self,
        hash: [u8; 32],
    ) -> impl Future<Output = Result<Option<ApiKey>, Error>> + Send;

    /// A user's keys, revoked ones included, by id.
    fn keys(&self, user_id: &str) -> impl Future<Output = Result<Vec<ApiKey>, Error>> + Send;

    /// Revokes `user_id`'s key `key_id` at `now`; `false` if the user has no such key that is
    /// not revoked already.
    fn revoke_key(
        &self,
        user_id: &str,
        key_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Notes that a key was used at `now`.
    fn touch_key(&self, key_id: &str, now: i64) -> impl Future<Output = Result<(), Error>> + Send;

    /// Adds a metric to a user's watchlist; `false` if it was there already.
    fn watch(
        &self,
        user_id: &str,
        watch: Watch,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Removes a metric from a user's watchlist; `false` if it was not there.
    fn unwatch(
        &self,
        user_id: &str,
        metric: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// A user's watchlist, by metric id, after `after`, at most `limit`.
    fn watchlist(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Watch>, Error>> + Send;

    /// The pairs of `exchange` on anyone's watchlist, sorted.
    fn watched_pairs(
        &self,
        exchange: &str,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
}

pub(crate) fn hash_from(bytes: &[u8]) -> Result<[u8; 32], Error> {
    bytes
        .try_into()
        .map_err(|_| Error::Corrupt(format!("a key digest of {} bytes", bytes.len())))
}

/// The statements both backends share. Placeholders are `$n`, numbered in the order they
/// first appear: PostgreSQL's own, and SQLite's named parameters bound by position.
pub(crate) mod sql {
    /// Metrics one records prune step visits (each its own transaction).
    pub const METRICS_PER_PRUNE_STEP: usize = 100;

    pub const SELECT_RECORDS: &str = "SELECT time_ms, value FROM metric_records
         WHERE metric = $1 AND time_ms >= $2 AND time_ms <= $3
         ORDER BY time_ms LIMIT $4";
    pub const NEXT_RECORDED_METRIC: &str =
        "SELECT metric FROM metric_records WHERE metric > $1 ORDER BY metric LIMIT 1";
    pub const DELETE_OLD_RECORDS: &str =
        "DELETE FROM metric_records WHERE metric = $1 AND time_ms < $2";

    pub const INSERT_USER: &str = "INSERT INTO users (id, name, created_ms) VALUES ($1, $2, $3)";
    pub const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = $1";
    pub const INSERT_KEY: &str =
        "INSERT INTO api_keys (id, user_id, prefix, hash, created_ms) VALUES ($1, $2, $3, $4, $5)";
    pub const SELECT_KEY_BY_HASH: &str =
        "SELECT id, user_id, prefix, hash, created_ms, last_used_ms, revoked_ms
         FROM api_keys WHERE hash = $1";
    pub const SELECT_KEYS: &str =
        "SELECT id, user_id, prefix, hash, created_ms, last_used_ms, revoked_ms
         FROM api_keys WHERE user_id = $1 ORDER BY id";
    pub const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_ms = $1
         WHERE id = $2 AND user_id = $3 AND revoked_ms IS NULL";
    pub const TOUCH_KEY: &str = "UPDATE api_keys SET last_used_ms = $1 WHERE id = $2";

    pub const INSERT_WATCH: &str =
        "INSERT INTO watchlist (user_id, metric, exchange, pair, created_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    pub const DELETE_WATCH: &str = "DELETE FROM watchlist WHERE user_id = $1 AND metric = $2";
    pub const SELECT_WATCHLIST: &str = "SELECT metric, exchange, pair, created_ms FROM watchlist
         WHERE user_id = $1 AND metric > $2 ORDER BY metric LIMIT $3";
    pub const SELECT_WATCHED_PAIRS: &str =
        "SELECT DISTINCT pair FROM watchlist WHERE exchange = $1 ORDER BY pair";
}
