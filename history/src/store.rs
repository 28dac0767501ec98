//! The storage trait every backend implements, its queries, and [`Store`], the backend a
//! [`DatabaseUrl`] names.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use crate::accounts::{
    AccountStore, ApiKey, Record, RecordPage, RecordRange, RecordStore, User, Watch,
};
use crate::alerts::{
    AlertPage, AlertState, AlertStore, Attempt, Channel, Decision, Message, Next, Rotation, Rule,
};
use crate::{
    BackfillProgress, Batch, Candle, DatabaseUrl, Error, Interval, PostgresStore, Rolled, Source,
    SqliteStore,
};

/// Rows a range query returns at most, whatever it asks for.
pub const MAX_LIMIT: usize = 10_000;

/// Rows one retention step deletes at most, in its own short transaction: writers wait for
/// one step, never for a whole sweep.
pub const PRUNE_STEP: usize = 1_000;

/// Where the next page of a range starts: the time of the last row returned. Rows ascend by
/// time and there is one per bucket, so "after this time" is a stable keyset position, and
/// rows written meanwhile are neither skipped nor repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        s.parse()
            .map(Cursor)
            .map_err(|_| Error::InvalidCursor(s.to_owned()))
    }
}

/// A range query: candles of one coin and interval whose bucket starts in `from..to`
/// (Unix ms, `to` excluded), ascending, at most `limit`, after `cursor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub symbol: String,
    pub interval: Interval,
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Range {
    /// The bounds as the backends bind them: `(symbol key, lower, upper, limit + 1)`. One row
    /// more than asked tells whether another page exists.
    pub(crate) fn bounds(&self) -> Result<(compact_str::CompactString, i64, i64, i64), Error> {
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
        let limit = self.limit.clamp(1, MAX_LIMIT) as i64 + 1;
        Ok((crate::symbol_key(&self.symbol), lower, self.to, limit))
    }
}

/// One page of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub candles: Vec<Candle>,
    /// `Some` when more rows exist in the range.
    pub next_cursor: Option<Cursor>,
}

impl Page {
    /// Cuts the `limit + 1` rows a backend read to a page.
    pub(crate) fn from_rows(mut candles: Vec<Candle>, limit_plus_one: i64) -> Self {
        let limit = (limit_plus_one - 1) as usize;
        let next_cursor = if candles.len() > limit {
            candles.truncate(limit);
            candles.last().map(|c| Cursor(c.time))
        } else {
            None
        };
        Page {
            candles,
            next_cursor,
        }
    }
}

