//! What an API node knows: the snapshots of every registered kind ([`crate::slots`]), the
//! bytes pushed ahead of their notices, and the derived top list every `GET /` reads.
//!
//! A notice is applied in four steps: placed in its kind's order (an older one is ignored),
//! its snapshot found — already decoded, pushed as the actor stored it, or fetched by hash —
//! and checked against the hash, made current in its slot, and the views built from that kind
//! rebuilt. Only the top list is built today; it is cached per (prices hash, ranking hash,
//! references) triple, so flipping back to a pair seen before merges nothing. New reference
//! prices of 24 h ago ([`Node::set_references`], read from the database off the request
//! path) re-merge the pair in force.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use moka::policy::EvictionPolicy;
use topcoins_bus::{Pushed, SnapshotStore, StoreErrorKind};
use topcoins_schemas::{HashNotice, Kind, PriceSnapshot, RankingSnapshot, SnapshotHash};
use tracing::Instrument;

use crate::merge::{Ranked, References, RowReferences, merge};
use crate::metrics::{ApiMetrics, snapshot_cache_label};
use crate::render::TopList;
use crate::slots::{Position, Slots};
use crate::tickers::Tickers;
use crate::view::View;

/// Merged top lists kept in memory.
const MERGES_KEPT: u64 = 4;
/// Pushed snapshots kept until their notice comes (it follows at once; a few cover a burst).
const PUSHED_KEPT: usize = 4;

/// The kinds an API node takes in. **A new kind is one line here** (its type in schemas, its
/// entry in `topcoins_bus::subjects::KINDS`): the follower subscribes to it, its notices are
/// ordered, fetched, verified, cached and counted like every other kind's.
pub fn registered() -> (Slots, Tickers) {
    let mut slots = Slots::default();
    slots.register::<PriceSnapshot>();
    slots.register::<RankingSnapshot>();
    let tickers = Tickers::register(&mut slots);
    (slots, tickers)
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
    #[error("no {0} snapshots are taken in here")]
    Unregistered(Kind),
}

impl ApplyError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Fetch(_) => "unavailable",
            ApplyError::HashMismatch(_) => "hash_mismatch",
            ApplyError::Decode(_) => "decode",
            ApplyError::Unregistered(_) => "unregistered",
        }
    }
}

pub struct Node {
    store: SnapshotStore,
    metrics: ApiMetrics,
    slots: Slots,
    /// Snapshot bytes pushed as they were stored, newest last, not yet verified.
    pushed: VecDeque<(SnapshotHash, Bytes)>,
    top: TopBuilder,
    /// Told whenever what is served changes (the live stream's hub listens).
    changed: Arc<tokio::sync::Notify>,
}

impl Node {
    pub fn new(
        store: SnapshotStore,
        metrics: ApiMetrics,
        slots: Slots,
        view: Arc<ArcSwapOption<View>>,
        changed: Arc<tokio::sync::Notify>,
    ) -> Self {
        metrics.init_kinds(&slots.kinds());
        Self {
            store,
            metrics,
            slots,
            pushed: VecDeque::with_capacity(PUSHED_KEPT),
            top: TopBuilder::new(view),
            changed,
        }
    }

    pub fn store(&self) -> &SnapshotStore {
        &self.store
    }

    /// The kinds this node takes in.
    pub fn kinds(&self) -> Vec<Kind> {
        self.slots.kinds()
    }

    /// Takes in bytes that went by on the bus on their way into the store. When their
    /// publisher named a kind this node takes in, they are verified and decoded now, while the
    /// publisher waits for the store's acknowledgement: the notice that follows finds the
    /// snapshot decoded, and its path to being served is a lookup and a merge. Otherwise they
    /// are kept as they are for the notice that will name them.
    pub fn pushed(&mut self, pushed: Pushed) {
        let Pushed { hash, kind, bytes } = pushed;
        if let Some(kind) = kind.as_deref().and_then(|name| self.slots.kind_named(name)) {
            // Anyone can publish on a snapshot subject; only the hash makes bytes the snapshot.
            if !hash.matches(&bytes) {
                tracing::debug!(kind = kind.as_str(), %hash, "pushed bytes do not match their hash; ignored");
                return;
            }
            let held = self.slots.held(kind).expect("a registered kind");
            match held.preload(hash, &bytes) {
                Ok(true) => {
                    self.metrics
                        .snapshots_pushed
                        .with_label_values(&[kind.as_str()])
                        .inc();
                    if TopBuilder::INPUTS.contains(&kind) {
                        self.top.prepare(&self.slots, &self.metrics, kind, hash);
                    }
                }
                Ok(false) => {}
                // Left to the notice: it fetches, fails the same way, and counts it.
                Err(e) => {
                    tracing::debug!(kind = kind.as_str(), %hash, error = %e, "pushed snapshot does not decode")
                }
            }
            return;
        }
        if self.pushed.iter().any(|(h, _)| *h == hash) {
            return;
        }
        if self.pushed.len() == PUSHED_KEPT {
            self.pushed.pop_front();
        }
        self.pushed.push_back((hash, bytes));
    }

