//! The poll → hash → store → announce actor, generic over its [`Source`].
//!
//! Each cycle fetches a snapshot from the source, encodes it canonically and hashes it. Only
//! when the hash differs from the last announced one is the snapshot stored under its hash
//! and a notice published; an unchanged upstream costs the bus nothing. On start the actor
//! resumes from the last notice in the store (and the snapshot it names), so a restart does
//! not republish data that has not changed.
//!
//! A body that shrinks the universe to less than half of the last one is held back: providers
//! do that when they are having a bad day. If the same smaller snapshot keeps coming for
//! [`SHRINK_CONFIRMATIONS`] cycles it is taken as the new truth.
//!
//! Cycles never overlap: the next one is scheduled when this one ends, `interval` after it
//! started (or at once if it overran, which is counted and logged).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use time::OffsetDateTime;
use topcoins_bus::{Lease, SnapshotStore, StoreErrorKind, TraceContext};
use topcoins_schemas::{HashNotice, Snapshot, SnapshotHash};
use tracing::Instrument;

use crate::{UpstreamError, UpstreamMetrics};

/// How many cycles in a row a shrunken universe must be seen before it is believed.
pub const SHRINK_CONFIRMATIONS: u32 = 3;

/// Where snapshots come from.
pub trait Source: Send + Sync + 'static {
    type Snapshot: Snapshot + Clone;

    /// Provider name, for metrics and logs.
    fn provider(&self) -> &'static str;

    /// Fetches and normalises one snapshot.
    /// Fetches and normalises one snapshot. The error names the provider that failed (a
    /// source may have several).
    fn fetch(&mut self) -> impl Future<Output = Result<Self::Snapshot, UpstreamError>> + Send;

    /// Called once a new snapshot has been stored and announced.
    fn announced(
        &mut self,
        _previous: Option<&Self::Snapshot>,
        _current: &Self::Snapshot,
        _notice: &HashNotice,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

pub struct PollerArgs<S> {
    pub source: S,
    pub store: SnapshotStore,
    pub interval: Duration,
    pub metrics: UpstreamMetrics,
    /// Snapshots older than this, and not current, are deleted from the store.
    pub retention: Duration,
    /// When several instances run: only the lease holder polls (see [`topcoins_bus::Lease`]).
    pub lease: Option<SharedLease>,
}

/// A lease shared by the successive pollers of one instance.
pub type SharedLease = Arc<tokio::sync::Mutex<Lease>>;

pub enum PollerMsg {
    /// Run one cycle now.
    Poll,
}

pub struct PollerState<S: Source> {
    args: PollerArgs<S>,
    resumed: bool,
    /// The notice-stream sequence of the last notice of this kind (0: none yet), which the
    /// next announcement follows; read on resume, then the sequence of each own announcement.
    follows: u64,
    last: Option<(HashNotice, Arc<S::Snapshot>)>,
    shrink: Option<(SnapshotHash, u32)>,
}

/// The actor; see the module docs.
pub struct Poller<S>(PhantomData<fn() -> S>);

impl<S> Default for Poller<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// What one cycle came to, as the `outcome` label of `topcoins_poll_cycles_total`.
enum Outcome {
    Changed,
    Unchanged,
    /// Another instance holds the lease.
    Standby,
    Failed(&'static str),
}

impl<S: Source> PollerState<S> {
    fn kind(&self) -> &'static str {
        S::Snapshot::KIND.as_str()
    }

    /// Picks up the last announced notice and snapshot, if any.
    async fn resume(&mut self) -> Result<(), String> {
        let store = &self.args.store;
        let Some(latest) = store
            .latest(S::Snapshot::KIND)
            .await
            .map_err(|e| e.to_string())?
        else {
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

    async fn cycle(&mut self, trace: &TraceContext) -> Outcome {
        if let Some(lease) = self.args.lease.clone() {
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
                }
                Ok(true) => {}
                Ok(false) => return Outcome::Standby,
                Err(e) => {
                    tracing::warn!(kind = self.kind(), error = %e, "lease unavailable");
                    return Outcome::Failed("lease_unavailable");
                }
            }
        }
        if !self.resumed {
            if let Err(e) = self.resume().await {
                tracing::warn!(kind = self.kind(), error = %e, "snapshot store unavailable");
                return Outcome::Failed("store_unavailable");
            }
            self.resumed = true;
        }
        let provider = self.args.source.provider();
        let snapshot = match self
            .args
            .source
            .fetch()
            .instrument(tracing::info_span!("fetch", provider))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // The error names the provider that failed, which need not be the one in force
                // (a failover source tries both).
                let provider = e.provider;
                let metrics = &self.args.metrics;
                metrics
                    .rejected
                    .with_label_values(&[provider, e.reason()])
                    .inc();
                if let crate::UpstreamErrorKind::Malformed { path } = &e.kind {
                    let path = fold_indices(path);
                    metrics
                        .shape_errors
                        .with_label_values(&[provider, &path])
                        .inc();
                    tracing::warn!(kind = self.kind(), provider, %path, error = %e, "provider body no longer matches the expected shape");
                } else {
                    tracing::warn!(kind = self.kind(), provider, reason = e.reason(), error = %e, "fetch failed; last good snapshot stays");
                }
                return Outcome::Failed(e.reason());
            }
        };
        let (bytes, hash) = snapshot.encode();
        let previous = self.last.as_ref().map(|(n, s)| (n.hash, s.clone()));
        if previous.as_ref().is_some_and(|(h, _)| *h == hash) {
            self.shrink = None;
            return Outcome::Unchanged;
        }
        // Only a shrink from the same source is suspicious; a failover may well list fewer.
        if let Some((_, prev)) = &previous
            && prev.source() == snapshot.source()
            && snapshot.len() * 2 < prev.len()
        {
            let seen = match self.shrink {
                Some((h, n)) if h == hash => n + 1,
                _ => 1,
            };
            self.shrink = Some((hash, seen));
            if seen < SHRINK_CONFIRMATIONS {
                self.args
                    .metrics
                    .rejected
                    .with_label_values(&[provider, "shrunk"])
                    .inc();
                tracing::warn!(
                    kind = self.kind(),
                    provider,
                    coins = snapshot.len(),
                    before = prev.len(),
                    "universe shrank by more than half; holding back"
                );
                return Outcome::Failed("shrunk");
            }
        }
        self.shrink = None;
        let store = &self.args.store;
        if let Err(e) = store
            .put_kind(S::Snapshot::KIND, hash, &bytes)
            .instrument(tracing::info_span!("store", %hash))
            .await
        {
            tracing::warn!(kind = self.kind(), error = %e, "snapshot store failed; will retry next cycle");
            return Outcome::Failed("store_unavailable");
        }
        // The lease may have lapsed during a slow cycle: announce only while still holding it.
        if let Some(lease) = self.args.lease.clone()
            && !matches!(lease.lock().await.acquire().await, Ok(true))
        {
            tracing::warn!(
                kind = self.kind(),
                "lease lost during the cycle; not announcing"
            );
            return Outcome::Failed("lease_lost");
        }
        let notice = HashNotice {
            hash,
            as_of: OffsetDateTime::now_utc(),
            count: snapshot.len() as u64,
            source: snapshot.source().to_owned(),
            follows: Some(self.follows),
        };
        match store
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
                return Outcome::Failed("fenced");
            }
            Err(e) => {
                tracing::warn!(kind = self.kind(), error = %e, "notice publish failed; will retry next cycle");
                return Outcome::Failed("bus_unavailable");
            }
        }
        let kind = self.kind();
        self.args
            .metrics
            .notices_published
            .with_label_values(&[kind])
            .inc();
        self.args
            .metrics
            .snapshot_coins
            .with_label_values(&[kind])
            .set(snapshot.len() as i64);
        self.args
            .metrics
            .snapshot_bytes
            .with_label_values(&[kind])
            .set(bytes.len() as i64);
        tracing::info!(kind, %hash, coins = snapshot.len(), bytes = bytes.len(), "snapshot changed; announced");
        self.args
            .source
            .announced(
                previous.as_ref().map(|(_, s)| s.as_ref()),
                &snapshot,
                &notice,
            )
            .await;
        self.last = Some((notice, Arc::new(snapshot)));
        self.prune(hash, previous.map(|(h, _)| h)).await;
        Outcome::Changed
    }

    /// Drops old snapshots, never one that either kind currently announces.
    async fn prune(&self, current: SnapshotHash, previous: Option<SnapshotHash>) {
        let store = &self.args.store;
        let mut keep = vec![current];
        keep.extend(previous);
        for kind in topcoins_bus::subjects::KINDS {
            match store.latest(*kind).await {
                Ok(Some(latest)) => keep.push(latest.notice.hash),
                Ok(None) => {}
                Err(_) => return, // not knowing what is current, delete nothing
            }
        }
        match store.prune(&keep, self.args.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(kind = self.kind(), deleted = n, "pruned old snapshots"),
            Err(e) => tracing::debug!(error = %e, "prune failed"),
        }
    }
}