/// The record of candles. One implementation per backend (`sqlite`, `postgres`), each held
/// to the same behavioural suite (`tests/suite`).
pub trait CandleStore: Send + Sync {
    /// Brings the schema to this build's version. Called once at start; safe to call again.
    fn migrate(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// Merges one batch (the `1m` candles of one or more snapshots) in one transaction; the
    /// coarser intervals answer with them at once (see [`crate::rollup`]), and a minute
    /// before the roll-up's mark is written into them too. Recorded candles replace
    /// backfilled ones of their bucket. Applying a batch again changes nothing (the merge is
    /// a join, see [`Candle::merge`]).
    fn apply(&self, batch: Batch) -> impl Future<Output = Result<(), Error>> + Send;

    /// Rolls the `1m` rows from the mark up to `until` (Unix ms, floored to a minute) into
    /// the coarser intervals and moves the mark there, in one transaction. `until` at or
    /// before the mark does nothing. No answer changes: reads already merge the minutes not
    /// rolled up. What makes `1m` retention possible (it spares minutes at or after the mark).
    fn rollup(&self, until: i64) -> impl Future<Output = Result<Rolled, Error>> + Send;

    /// Writes backfilled candles as the provider gave them: a backfilled row is replaced, a
    /// recorded one is left alone.
    fn upsert_backfilled(
        &self,
        candles: Vec<Candle>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// One page of a range; only candles with a price.
    fn range(&self, range: &Range) -> impl Future<Output = Result<Page, Error>> + Send;

    /// Every coin's latest candle with a price in `interval`, by symbol.
    fn latest(&self, interval: Interval)
    -> impl Future<Output = Result<Vec<Candle>, Error>> + Send;

    /// Deletes the candles of `interval` whose bucket starts before `before` (Unix ms), in
    /// steps of at most [`PRUNE_STEP`] rows per transaction; returns how many went. `1m`
    /// rows at or after the roll-up's mark are kept whatever `before` says.
    fn prune(
        &self,
        interval: Interval,
        before: i64,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// What the backfill has fetched, every coin and interval it has a record of.
    fn backfill_progress(
        &self,
    ) -> impl Future<Output = Result<Vec<BackfillProgress>, Error>> + Send;

    /// Records what the backfill has fetched for one coin and interval, replacing the record
    /// before (the caller widens it; the store keeps what it is given).
    fn record_backfill_progress(
        &self,
        progress: BackfillProgress,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// What each coin's price was at `at` (Unix ms), by symbol: of every interval's latest
    /// priced candle whose closing sample came at or before `at`, the one closed last, the
    /// finest interval of equal times. For recorded candles that is the last sample at or
    /// before `at` (a bucket holding `at` counts only if it closed by then, so no sample
    /// after `at` leaks in); where the fine intervals are pruned the coarser ones answer. A
    /// coin with no such candle is not in the answer. The API's 24 h change reads it.
    fn closes_at(&self, at: i64) -> impl Future<Output = Result<Vec<Candle>, Error>> + Send;
}

/// The answer of [`CandleStore::closes_at`] from each interval's candidates (every coin's
/// latest priced candle closed at or before the time asked for), by symbol.
pub(crate) fn pick_closes(candidates: impl IntoIterator<Item = Candle>) -> Vec<Candle> {
    let mut best: std::collections::BTreeMap<compact_str::CompactString, Candle> =
        std::collections::BTreeMap::new();
    for c in candidates {
        let Some(close) = c.price.map(|p| p.close_time) else {
            continue;
        };
        match best.get(&c.symbol) {
            Some(held)
                if (
                    held.price.map_or(i64::MIN, |p| p.close_time),
                    std::cmp::Reverse(held.interval),
                ) >= (close, std::cmp::Reverse(c.interval)) => {}
            _ => {
                best.insert(c.symbol.clone(), c);
            }
        }
    }
    best.into_values().collect()
}

/// Checks what [`CandleStore::upsert_backfilled`] is given.
pub(crate) fn check_backfilled(candles: &[Candle]) -> Result<(), Error> {
    for c in candles {
        let ok = c.source != Source::Recorded
            && c.price.is_some()
            && c.interval.bucket_start(c.time) == c.time;
        if !ok {
            return Err(Error::InvalidCandle(format!(
                "{} {} at {}: a backfilled candle needs a provider source, a price and an aligned time",
                c.symbol, c.interval, c.time
            )));
        }
    }
    Ok(())
}

/// How long each interval's candles are kept; `None` is forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention(pub [(Interval, Option<Duration>); 6]);

impl Default for Retention {
    fn default() -> Self {
        Retention(Interval::ALL.map(|i| (i, i.default_retention())))
    }
}

impl Retention {
    /// One sweep at `now` (Unix ms): every interval with a limit is pruned.
    pub async fn sweep(&self, store: &impl CandleStore, now: i64) -> Result<u64, Error> {
        let mut deleted = 0;
        for (interval, keep) in self.0 {
            if let Some(keep) = keep {
                let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
                deleted += store.prune(interval, now.saturating_sub(keep)).await?;
            }
        }
        Ok(deleted)
    }
}

/// The backend a [`DatabaseUrl`] names, chosen at run time.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens the database (not yet migrated).
    pub async fn open(url: &DatabaseUrl) -> Result<Self, Error> {
        match url {
            DatabaseUrl::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path).await?)),
            DatabaseUrl::Postgres(url) => Ok(Store::Postgres(PostgresStore::connect(url)?)),
        }
    }

    /// `sqlite` or `postgresql`, for logs and metric labels.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl CandleStore for Store {
    async fn migrate(&self) -> Result<(), Error> {
        delegate!(self, s => s.migrate())
    }
    async fn apply(&self, batch: Batch) -> Result<(), Error> {
        delegate!(self, s => s.apply(batch))
    }
    async fn rollup(&self, until: i64) -> Result<Rolled, Error> {
        delegate!(self, s => s.rollup(until))
    }
    async fn upsert_backfilled(&self, candles: Vec<Candle>) -> Result<(), Error> {
        delegate!(self, s => s.upsert_backfilled(candles))
    }
    async fn range(&self, range: &Range) -> Result<Page, Error> {
        delegate!(self, s => s.range(range))
    }
    async fn latest(&self, interval: Interval) -> Result<Vec<Candle>, Error> {
        delegate!(self, s => s.latest(interval))
    }
    async fn prune(&self, interval: Interval, before: i64) -> Result<u64, Error> {
        delegate!(self, s => s.prune(interval, before))
    }
    async fn backfill_progress(&self) -> Result<Vec<BackfillProgress>, Error> {
        delegate!(self, s => s.backfill_progress())
    }
    async fn record_backfill_progress(&self, progress: BackfillProgress) -> Result<(), Error> {
        delegate!(self, s => s.record_backfill_progress(progress))
    }
    async fn closes_at(&self, at: i64) -> Result<Vec<Candle>, Error> {
        delegate!(self, s => s.closes_at(at))
    }
}

