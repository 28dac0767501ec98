//! What an API node knows: the snapshots it holds, the notices in force, and the prepared
//! view every request reads.
//!
//! Snapshots live in moka caches keyed by hash, so a hash seen before (prices often flip
//! back) is never fetched again; moka's `try_get_with` also makes concurrent asks for one
//! hash share a single fetch. The caches use plain LRU eviction: under the default TinyLFU
//! admission a brand-new key — and every new snapshot is one — can be refused when the cache
//! is full. The merge is cached per (prices hash, ranking hash) pair. The view a request
//! reads is one `ArcSwap` load: no lock on the request path.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::http::HeaderValue;
use bytes::Bytes;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use time::OffsetDateTime;
use topcoins_bus::{SnapshotStore, StoreErrorKind};
use topcoins_schemas::{HashNotice, Kind, PriceSnapshot, RankingSnapshot, Snapshot, SnapshotHash};
use tracing::Instrument;

use crate::merge::{Ranked, merge};
use crate::metrics::ApiMetrics;
use crate::query::Format;
use crate::render::{Meta, Prepared, rfc3339};

/// Snapshots of each kind kept in memory.
const SNAPSHOTS_KEPT: u64 = 8;
/// Merged and prepared lists kept in memory.
const MERGES_KEPT: u64 = 4;

/// Bytes of prepared responses a view keeps, across limits and formats.
const RESPONSE_BYTES_KEPT: u64 = 16 << 20;
/// Responses a view also keeps where a request finds them without the cache's bookkeeping
/// (see [`View::response`]), and the largest body kept there.
const HOT_SLOTS: usize = 16;
const HOT_BODY_MAX: usize = 64 << 10;

type ResponseKey = (usize, Format, bool);

/// One response, ready to send: the body and its ETag.
pub struct Ready {
    pub body: Bytes,
    pub etag: HeaderValue,
}

/// What a request serves.
pub struct View {
    pub prepared: Arc<Prepared>,
    pub meta: Meta,
    pub prices: HashNotice,
    pub ranking: HashNotice,
    /// `x-topcoins-as-of`, formatted once.
    pub as_of_header: HeaderValue,
    /// Responses already built for this view, by (entries, format, stale): the common request
    /// is a cache hit and a reference-counted clone, no copy.
    responses: moka::sync::Cache<ResponseKey, Arc<Ready>>,
    /// The first responses asked for, each in the slot its key hashes to, for the life of the
    /// view: a request that finds its response here writes no shared memory but the reference
    /// count (a cache hit also records the access, which two threads contend for).
    hot: [std::sync::OnceLock<(ResponseKey, Arc<Ready>)>; HOT_SLOTS],
}

impl View {
    fn new(prepared: Arc<Prepared>, prices: &HashNotice, ranking: &HashNotice) -> Self {
        let as_of = prices.as_of.min(ranking.as_of);
        Self {
            meta: Meta::new(prices, ranking),
            prepared,
            prices: prices.clone(),
            ranking: ranking.clone(),
            as_of_header: HeaderValue::from_str(&rfc3339(as_of)).expect("rfc 3339 is ascii"),
            responses: moka::sync::Cache::builder()
                .max_capacity(RESPONSE_BYTES_KEPT)
                .weigher(|_, ready: &Arc<Ready>| ready.body.len().try_into().unwrap_or(u32::MAX))
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            hot: Default::default(),
        }
    }

    /// The older of the two snapshot times: how old the data is, at most.
    pub fn as_of(&self) -> OffsetDateTime {
        self.prices.as_of.min(self.ranking.as_of)
    }

    /// The response for the first `n` entries (`n` ≤ the count) in `format`.
    pub fn response(&self, n: usize, format: Format, stale: bool) -> Arc<Ready> {
        let key = (n, format, stale);
        let slot = &self.hot[(n * 4 + format as usize * 2 + stale as usize) % HOT_SLOTS];
        if let Some((held, ready)) = slot.get()
            && *held == key
        {
            return ready.clone();
        }
        let ready = self.build_response(key);
        if ready.body.len() <= HOT_BODY_MAX {
            // Taken only if still free; a slot keeps its first key.
            let _ = slot.set((key, ready.clone()));
        }
        ready
    }

    fn build_response(&self, (n, format, stale): ResponseKey) -> Arc<Ready> {
        self.responses.get_with((n, format, stale), || {
            let (body, tag) = match format {
                Format::Json => (
                    self.prepared.json_body(n, &self.meta, stale),
                    if stale { "js" } else { "j" },
                ),
                Format::Csv => (self.prepared.csv_body(n), "c"),
            };
            let etag = format!("\"{}-{n}-{tag}\"", self.meta.tag);
            Arc::new(Ready {
                body: Bytes::from(body),
                etag: HeaderValue::from_str(&etag).expect("etag is ascii"),
            })
        })
    }
}

