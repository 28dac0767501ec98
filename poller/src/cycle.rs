//! One poll cycle, as the steps it takes: **lease**, **resume**, **fetch**, **guard**,
//! **store**, **announce**, **prune**. Each step either lets the cycle go on or ends it with
//! the cycle's [`Outcome`] (the `outcome` label of `topcoins_poll_cycles_total`); a step that
//! fails logs why, and the last good snapshot stays what is announced.
//!
//! On start (and whenever another instance may have announced) the poller resumes from the
//! last notice in the store and the snapshot it names, so a restart does not republish data
//! that has not changed.
//!
//! A body that shrinks the universe to less than half of the last one is held back: providers
//! do that when they are having a bad day. If the same smaller snapshot keeps coming for
//! [`SHRINK_CONFIRMATIONS`] cycles it is taken as the new truth.

use std::sync::Arc;

use time::OffsetDateTime;
use topcoins_bus::{StoreErrorKind, TraceContext};
use topcoins_schemas::{HashNotice, Snapshot, SnapshotHash};
use topcoins_upstream::UpstreamErrorKind;
use topcoins_upstream::json::fold_indices;
use tracing::Instrument;

use crate::Source;
use crate::actor::PollerState;

/// How many cycles in a row a shrunken universe must be seen before it is believed.
pub const SHRINK_CONFIRMATIONS: u32 = 3;

/// What one cycle came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A new snapshot was stored and announced.
    Changed,
    /// The snapshot hashes as the last announced one.
    Unchanged,
    /// Another instance holds the lease.
    Standby,
    /// The cycle stopped at a step; the reason is the metric label.
    Failed(&'static str),
}

impl Outcome {
    /// The `outcome` label of `topcoins_poll_cycles_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Standby => "standby",
            Outcome::Failed(reason) => reason,
        }
    }
}

/// What a step comes to: `Ok` goes on to the next step, `Err` ends the cycle with its outcome.
type Step<T = ()> = Result<T, Outcome>;

/// A fetched snapshot with its canonical bytes and their hash.
struct Fetched<T> {
    snapshot: T,
    bytes: Vec<u8>,
    hash: SnapshotHash,
    /// The provider in force when the fetch began, for the guard's metric.
    provider: &'static str,
}

impl<S: Source> PollerState<S> {
    /// Runs one cycle, step by step, to its outcome.
    pub(crate) async fn cycle(&mut self, trace: &TraceContext) -> Outcome {
        match self.steps(trace).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn steps(&mut self, trace: &TraceContext) -> Step<Outcome> {
        self.lease().await?;
        self.resume().await?;
        let fetched = self.fetch().await?;
        let previous = self.last.as_ref().map(|(n, s)| (n.hash, s.clone()));
        match self.guard(&fetched, previous.as_ref()) {
            Err(Outcome::Unchanged) if <S::Snapshot as Snapshot>::CONFIRMED => {
                self.confirm(trace).await;
                return Err(Outcome::Unchanged);
            }
            guarded => guarded?,
        }
        self.store(&fetched).await?;
        self.announce(fetched, previous.as_ref().map(|(_, s)| s.as_ref()), trace)
            .await?;
        self.prune(previous.map(|(h, _)| h)).await;
        Ok(Outcome::Changed)
    }

    /// **lease**: with several instances, only the lease holder polls; the others stand by.
    /// Taking the lease over means another instance announced until now: resume from it.
    async fn lease(&mut self) -> Step {
        let Some(lease) = self.args.lease.clone() else {
            return Ok(());
        };
        let mut lease = lease.lock().await;
        let was_held = lease.held();
        match lease.acquire().await {
            Ok(true) if !was_held => {
                tracing::info!(
                    kind = self.kind(),
                    holder = lease.holder(),
                    "took the lease; polling"
                );
                // Pick up what the previous holder announced, so it is not announced again.
                self.resumed = false;
                Ok(())
            }
            Ok(true) => Ok(()),
            Ok(false) => Err(Outcome::Standby),
            Err(e) => {
                tracing::warn!(kind = self.kind(), error = %e, "lease unavailable");
                Err(Outcome::Failed("lease_unavailable"))
            }
        }
    }

    /// **resume**: once after a start, a lease takeover or a fence, reads back the last notice
    /// of the kind (whose sequence the next announcement follows) and the snapshot it names.
    /// A snapshot that is gone or does not decode is not an error: the poller starts afresh.
    async fn resume(&mut self) -> Step {
        if self.resumed {
            return Ok(());
        }
        let store = &self.args.store;
        let latest = match store.latest(S::Snapshot::KIND).await {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(kind = self.kind(), error = %e, "snapshot store unavailable");
                return Err(Outcome::Failed("store_unavailable"));
            }
        };
        self.resumed = true;
        let Some(latest) = latest else {
            self.follows = 0;
            return Ok(());
        };
        self.follows = latest.sequence;
        let notice = latest.notice;
        match store.fetch(notice.hash).await {
            Ok(bytes) => match S::Snapshot::decode(&bytes) {
                Ok(snapshot) => {
                    tracing::info!(kind = self.kind(), hash = %notice.hash, "resumed from stored snapshot");
                    self.last = Some((notice, Arc::new(snapshot)));
                }
                Err(e) => {
                    tracing::warn!(kind = self.kind(), error = %e, "stored snapshot does not decode; starting afresh")
                }
            },
            Err(e) => {
                tracing::warn!(kind = self.kind(), error = %e, "stored snapshot unavailable; starting afresh")
            }
        }
        Ok(())
    }

