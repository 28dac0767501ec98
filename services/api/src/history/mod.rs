//! The record, as an API node reads it: candles for `GET /v1/coins/{symbol}/candles`, and the
//! reference prices of 24 h ago for every entry's `change_24h_pct`.
//!
//! - **Opening.** The database (`TOPCOINS_DATABASE_URL`) is opened and migrated by
//!   [`History::maintain`], a task off the request path that retries until it can; until
//!   then, and whenever a read finds the database down, history answers `503
//!   history_unavailable` while everything else keeps serving from memory. Without a
//!   database URL history is always `503`.
//! - **Ranges in the past are immutable** once their last bucket has ended and
//!   [`SETTLE_MS`] more have passed (a recorder commits a snapshot moments after its notice):
//!   their responses are cached here by what they ask for, read from the database once.
//! - **A range with the open bucket** is read from the database and then brought up to the
//!   node's latest prices notice ([`candles::overlay`]): the recorder commits after the
//!   notice arrives, so the database alone may be one notice behind. Such responses are
//!   cached too, keyed by that notice, so the next notice makes a new key and a request never
//!   gets a candle older than the latest notice.
//! - **References.** Every [`REFERENCE_EVERY`] (and once opened) [`History::maintain`] reads
//!   each coin's price of 24 h before ([`CandleStore::closes_at`]) and hands them to the bus
//!   thread, which merges again when they changed.
//!
//! [`query`]: the candles query string; [`candles`]: the overlay and the bodies.

pub mod candles;
pub mod query;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use axum::http::HeaderValue;
use bytes::Bytes;
use compact_str::CompactString;
use moka::policy::EvictionPolicy;
use tokio::sync::watch;
use topcoins_history::{CandleStore, DatabaseUrl, Error, Interval, Range, Store, symbol_key};
use topcoins_runtime::Backoff;
use topcoins_schemas::{Caseless, SnapshotHash};

use crate::error::ApiError;
use crate::merge::References;
use crate::metrics::ApiMetrics;
use crate::query::Format;
use crate::view::View;
use candles::Current;
use query::CandlesQuery;

/// A range whose last bucket ended less than this long ago is still treated as open.
pub const SETTLE_MS: i64 = 5_000;
/// How often the reference prices of 24 h ago are read again.
pub const REFERENCE_EVERY: Duration = Duration::from_secs(60);
/// How far back the reference prices are.
pub const REFERENCE_AGE_MS: i64 = 24 * 3600 * 1000;
/// Bytes of candle responses kept.
const CACHE_BYTES: u64 = 64 << 20;
/// How long a response of a past range is kept at most: a backfill may still fill a past
/// range that was empty when first asked for.
const PAST_TTL: Duration = Duration::from_secs(600);
/// How long a response of an open range is kept at most (a newer notice never finds it).
const OPEN_TTL: Duration = Duration::from_secs(120);
/// Longest symbol looked up; a longer one is no coin's.
const MAX_SYMBOL_BYTES: usize = 64;
/// Responses also kept where a request finds them without the cache's bookkeeping (see
/// [`History::hot`]).
const HOT_SLOTS: usize = 64;

/// What a cached response was read for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    symbol: CompactString,
    interval: Interval,
    /// The first and one past the last bucket start the range holds (the bounds rounded up
    /// to bucket starts: ranges that hold the same buckets share an entry).
    first: i64,
    end: i64,
    limit: usize,
    cursor: Option<i64>,
    format: Format,
    /// `None` for a past range; the prices notice it was brought up to for an open one.
    notice: Option<Option<(SnapshotHash, i64)>>,
}

/// One response, ready to send.
pub struct Ready {
    pub body: Bytes,
    pub etag: HeaderValue,
    /// A past range: its bytes will not change.
    pub past: bool,
    /// `meta.next_cursor`, for the CSV body's header.
    pub next_cursor: Option<HeaderValue>,
    /// Its gzip and brotli variants, made on first use.
    pub variants: crate::encoding::Variants,
}