/// Why a notice did not change what is served.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("snapshot fetch failed: {0}")]
    Fetch(String),
    #[error("snapshot {0} does not match its hash")]
    HashMismatch(SnapshotHash),
    #[error("snapshot does not decode: {0}")]
    Decode(String),
}

fn cache<K, V>(capacity: u64) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(EvictionPolicy::lru())
        .build()
}

pub struct Node {
    store: SnapshotStore,
    metrics: ApiMetrics,
    prices: Cache<SnapshotHash, Arc<PriceSnapshot>>,
    ranking: Cache<SnapshotHash, Arc<RankingSnapshot>>,
    merged: Cache<(SnapshotHash, SnapshotHash), Arc<Prepared>>,
    current_prices: Option<(HashNotice, Arc<PriceSnapshot>)>,
    /// The ranking in force, indexed for merging (see [`Ranked`]).
    current_ranking: Option<(HashNotice, Arc<Ranked>)>,
    view: Arc<ArcSwapOption<View>>,
}

impl Node {
    pub fn new(store: SnapshotStore, metrics: ApiMetrics, view: Arc<ArcSwapOption<View>>) -> Self {
        Self {
            store,
            metrics,
            prices: cache(SNAPSHOTS_KEPT),
            ranking: cache(SNAPSHOTS_KEPT),
            merged: cache(MERGES_KEPT),
            current_prices: None,
            current_ranking: None,
            view,
        }
    }

    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    fn current(&self, kind: Kind) -> Option<&HashNotice> {
        match kind {
            Kind::Prices => self.current_prices.as_ref().map(|(n, _)| n),
            Kind::Ranking => self.current_ranking.as_ref().map(|(n, _)| n),
        }
    }

    /// Takes a notice into account: fetches its snapshot if new to this node, and rebuilds
    /// the view. Returns whether what is served changed. A notice older than the one in force
    /// (a late warm-up read racing a live notice) is ignored.
    pub async fn apply(&mut self, kind: Kind, notice: HashNotice) -> Result<bool, ApplyError> {
        if let Some(current) = self.current(kind)
            && (current.hash == notice.hash || current.as_of > notice.as_of)
        {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        match kind {
            Kind::Prices => {
                let snapshot = self
                    .snapshot(&self.prices, kind, notice.hash)
                    .instrument(tracing::info_span!("fetch_by_hash", hash = %notice.hash))
                    .await?;
                self.current_prices = Some((notice, snapshot));
            }
            Kind::Ranking => {
                let snapshot = self
                    .snapshot(&self.ranking, kind, notice.hash)
                    .instrument(tracing::info_span!("fetch_by_hash", hash = %notice.hash))
                    .await?;
                self.current_ranking = Some((notice, Arc::new(Ranked::new(snapshot))));
            }
        }
        let fetched = started.elapsed();
        self.rebuild()
            .instrument(tracing::info_span!("merge"))
            .await;
        tracing::debug!(kind = kind.as_str(), fetch = ?fetched, total = ?started.elapsed(), "notice applied");
        Ok(true)
    }

    /// The snapshot named `hash`, from the cache or fetched (and verified) once.
    async fn snapshot<S: Snapshot>(
        &self,
        cache: &Cache<SnapshotHash, Arc<S>>,
        kind: Kind,
        hash: SnapshotHash,
    ) -> Result<Arc<S>, ApplyError> {
        let label = kind.as_str();
        let mut fetched = false;
        let result = cache
            .try_get_with(hash, async {
                fetched = true;
                self.metrics
                    .snapshot_fetches
                    .with_label_values(&[label])
                    .inc();
                let started = std::time::Instant::now();
                let bytes = self.store.fetch(hash).await.map_err(|e| match e.kind() {
                    StoreErrorKind::HashMismatch => ApplyError::HashMismatch(hash),
                    _ => ApplyError::Fetch(e.to_string()),
                })?;
                let got = started.elapsed();
                let snapshot = S::decode(&bytes).map_err(|e| ApplyError::Decode(e.to_string()))?;
                tracing::debug!(kind = label, get = ?got, decode = ?(started.elapsed() - got), "snapshot fetched");
                Ok::<_, ApplyError>(Arc::new(snapshot))
            })
            .await;
        let cache_label = match kind {
            Kind::Prices => "prices_snapshot",
            Kind::Ranking => "ranking_snapshot",
        };
        self.count_lookup(cache_label, !fetched);
        result.map_err(|e| {
            let e = Arc::try_unwrap(e).unwrap_or_else(|shared| match &*shared {
                ApplyError::Fetch(m) => ApplyError::Fetch(m.clone()),
                ApplyError::HashMismatch(h) => ApplyError::HashMismatch(*h),
                ApplyError::Decode(m) => ApplyError::Decode(m.clone()),
            });
            let reason = match &e {
                ApplyError::Fetch(_) => "unavailable",
                ApplyError::HashMismatch(_) => {
                    self.metrics
                        .hash_mismatches
                        .with_label_values(&[label])
                        .inc();
                    "hash_mismatch"
                }
                ApplyError::Decode(_) => "decode",
            };
            self.metrics
                .snapshot_fetch_errors
                .with_label_values(&[label, reason])
                .inc();
            e
        })
    }

    /// Counts a hit or a miss of the cache named `label`.
    fn count_lookup(&self, label: &str, hit: bool) {
        let counter = if hit {
            &self.metrics.cache_hits
        } else {
            &self.metrics.cache_misses
        };
        counter.with_label_values(&[label]).inc();
    }

    /// Re-points the view at the current pair, merging only if this pair is new.
    async fn rebuild(&self) {
        let (Some((pn, prices)), Some((rn, ranking))) =
            (&self.current_prices, &self.current_ranking)
        else {
            return;
        };
        let key = (pn.hash, rn.hash);
        let hit = self.merged.contains_key(&key);
        let prepared = self
            .merged
            .get_with(key, async {
                self.metrics.merges.inc();
                // A merge copies no strings (criterion: 0.8 ms for 10,000 × 10,000). It runs
                // right here, on the bus thread, which serves no requests; handing it to a
                // blocking thread cost more than it saved.
                Arc::new(Prepared::new(merge(ranking, prices.clone())))
            })
            .await;
        self.count_lookup("merge", hit);
        self.metrics.coins_served.set(prepared.count() as i64);
        self.view.store(Some(Arc::new(View::new(prepared, pn, rn))));
    }
}

#[cfg(test)]
mod tests {
    use topcoins_schemas::{PricedCoin, RankedCoin};

