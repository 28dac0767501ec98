//! The `PollSupervisor` actor: keeps a `Poller` running. The poller is spawned linked to it,
//! and when it fails (an error or a panic in a cycle) it is started again with a fresh source.
//! The policy is in `handle_supervisor_evt`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use topcoins_bus::SnapshotStore;
use topcoins_runtime::Backoff;
use topcoins_schemas::Snapshot;
use topcoins_upstream::UpstreamMetrics;

use crate::actor::{Poller, PollerArgs, PollerMsg, SharedLease};
use crate::{PollerMetrics, Source};

/// The wait before a restart: 100 ms, doubling with each failure in a row up to 10 s.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// A poller that lived this long was healthy: its failure is the first in a row.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

pub(crate) struct SupervisorArgs<S> {
    /// Builds the source for each (re)start.
    pub make_source: Arc<dyn Fn() -> S + Send + Sync>,
    pub lease: Option<SharedLease>,
    pub store: SnapshotStore,
    pub interval: Duration,
    pub retention: Duration,
    pub metrics: PollerMetrics,
    pub upstream_metrics: UpstreamMetrics,
}

pub(crate) enum SupervisorMsg {
    /// Start the poller (again).
    Spawn,
}

pub(crate) struct SupervisorState<S> {
    args: SupervisorArgs<S>,
    /// The wait before the next restart; its attempt count is the failures in a row.
    backoff: Backoff,
    started: Instant,
    child: Option<ActorRef<PollerMsg>>,
    stopping: bool,
}

/// The actor; see the module docs.
pub(crate) struct PollSupervisor<S>(PhantomData<fn() -> S>);

impl<S> Default for PollSupervisor<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<S: Source> Actor for PollSupervisor<S> {
    type Msg = SupervisorMsg;
    type State = SupervisorState<S>;
    type Arguments = SupervisorArgs<S>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_message(SupervisorMsg::Spawn)?;
        Ok(SupervisorState {
            args,
            backoff: RESTART_BACKOFF,
            started: Instant::now(),
            child: None,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Spawn if !state.stopping => {
                let args = PollerArgs {
                    source: (state.args.make_source)(),
                    store: state.args.store.clone(),
                    interval: state.args.interval,
                    metrics: state.args.metrics.clone(),
                    upstream_metrics: state.args.upstream_metrics.clone(),
                    retention: state.args.retention,
                    lease: state.args.lease.clone(),
                };
                let (child, _) =
                    Actor::spawn_linked(None, Poller::<S>::default(), args, myself.get_cell())
                        .await?;
                state.child = Some(child);
                state.started = Instant::now();
            }
            SupervisorMsg::Spawn => {}
        }
        Ok(())
    }

    /// **Restart policy.** A poller that failed (an error escaping a cycle, or a panic) or
    /// stopped on its own is counted in `topcoins_actor_restarts_total{kind}`, logged, and
    /// started again with a fresh source after [`RESTART_BACKOFF`]: 100 ms, doubling with each
    /// failure in a row up to 10 s, with equal jitter (each wait between half its ceiling and
    /// the ceiling). Once a poller has lived [`HEALTHY_AFTER`], its failure counts as the first
    /// in a row again. A restarted poller resumes from the store like a new process, so
    /// nothing unchanged is announced again. While the supervisor stops, nothing restarts.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let reason = match event {
            SupervisionEvent::ActorFailed(_, error) => error.to_string(),
            SupervisionEvent::ActorTerminated(_, _, reason) if !state.stopping => {
                reason.unwrap_or_else(|| "stopped".into())
            }
            _ => return Ok(()),
        };
        state.child = None;
        if state.started.elapsed() > HEALTHY_AFTER {
            state.backoff.reset();
        }
        let kind = S::Snapshot::KIND.as_str();
        state
            .args
            .metrics
            .actor_restarts
            .with_label_values(&[kind])
            .inc();
        let wait = state.backoff.next_delay();
        tracing::error!(kind, %reason, failures_in_a_row = state.backoff.attempt(), restart_in = ?wait, "poller failed; restarting it");
        myself.send_after(wait, || SupervisorMsg::Spawn);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(15)))
            .await;
        Ok(())
    }
}