/// Why a read gave no response.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("unknown symbol")]
    UnknownSymbol,
    #[error(transparent)]
    Store(#[from] Error),
}

/// See the module docs.
pub struct History {
    url: Option<DatabaseUrl>,
    store: ArcSwapOption<Store>,
    cache: moka::future::Cache<Key, Arc<Ready>>,
    metrics: ApiMetrics,
    /// `topcoins_api_cache_{hits,misses}_total{cache="candles"}`, looked up once.
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    /// The last response read or found for each slot a key hashes to, until it expires: a
    /// request that finds its own there writes no shared memory but a reference count (a
    /// moka hit also records the access, which the worker threads contend for — the same
    /// reason `GET /` keeps hot slots, see `View::response`).
    hot: Box<[ArcSwapOption<Hot>]>,
    hasher: foldhash::fast::FixedState,
}

struct Hot {
    key: Key,
    ready: Arc<Ready>,
    until: std::time::Instant,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The first bucket start at or after `t`.
fn ceil(interval: Interval, t: i64) -> i64 {
    let start = interval.bucket_start(t);
    if start == t {
        t
    } else {
        start.saturating_add(interval.millis())
    }
}

/// The strong ETag of a body: 16 hex digits of its hash.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let etag = format!("\"{}\"", &blake3::hash(body).to_hex()[..16]);
    HeaderValue::from_str(&etag).expect("hex is a valid header value")
}

impl History {
    pub fn new(url: Option<DatabaseUrl>, metrics: ApiMetrics) -> Self {
        Self {
            url,
            store: ArcSwapOption::empty(),
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|_, ready: &Arc<Ready>| ready.body.len().try_into().unwrap_or(u32::MAX))
                .expire_after(Expiry)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            hot: (0..HOT_SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: foldhash::fast::FixedState::default(),
            hits: metrics.cache_hits.with_label_values(&["candles"]),
            misses: metrics.cache_misses.with_label_values(&["candles"]),
            metrics,
        }
    }

    /// The open store, or why there is none.
    pub(crate) fn store(&self) -> Result<Arc<Store>, ApiError> {
        match (&self.url, self.store.load_full()) {
            (_, Some(store)) => Ok(store),
            (None, None) => Err(ApiError::history_unavailable(
                "no history database is configured (TOPCOINS_DATABASE_URL)",
            )),
            (Some(_), None) => Err(ApiError::history_unavailable(
                "the history database is not open yet; retrying",
            )),
        }
    }