    use super::*;

    const COINS: usize = 20;

    fn view() -> View {
        let ranking = RankingSnapshot::new(
            "cryptocompare",
            (0..COINS)
                .map(|i| RankedCoin {
                    id: i.to_string().into(),
                    symbol: format!("C{i}").into(),
                    name: format!("Coin {i}").into(),
                    volume_24h_usd: Some(1e6 - i as f64),
                    price_usd: None,
                })
                .collect(),
        )
        .unwrap();
        let prices = PriceSnapshot::new(
            "coinmarketcap",
            (0..COINS)
                .map(|i| PricedCoin {
                    id: i.to_string().into(),
                    symbol: format!("C{i}").into(),
                    name: format!("Coin {i}").into(),
                    price_usd: 1.0 + i as f64,
                    market_cap_usd: None,
                })
                .collect(),
        )
        .unwrap();
        let notice = |kind: &[u8]| HashNotice {
            hash: SnapshotHash::of(kind),
            as_of: OffsetDateTime::UNIX_EPOCH,
            count: COINS as u64,
            source: "s".into(),
        };
        let prepared = Prepared::new(merge(&Ranked::new(Arc::new(ranking)), Arc::new(prices)));
        View::new(Arc::new(prepared), &notice(b"p"), &notice(b"r"))
    }

    /// Every (entries, format, stale) gets its own response, whether it holds a hot slot,
    /// finds its slot taken by another key (n and n + 4 share one), or comes from the cache.
    #[test]
    fn responses_match_their_key_in_and_out_of_hot_slots() {
        let view = view();
        for round in 0..2 {
            for n in 0..=COINS {
                for format in [Format::Json, Format::Csv] {
                    for stale in [false, true] {
                        let ready = view.response(n, format, stale);
                        let body = match format {
                            Format::Json => view.prepared.json_body(n, &view.meta, stale),
                            Format::Csv => view.prepared.csv_body(n),
                        };
                        assert_eq!(ready.body, body, "round {round}, {n} {format:?} {stale}");
                        let etag = ready.etag.to_str().unwrap();
                        assert!(etag.contains(&format!("-{n}-")), "{etag} for {n}");
                    }
                }
            }
        }
        let held = view.hot.iter().filter(|slot| slot.get().is_some()).count();
        assert_eq!(
            held, HOT_SLOTS,
            "every slot was taken by the first key hashing to it"
        );
    }
}