    /// Pushed bytes for `hash` that really are the bytes it names.
    fn take_pushed(&mut self, hash: SnapshotHash) -> Option<Bytes> {
        let at = self.pushed.iter().position(|(h, _)| *h == hash)?;
        let (_, bytes) = self.pushed.remove(at)?;
        // Anyone can publish on a snapshot subject; only the hash makes bytes the snapshot.
        hash.matches(&bytes).then_some(bytes)
    }

    /// Takes a notice into account: finds its snapshot if new to this node, and rebuilds what
    /// is built from its kind. Returns whether what is served changed. A notice older than
    /// the one in force (a late warm-up read racing a live notice) is ignored.
    pub async fn apply(
        &mut self,
        kind: Kind,
        notice: HashNotice,
        position: Position,
    ) -> Result<bool, ApplyError> {
        let label = kind.as_str();
        let Some(held) = self.slots.held(kind) else {
            return Err(ApplyError::Unregistered(kind));
        };
        if let Some((current, at)) = held.current() {
            if current.hash == notice.hash {
                if position.is_after(notice.as_of, at, current.as_of) {
                    held.reposition(position);
                }
                return Ok(false);
            }
            if !position.is_after(notice.as_of, at, current.as_of) {
                return Ok(false);
            }
        }
        let started = Instant::now();
        let hash = notice.hash;
        let hit = held.install_cached(notice.clone(), position);
        self.count_lookup(&snapshot_cache_label(label), hit);
        if !hit {
            let bytes = match self.take_pushed(hash) {
                Some(bytes) => {
                    self.metrics
                        .snapshots_pushed
                        .with_label_values(&[label])
                        .inc();
                    bytes
                }
                None => self
                    .fetch(kind, hash)
                    .instrument(tracing::info_span!("fetch_by_hash", %hash))
                    .await
                    .inspect_err(|e| self.count_error(kind, e))?,
            };
            let held = self.slots.held(kind).expect("registered above");
            held.install_bytes(notice, position, &bytes)
                .map_err(|e| ApplyError::Decode(e.to_string()))
                .inspect_err(|e| self.count_error(kind, e))?;
        }
        let found = started.elapsed();
        if TopBuilder::INPUTS.contains(&kind) {
            let _span = tracing::info_span!("merge").entered();
            self.top.rebuild(&self.slots, &self.metrics);
        }
        tracing::debug!(kind = label, found = ?found, total = ?started.elapsed(), "notice applied");
        self.changed.notify_one();
        Ok(true)
    }

    /// The bytes of the snapshot named `hash`, from the store, verified.
    async fn fetch(&self, kind: Kind, hash: SnapshotHash) -> Result<Bytes, ApplyError> {
        self.metrics
            .snapshot_fetches
            .with_label_values(&[kind.as_str()])
            .inc();
        self.store.fetch(hash).await.map_err(|e| match e.kind() {
            StoreErrorKind::HashMismatch => ApplyError::HashMismatch(hash),
            _ => ApplyError::Fetch(e.to_string()),
        })
    }

    fn count_error(&self, kind: Kind, error: &ApplyError) {
        let label = kind.as_str();
        if let ApplyError::HashMismatch(_) = error {
            self.metrics
                .hash_mismatches
                .with_label_values(&[label])
                .inc();
        }
        self.metrics
            .snapshot_fetch_errors
            .with_label_values(&[label, error.reason()])
            .inc();
    }

    /// Takes in new reference prices for the 24 h change and re-merges what is served with
    /// them. Returns whether they differ from those in force.
    pub fn set_references(&mut self, references: Arc<References>) -> bool {
        if self.top.references.id == references.id {
            return false;
        }
        self.top.references = references;
        let _span = tracing::info_span!("merge", cause = "references").entered();
        self.top.rebuild(&self.slots, &self.metrics);
        self.changed.notify_one();
        true
    }

    /// Counts a hit or a miss of the cache named `label`.
    fn count_lookup(&self, label: &str, hit: bool) {
        count_lookup(&self.metrics, label, hit);
    }
}

fn count_lookup(metrics: &ApiMetrics, label: &str, hit: bool) {
    let counter = if hit {
        &metrics.cache_hits
    } else {
        &metrics.cache_misses
    };
    counter.with_label_values(&[label]).inc();
}