    /// Opens and migrates the database (retrying until it can), then reads the reference
    /// prices every [`REFERENCE_EVERY`], sending them when they change. Never returns while a
    /// database is configured; the caller ends it with the node. Without one it returns at
    /// once, dropping `references` (the prices stay unknown).
    pub async fn maintain(self: Arc<Self>, references: watch::Sender<Arc<References>>) {
        let Some(url) = self.url.clone() else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let store = loop {
            let opened = async {
                let store = Store::open(&url).await?;
                store.migrate().await?;
                Ok::<_, Error>(store)
            };
            match opened.await {
                Ok(store) => break Arc::new(store),
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(database = %url, error = %e, retry_in = ?wait, "history database unavailable");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        tracing::info!(database = %url, "history database open");
        self.store.store(Some(store.clone()));
        let mut every = tokio::time::interval(REFERENCE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.metrics.history_reads.inc();
            match store.closes_at(now_ms() - REFERENCE_AGE_MS).await {
                Ok(closes) => {
                    let prices = closes
                        .into_iter()
                        .filter_map(|c| Some((c.symbol, c.price?.close)))
                        .collect();
                    let refs = References::new(prices);
                    if refs.id != references.borrow().id {
                        tracing::debug!(
                            coins = refs.prices.len(),
                            "reference prices of 24 h ago changed"
                        );
                        references.send_replace(Arc::new(refs));
                    }
                }
                Err(e) => {
                    self.count_error(&e);
                    tracing::warn!(error = %e, "reference prices of 24 h ago unavailable; keeping the last ones");
                }
            }
        }
    }

    /// A failed read of the database as the API answers it (`503`), counted.
    pub(crate) fn failed(&self, e: &Error) -> ApiError {
        self.count_error(e);
        tracing::debug!(error = %e, "history database read failed");
        match e {
            Error::InvalidRange { .. } | Error::InvalidCursor(_) => {
                ApiError::bad_request("invalid_range", e.to_string())
            }
            _ => ApiError::history_unavailable("the history database is unavailable"),
        }
    }

    fn count_error(&self, e: &Error) {
        let reason = match e {
            Error::Unavailable(_) | Error::WorkerStopped => "unavailable",
            _ => "database",
        };
        self.metrics
            .history_errors
            .with_label_values(&[reason])
            .inc();
    }

    /// The key of the answer `q` asks for at `now`, and whether its range is in the past.
    fn key(
        &self,
        symbol: &str,
        q: &CandlesQuery,
        views: &ArcSwapOption<View>,
        now: i64,
    ) -> (Key, bool) {
        let end = ceil(q.interval, q.to);
        let past = end <= q.interval.bucket_start(now) && now.saturating_sub(end) >= SETTLE_MS;
        // A past range needs no view (and a hit takes no reference to one).
        let notice = (!past).then(|| {
            views
                .load()
                .as_ref()
                .map(|v| (v.prices.hash, unix_ms(v.prices.as_of)))
        });
        let key = Key {
            symbol: symbol_key(symbol),
            interval: q.interval,
            first: ceil(q.interval, q.from),
            end,
            limit: q.limit,
            cursor: q.cursor.map(|c| c.0),
            format: q.format,
            notice,
        };
        (key, past)
    }

    fn slot(&self, key: &Key) -> &ArcSwapOption<Hot> {
        &self.hot[std::hash::BuildHasher::hash_one(&self.hasher, key) as usize % HOT_SLOTS]
    }

    /// The answer for `q` if it is in its hot slot (and so current: see [`History::candles`]);
    /// `None` for anything else, which [`History::candles`] then answers.
    pub fn hot(
        &self,
        symbol: &str,
        q: &CandlesQuery,
        views: &ArcSwapOption<View>,
        now: i64,
    ) -> Option<Arc<Ready>> {
        if symbol.len() > MAX_SYMBOL_BYTES || self.store.load().is_none() {
            return None;
        }
        let (key, _) = self.key(symbol, q, views, now);
        let hot = self.slot(&key).load();
        let hot = hot.as_ref()?;
        if hot.key == key && hot.until > std::time::Instant::now() {
            self.count_lookup(true);
            Some(hot.ready.clone())
        } else {
            None
        }
    }

    /// The response for `symbol`'s candles as `q` asks, at `now` (Unix ms), brought up to
    /// the prices of the view in force.
    pub async fn candles(
        &self,
        symbol: &str,
        q: &CandlesQuery,
        views: &ArcSwapOption<View>,
        now: i64,
    ) -> Result<Arc<Ready>, ApiError> {
        if symbol.len() > MAX_SYMBOL_BYTES {
            return Err(ApiError::unknown_symbol(symbol));
        }
        let store = self.store()?;
        let (key, past) = self.key(symbol, q, views, now);
        let slot = self.slot(&key);
        if let Some(hot) = &*slot.load()
            && hot.key == key
            && hot.until > std::time::Instant::now()
        {
            self.count_lookup(true);
            return Ok(hot.ready.clone());
        }
        let hot = |ready: &Arc<Ready>, key: Key| {
            let ttl = if ready.past { PAST_TTL } else { OPEN_TTL };
            slot.store(Some(Arc::new(Hot {
                key,
                ready: ready.clone(),
                until: std::time::Instant::now() + ttl,
            })));
        };
        if let Some(ready) = self.cache.get(&key).await {
            self.count_lookup(true);
            hot(&ready, key);
            return Ok(ready);
        }
        self.count_lookup(false);
        let view = views.load_full();
        let read = self.read(store, key.symbol.clone(), *q, view, past);
        self.cache
            .try_get_with(key.clone(), read)
            .await
            .inspect(|ready| hot(ready, key))
            .map_err(|e| match &*e {
                Failure::UnknownSymbol => ApiError::unknown_symbol(symbol),
                Failure::Store(e) => {
                    self.count_error(e);
                    tracing::debug!(error = %e, "candles unavailable");
                    ApiError::history_unavailable("the history database is unavailable")
                }
            })
    }

    fn count_lookup(&self, hit: bool) {
        if hit { &self.hits } else { &self.misses }.inc();
    }

    async fn read(
        &self,
        store: Arc<Store>,
        symbol: CompactString,
        q: CandlesQuery,
        view: Option<Arc<View>>,
        past: bool,
    ) -> Result<Arc<Ready>, Failure> {
        self.metrics.history_reads.inc();
        let range = Range {
            symbol: symbol.to_string(),
            interval: q.interval,
            from: q.from,
            to: q.to,
            limit: q.limit,
            cursor: q.cursor,
        };
        let mut page = store.range(&range).await?;
        let listed = view.as_ref().and_then(|v| v.list.merged().find(&symbol));
        if !past
            && let Some(view) = &view
            && let Some(current) = current_price(view, &symbol, listed)
        {
            let lower = match q.cursor {
                Some(c) => q.from.max(c.0.saturating_add(1)),
                None => q.from,
            };
            candles::overlay(
                &mut page,
                &symbol,
                q.interval,
                (lower, q.to),
                q.limit,
                current,
            );
        }
        if page.candles.is_empty() && listed.is_none() && !self.recorded(&store, &symbol).await? {
            return Err(Failure::UnknownSymbol);
        }
        let body = candles::body(&page, &symbol, q.interval, q.format);
        Ok(Arc::new(Ready {
            etag: etag_of(&body),
            body: Bytes::from(body),
            past,
            next_cursor: page
                .next_cursor
                .map(|c| HeaderValue::from_str(&c.to_string()).expect("digits")),
            variants: Default::default(),
        }))
    }

    /// Whether the record has any candle of `symbol`: asked only for a symbol outside the
    /// top list whose range came back empty. Recorded coins have candles at every interval,
    /// backfilled ones at `1h` and `1d`.
    async fn recorded(&self, store: &Store, symbol: &str) -> Result<bool, Error> {
        for interval in [Interval::D1, Interval::H1] {
            self.metrics.history_reads.inc();
            let page = store
                .range(&Range {
                    symbol: symbol.to_owned(),
                    interval,
                    from: i64::MIN,
                    to: i64::MAX,
                    limit: 1,
                    cursor: None,
                })
                .await?;
            if !page.candles.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// What the latest prices notice says of `symbol`, by the recorder's rule (the coin of that
/// symbol with the largest market cap): the top list's entry when it is priced by the price
/// source, else a scan of the price snapshot (a coin outside the ranking; rare).
fn current_price(view: &View, symbol: &str, listed: Option<usize>) -> Option<Current> {
    let merged = view.list.merged();
    let coin = match listed {
        Some(i) => merged.priced_by(i),
        None => merged
            .prices()
            .coins
            .iter()
            .filter(|c| Caseless(&c.symbol) == Caseless(symbol))
            .reduce(|best, c| if c.outranks(best) { c } else { best }),
    }?;
    Some(Current {
        time: unix_ms(view.prices.as_of),
        price_usd: coin.price_usd,
        market_cap_usd: coin.market_cap_usd,
    })
}

/// Past ranges live for [`PAST_TTL`], open ones for [`OPEN_TTL`] (their key names a notice,
/// so a newer notice never finds them anyway).
struct Expiry;

impl moka::Expiry<Key, Arc<Ready>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        ready: &Arc<Ready>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if ready.past { PAST_TTL } else { OPEN_TTL })
    }
}
