//! The `Poller` actor: one cycle per interval of its [`Source`], never two at once.
//!
//! The next cycle is scheduled when this one ends, `interval` after it started (or at once if
//! it overran, which is counted and logged). A stand-by instance — another holds the lease —
//! looks again every eighth of an interval instead (see [`crate::lease_ttl`]). What a cycle
//! does is in `cycle.rs`; this file is the actor around it: arguments, state, message, and
//! the bookkeeping of each cycle (its span and trace, its metrics, the next tick).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use topcoins_bus::{Lease, SnapshotStore, TraceContext};
use topcoins_schemas::{HashNotice, Snapshot, SnapshotHash};
use topcoins_upstream::UpstreamMetrics;
use tracing::Instrument;

use crate::cycle::Outcome;
use crate::{PollerMetrics, Source};

/// A lease shared by the successive pollers of one instance.
pub type SharedLease = Arc<tokio::sync::Mutex<Lease>>;

/// The actor; see the module docs.
pub(crate) struct Poller<S>(PhantomData<fn() -> S>);

impl<S> Default for Poller<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub(crate) struct PollerArgs<S> {
    pub source: S,
    pub store: SnapshotStore,
    pub interval: Duration,
    pub metrics: PollerMetrics,
    /// For what the fetch step counts about provider bodies (rejected, shape errors).
    pub upstream_metrics: UpstreamMetrics,
    /// Snapshots older than this, and not current, are deleted from the store.
    pub retention: Duration,
    /// When several instances run: only the lease holder polls (see [`topcoins_bus::Lease`]).
    pub lease: Option<SharedLease>,
}

pub(crate) enum PollerMsg {
    /// Run one cycle now.
    Poll,
}

pub(crate) struct PollerState<S: Source> {
    pub(crate) args: PollerArgs<S>,
    /// Whether the last announced notice and snapshot were read back since the start, or
    /// since the lease was taken or the announcement fenced (another instance announced).
    pub(crate) resumed: bool,
    /// The notice-stream sequence of the last notice of this kind (0: none yet), which the
    /// next announcement follows; read on resume, then the sequence of each own announcement.
    pub(crate) follows: u64,
    /// The last announced notice and its snapshot.
    pub(crate) last: Option<(HashNotice, Arc<S::Snapshot>)>,
    /// A shrunken snapshot held back, and how many cycles in a row it came.
    pub(crate) shrink: Option<(SnapshotHash, u32)>,
}

impl<S: Source> PollerState<S> {
    pub(crate) fn kind(&self) -> &'static str {
        S::Snapshot::KIND.as_str()
    }
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
                m.cycles.with_label_values(&[kind, outcome.label()]).inc();
                m.cycle_seconds
                    .with_label_values(&[kind])
                    .observe(elapsed.as_secs_f64());
                let interval = state.args.interval;
                if elapsed > interval / 2 {
                    m.slow_cycles.with_label_values(&[kind]).inc();
                    tracing::warn!(kind, elapsed = ?elapsed, interval = ?interval, "poll cycle took more than half its interval");
                }
                // A stand-by instance looks at the lease eight times an interval (see `lease_ttl`).
                let next = if matches!(outcome, Outcome::Standby) {
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