    /// **fetch**: one snapshot from the source, encoded and hashed. A failure is counted in
    /// `topcoins_upstream_rejected_total` (and a body of the wrong shape in
    /// `topcoins_upstream_shape_errors_total`, by the JSON path that broke) under the provider
    /// that failed, which need not be the one in force (a failover source tries both).
    async fn fetch(&mut self) -> Step<Fetched<S::Snapshot>> {
        let provider = self.args.source.provider();
        let e = match self
            .args
            .source
            .fetch()
            .instrument(tracing::info_span!("fetch", provider))
            .await
        {
            Ok(snapshot) => {
                let (bytes, hash) = snapshot.encode();
                return Ok(Fetched {
                    snapshot,
                    bytes,
                    hash,
                    provider,
                });
            }
            Err(e) => e,
        };
        let provider = e.provider;
        let metrics = &self.args.upstream_metrics;
        metrics
            .rejected
            .with_label_values(&[provider, e.reason()])
            .inc();
        if let UpstreamErrorKind::Malformed { path } = &e.kind {
            let path = fold_indices(path);
            metrics
                .shape_errors
                .with_label_values(&[provider, &path])
                .inc();
            tracing::warn!(kind = self.kind(), provider, %path, error = %e, "provider body no longer matches the expected shape");
        } else {
            tracing::warn!(kind = self.kind(), provider, reason = e.reason(), error = %e, "fetch failed; last good snapshot stays");
        }
        Err(Outcome::Failed(e.reason()))
    }

    /// **guard**: whether the snapshot goes on to be stored. Not when it hashes as the last
    /// announced one (`unchanged`); not when it shrank the universe to less than half of the
    /// last one from the same source, until the same snapshot came [`SHRINK_CONFIRMATIONS`]
    /// times in a row (`shrunk`, counted as a rejected body). A failover may well list fewer,
    /// so a shrink across sources passes.
    fn guard(
        &mut self,
        fetched: &Fetched<S::Snapshot>,
        previous: Option<&(SnapshotHash, Arc<S::Snapshot>)>,
    ) -> Step {
        let (snapshot, hash) = (&fetched.snapshot, fetched.hash);
        if previous.is_some_and(|(h, _)| *h == hash) {
            self.shrink = None;
            return Err(Outcome::Unchanged);
        }
        if let Some((_, prev)) = previous
            && prev.source() == snapshot.source()
            && self.args.source.shrank(prev, snapshot)
        {
            let seen = match self.shrink {
                Some((h, n)) if h == hash => n + 1,
                _ => 1,
            };
            self.shrink = Some((hash, seen));
            if seen < SHRINK_CONFIRMATIONS {
                self.args
                    .upstream_metrics
                    .rejected
                    .with_label_values(&[fetched.provider, "shrunk"])
                    .inc();
                tracing::warn!(
                    kind = self.kind(),
                    provider = fetched.provider,
                    coins = snapshot.len(),
                    before = prev.len(),
                    "universe shrank by more than half; holding back"
                );
                return Err(Outcome::Failed("shrunk"));
            }
        }
        self.shrink = None;
        Ok(())
    }

    /// **store**: puts the snapshot under its hash (idempotent), so that it is there before
    /// any notice names it.
    async fn store(&self, fetched: &Fetched<S::Snapshot>) -> Step {
        let hash = fetched.hash;
        self.args
            .store
            .put_kind(S::Snapshot::KIND, hash, &fetched.bytes)
            .instrument(tracing::info_span!("store", %hash))
            .await
            .map_err(|e| {
                tracing::warn!(kind = self.kind(), error = %e, "snapshot store failed; will retry next cycle");
                Outcome::Failed("store_unavailable")
            })
    }