/// The top list (`GET /`): the ranking merged with the prices, and the view requests read.
struct TopBuilder {
    merged: moka::sync::Cache<(SnapshotHash, SnapshotHash, u64), Arc<TopList>>,
    /// Rankings indexed for merging (see [`Ranked`]), by hash: the one in force and one
    /// prepared ahead of its notice.
    ranked: Vec<(SnapshotHash, Arc<Ranked>)>,
    /// The reference prices in force, and laid out along the rankings above (by ranking hash
    /// and references id).
    references: Arc<References>,
    laid_out: Vec<((SnapshotHash, u64), Arc<RowReferences>)>,
    view: Arc<ArcSwapOption<View>>,
}

impl TopBuilder {
    /// The kinds the top list is built from.
    const INPUTS: [Kind; 2] = [Kind::PRICES, Kind::RANKING];

    fn new(view: Arc<ArcSwapOption<View>>) -> Self {
        Self {
            merged: moka::sync::Cache::builder()
                .max_capacity(MERGES_KEPT)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            ranked: Vec::with_capacity(2),
            references: Arc::new(References::default()),
            laid_out: Vec::with_capacity(2),
            view,
        }
    }

    /// The references in force laid out along `ranked`, worked out once per ranking and
    /// references.
    fn laid_out(&mut self, ranking_hash: SnapshotHash, ranked: &Ranked) -> Arc<RowReferences> {
        let key = (ranking_hash, self.references.id);
        if let Some((_, refs)) = self.laid_out.iter().find(|(k, _)| *k == key) {
            return refs.clone();
        }
        let refs = Arc::new(ranked.references(&self.references));
        if self.laid_out.len() == 2 {
            self.laid_out.remove(0);
        }
        self.laid_out.push((key, refs.clone()));
        refs
    }

    fn ranked(&mut self, hash: SnapshotHash, ranking: &Arc<RankingSnapshot>) -> Arc<Ranked> {
        if let Some((_, ranked)) = self.ranked.iter().find(|(h, _)| *h == hash) {
            return ranked.clone();
        }
        let ranked = Arc::new(Ranked::new(ranking.clone()));
        if self.ranked.len() == 2 {
            self.ranked.remove(0);
        }
        self.ranked.push((hash, ranked.clone()));
        ranked
    }

    /// The merged list of a pair, merging only if the pair is new. Returns whether it was
    /// cached.
    fn list(
        &mut self,
        metrics: &ApiMetrics,
        (prices_hash, prices): (SnapshotHash, &Arc<PriceSnapshot>),
        (ranking_hash, ranking): (SnapshotHash, &Arc<RankingSnapshot>),
    ) -> (Arc<TopList>, bool) {
        let key = (prices_hash, ranking_hash, self.references.id);
        if let Some(list) = self.merged.get(&key) {
            return (list, true);
        }
        let ranked = self.ranked(ranking_hash, ranking);
        let refs = self.laid_out(ranking_hash, &ranked);
        metrics.merges.inc();
        // A merge copies no strings (criterion: 0.8 ms for 10,000 × 10,000). It runs right
        // here, on the bus thread, which serves no requests; handing it to a blocking thread
        // cost more than it saved.
        let list = Arc::new(TopList::new(merge(&ranked, prices.clone(), &refs)));
        self.merged.insert(key, list.clone());
        (list, false)
    }

    /// Ahead of its notice: merges a snapshot of `kind` just decoded from pushed bytes with
    /// the other kind in force, so the notice finds the merge done.
    fn prepare(&mut self, slots: &Slots, metrics: &ApiMetrics, kind: Kind, hash: SnapshotHash) {
        let (Some(prices), Some(ranking)) = (
            slots.slot::<PriceSnapshot>(),
            slots.slot::<RankingSnapshot>(),
        ) else {
            return;
        };
        if kind == Kind::PRICES {
            if let (Some(new), Some((rn, current))) = (prices.decoded(hash), ranking.get()) {
                self.list(metrics, (hash, &new), (rn.hash, current));
            }
        } else if kind == Kind::RANKING
            && let (Some(new), Some((pn, current))) = (ranking.decoded(hash), prices.get())
        {
            self.list(metrics, (pn.hash, current), (hash, &new));
        }
    }

    /// Re-points the view at the current pair.
    fn rebuild(&mut self, slots: &Slots, metrics: &ApiMetrics) {
        let (Some((pn, prices)), Some((rn, ranking))) = (
            slots.slot::<PriceSnapshot>().and_then(|s| s.get()),
            slots.slot::<RankingSnapshot>().and_then(|s| s.get()),
        ) else {
            return;
        };
        let (list, hit) = self.list(metrics, (pn.hash, prices), (rn.hash, ranking));
        count_lookup(metrics, "merge", hit);
        metrics.coins_served.set(list.count() as i64);
        self.view.store(Some(Arc::new(View::new(list, pn, rn))));
    }
}