/// `data[17].quote` → `data[].quote`: one label per place in the shape, not per coin.
pub fn fold_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

impl<S: Source> Actor for Poller<S> {
    type Msg = PollerMsg;
    type State = PollerState<S>;
    type Arguments = PollerArgs<S>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(PollerMsg::Poll)?;
        Ok(PollerState {
            args,
            resumed: false,
            follows: 0,
            last: None,
            shrink: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PollerMsg::Poll => {
                let started = Instant::now();
                // One trace per cycle; the notice carries it to every API node.
                let trace = TraceContext::new();
                let span = tracing::info_span!("poll_cycle", kind = state.kind(), trace_id = %trace.trace_id_hex());
                let outcome = state.cycle(&trace).instrument(span).await;
                let elapsed = started.elapsed();
                let kind = state.kind();
                let m = &state.args.metrics;
                let label = match outcome {
                    Outcome::Changed => "changed",
                    Outcome::Unchanged => "unchanged",
                    Outcome::Standby => "standby",
                    Outcome::Failed(reason) => reason,
                };
                m.cycles.with_label_values(&[kind, label]).inc();
                m.cycle_seconds
                    .with_label_values(&[kind])
                    .observe(elapsed.as_secs_f64());
                let interval = state.args.interval;
                if elapsed > interval / 2 {
                    m.slow_cycles.with_label_values(&[kind]).inc();
                    tracing::warn!(kind, elapsed = ?elapsed, interval = ?interval, "poll cycle took more than half its interval");
                }
                // A stand-by instance looks at the lease eight times an interval (see `lease_ttl`).
                let next = if label == "standby" {
                    interval / 8
                } else {
                    interval.saturating_sub(elapsed)
                };
                myself.send_after(next, || PollerMsg::Poll);
            }
        }
        Ok(())
    }
}