    /// For a [`CONFIRMED`](Snapshot::CONFIRMED) kind, a poll that found the data unchanged
    /// publishes a still-current notice: the last announced hash at this poll's time, for the
    /// recorder's one sample per poll. Best effort (the next poll says it again), and only
    /// while holding the lease.
    async fn confirm(&mut self, trace: &TraceContext) {
        let Some((last, _)) = &self.last else { return };
        // The lease renewed, as before announcing: a holder whose lease lapsed during a slow
        // fetch must not confirm a hash another instance has announced past.
        if let Some(lease) = self.args.lease.clone()
            && !matches!(lease.lock().await.acquire().await, Ok(true))
        {
            return;
        }
        let notice = HashNotice {
            as_of: OffsetDateTime::now_utc(),
            follows: None,
            ..last.clone()
        };
        if let Err(e) = self
            .args
            .store
            .confirm(S::Snapshot::KIND, &notice, trace)
            .await
        {
            tracing::warn!(kind = self.kind(), error = %e, "still-current notice not published; the next poll tries again");
        } else {
            self.args
                .metrics
                .still_current
                .with_label_values(&[self.kind()])
                .inc();
        }
    }

    /// **announce**: publishes the notice, only while still holding the lease (it may have
    /// lapsed during a slow cycle) and fenced by the stream (it follows the last notice this
    /// poller saw; if another instance announced since, nothing is published and the next
    /// cycle resumes from that). Then counts it, tells the source, and makes the snapshot the
    /// last announced one.
    async fn announce(
        &mut self,
        fetched: Fetched<S::Snapshot>,
        previous: Option<&S::Snapshot>,
        trace: &TraceContext,
    ) -> Step {
        let Fetched {
            snapshot,
            bytes,
            hash,
            ..
        } = fetched;
        if let Some(lease) = self.args.lease.clone()
            && !matches!(lease.lock().await.acquire().await, Ok(true))
        {
            tracing::warn!(
                kind = self.kind(),
                "lease lost during the cycle; not announcing"
            );
            return Err(Outcome::Failed("lease_lost"));
        }
        let notice = HashNotice {
            hash,
            as_of: OffsetDateTime::now_utc(),
            count: snapshot.len() as u64,
            source: snapshot.source().to_owned(),
            follows: Some(self.follows),
        };
        match self
            .args
            .store
            .announce(S::Snapshot::KIND, &notice, trace)
            .instrument(tracing::info_span!("notice", %hash))
            .await
        {
            Ok(sequence) => self.follows = sequence,
            Err(e) if e.kind() == StoreErrorKind::Fenced => {
                // Another instance announced since our last look: take up what it announced
                // next cycle rather than announce over it.
                tracing::warn!(kind = self.kind(), error = %e, "another instance announced; not announcing");
                self.resumed = false;
                return Err(Outcome::Failed("fenced"));
            }
            Err(e) => {
                tracing::warn!(kind = self.kind(), error = %e, "notice publish failed; will retry next cycle");
                return Err(Outcome::Failed("bus_unavailable"));
            }
        }
        let kind = self.kind();
        let metrics = &self.args.metrics;
        metrics.notices_published.with_label_values(&[kind]).inc();
        metrics
            .snapshot_coins
            .with_label_values(&[kind])
            .set(snapshot.len() as i64);
        metrics
            .snapshot_bytes
            .with_label_values(&[kind])
            .set(bytes.len() as i64);
        tracing::info!(kind, %hash, coins = snapshot.len(), bytes = bytes.len(), "snapshot changed; announced");
        self.args
            .source
            .announced(previous, &snapshot, &notice)
            .await;
        self.last = Some((notice, Arc::new(snapshot)));
        Ok(())
    }

    /// **prune**: drops snapshots older than the retention, never the one just announced, the
    /// one before it, or one that any kind currently announces. Best effort: not knowing what
    /// is current, it deletes nothing.
    async fn prune(&self, previous: Option<SnapshotHash>) {
        let store = &self.args.store;
        let mut keep: Vec<SnapshotHash> = self.last.iter().map(|(n, _)| n.hash).collect();
        keep.extend(previous);
        for kind in topcoins_bus::subjects::KINDS {
            match store.latest(*kind).await {
                Ok(Some(latest)) => keep.push(latest.notice.hash),
                Ok(None) => {}
                Err(_) => return,
            }
        }
        match store.prune(&keep, self.args.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(kind = self.kind(), deleted = n, "pruned old snapshots"),
            Err(e) => tracing::debug!(error = %e, "prune failed"),
        }
    }
}