impl RecordStore for Store {
    async fn write_records(&self, records: Vec<Record>) -> Result<(), Error> {
        delegate!(self, s => s.write_records(records))
    }
    async fn records(&self, range: &RecordRange) -> Result<RecordPage, Error> {
        delegate!(self, s => s.records(range))
    }
    async fn prune_records(&self, before: i64) -> Result<u64, Error> {
        delegate!(self, s => s.prune_records(before))
    }
}

impl AccountStore for Store {
    async fn create_user(&self, user: User, key: ApiKey) -> Result<(), Error> {
        delegate!(self, s => s.create_user(user, key))
    }
    async fn add_key(&self, key: ApiKey) -> Result<(), Error> {
        delegate!(self, s => s.add_key(key))
    }
    async fn key_by_hash(&self, hash: [u8; 32]) -> Result<Option<ApiKey>, Error> {
        delegate!(self, s => s.key_by_hash(hash))
    }
    async fn keys(&self, user_id: &str) -> Result<Vec<ApiKey>, Error> {
        delegate!(self, s => s.keys(user_id))
    }
    async fn revoke_key(&self, user_id: &str, key_id: &str, now: i64) -> Result<bool, Error> {
        delegate!(self, s => s.revoke_key(user_id, key_id, now))
    }
    async fn touch_key(&self, key_id: &str, now: i64) -> Result<(), Error> {
        delegate!(self, s => s.touch_key(key_id, now))
    }
    async fn watch(&self, user_id: &str, watch: Watch) -> Result<bool, Error> {
        delegate!(self, s => s.watch(user_id, watch))
    }
    async fn unwatch(&self, user_id: &str, metric: &str) -> Result<bool, Error> {
        delegate!(self, s => s.unwatch(user_id, metric))
    }
    async fn watchlist(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Watch>, Error> {
        delegate!(self, s => s.watchlist(user_id, after, limit))
    }
    async fn watched_pairs(&self, exchange: &str) -> Result<Vec<String>, Error> {
        delegate!(self, s => s.watched_pairs(exchange))
    }
}

impl AlertStore for Store {
    async fn create_rule(&self, rule: Rule, channel: Channel) -> Result<(Rule, Channel), Error> {
        delegate!(self, s => s.create_rule(rule, channel))
    }
    async fn rules(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Rule, Channel)>, Error> {
        delegate!(self, s => s.rules(user_id, after, limit))
    }
    async fn rule(&self, user_id: &str, id: &str) -> Result<Option<(Rule, Channel)>, Error> {
        delegate!(self, s => s.rule(user_id, id))
    }
    async fn delete_rule(&self, user_id: &str, id: &str) -> Result<bool, Error> {
        delegate!(self, s => s.delete_rule(user_id, id))
    }
    async fn rotate_secret(
        &self,
        user_id: &str,
        rule_id: &str,
        secret: String,
        previous_until: i64,
        now: i64,
    ) -> Result<Rotation, Error> {
        delegate!(self, s => s.rotate_secret(user_id, rule_id, secret, previous_until, now))
    }
    async fn all_rules(&self) -> Result<Vec<(Rule, Channel)>, Error> {
        delegate!(self, s => s.all_rules())
    }
    async fn alert_states(&self) -> Result<Vec<AlertState>, Error> {
        delegate!(self, s => s.alert_states())
    }
    async fn commit_alerts(&self, decision: Decision) -> Result<Vec<String>, Error> {
        delegate!(self, s => s.commit_alerts(decision))
    }
    async fn due_messages(&self, now: i64, limit: usize) -> Result<Vec<(Message, Channel)>, Error> {
        delegate!(self, s => s.due_messages(now, limit))
    }
    async fn claim(
        &self,
        message_id: &str,
        attempts: i32,
        now: i64,
        until: i64,
    ) -> Result<bool, Error> {
        delegate!(self, s => s.claim(message_id, attempts, now, until))
    }
    async fn pending(&self) -> Result<(u64, Option<i64>), Error> {
        delegate!(self, s => s.pending())
    }
    async fn record_attempt(
        &self,
        attempt: Attempt,
        channel_id: &str,
        next: Next,
    ) -> Result<(), Error> {
        delegate!(self, s => s.record_attempt(attempt, channel_id, next))
    }
    async fn alerts(
        &self,
        user_id: &str,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<AlertPage, Error> {
        delegate!(self, s => s.alerts(user_id, before, limit))
    }
}