/// Runs a supervised poller until `shutdown`, then stops it and waits for it to end.
pub async fn run_poller<S: Source>(
    make_source: Arc<dyn Fn() -> S + Send + Sync>,
    lease: Option<SharedLease>,
    store: SnapshotStore,
    interval: Duration,
    retention: Duration,
    metrics: UpstreamMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ractor::SpawnErr> {
    let kind = S::Snapshot::KIND.as_str();
    let args = crate::supervisor::SupervisorArgs {
        make_source,
        lease,
        store,
        interval,
        retention,
        metrics,
    };
    let (supervisor, handle) = Actor::spawn(
        None,
        crate::supervisor::PollSupervisor::<S>::default(),
        args,
    )
    .await?;
    tracing::info!(kind, interval = %humantime::format_duration(interval), "poller started");
    shutdown.await;
    supervisor.stop(Some("shutdown".into()));
    let _ = handle.await;
    tracing::info!(kind, "poller stopped");
    Ok(())
}

/// What every polling service needs besides its own provider settings.
#[derive(Clone)]
pub struct ServiceContext {
    pub nats: topcoins_bus::NatsConfig,
    pub http: crate::HttpConfig,
    /// Snapshots older than this, and not current, are deleted from the store.
    pub retention: Duration,
    pub metrics: UpstreamMetrics,
    /// Several instances of this actor run: poll only while holding the lease.
    pub lease: bool,
}

/// How long a lease lives unrenewed: an interval and a quarter. The holder renews it at the
/// start of every cycle (cycles start an interval apart), so a quarter interval is the slack;
/// a stand-by instance looks every eighth of an interval, so it takes over within about 1.4
/// intervals of the holder's death.
pub fn lease_ttl(interval: Duration) -> Duration {
    interval + interval / 4
}

/// A whole polling service: connects to NATS, opens the store (waiting for it if need be),
/// builds the source with the NATS client (again at each restart), and polls until `shutdown`.
pub async fn serve<S: Source>(
    context: ServiceContext,
    make_source: impl Fn(async_nats::Client) -> S + Send + Sync + 'static,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), crate::RunError> {
    let mut shutdown = Box::pin(shutdown);
    let (client, _link) = topcoins_bus::connect(&context.nats).await?;
    let Some(store) =
        SnapshotStore::open_when_ready(&client, context.nats.stream_replicas, &mut shutdown).await
    else {
        return Ok(());
    };
    let nats = client.clone();
    let make_source: Arc<dyn Fn() -> S + Send + Sync> = Arc::new(move || make_source(nats.clone()));
    let lease = if context.lease {
        let ttl = lease_ttl(interval);
        let mut delay = Duration::from_millis(100);
        loop {
            match Lease::open(
                client.clone(),
                S::Snapshot::KIND,
                ttl,
                context.nats.stream_replicas,
            )
            .await
            {
                Ok(lease) => break Some(Arc::new(tokio::sync::Mutex::new(lease))),
                Err(e) => tracing::warn!(error = %e, "lease bucket not available yet; retrying"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    } else {
        None
    };
    run_poller(
        make_source,
        lease.clone(),
        store,
        interval,
        context.retention,
        context.metrics,
        shutdown,
    )
    .await?;
    if let Some(lease) = lease {
        // Hand over at once rather than after the lease expires.
        lease.lock().await.release().await;
    }
    // Let queued events reach the server before the connection goes, within bounds.
    topcoins_bus::close(&client).await;
    Ok(())
}
