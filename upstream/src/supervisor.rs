//! Keeps a [`Poller`] running: it is spawned linked to this actor, and when it fails (an error
//! or a panic in a cycle) it is started again with a fresh source.
//!
//! **Restart policy** (in `handle_supervisor_evt`): every failure is counted in
//! `topcoins_actor_restarts_total{kind}` and logged; the restart waits 100 ms, doubling with
//! each failure in a row up to 10 s, and the count of failures in a row starts over once a
//! poller has lived a minute. A restarted poller resumes from the store like a new process, so
//! nothing unchanged is announced again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use topcoins_bus::SnapshotStore;
use topcoins_schemas::Snapshot;

use crate::UpstreamMetrics;
use crate::poller::{Poller, PollerArgs, PollerMsg, Source};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

pub struct SupervisorArgs<S> {
    /// Builds the source for each (re)start.
    pub make_source: Arc<dyn Fn() -> S + Send + Sync>,
    pub lease: Option<crate::poller::SharedLease>,
    pub store: SnapshotStore,
    pub interval: Duration,
    pub retention: Duration,
    pub metrics: UpstreamMetrics,
}

pub enum SupervisorMsg {
    /// Start the poller (again).
    Spawn,
}

pub struct SupervisorState<S> {
    args: SupervisorArgs<S>,
    failures_in_a_row: u32,
    started: Instant,
    child: Option<ActorRef<PollerMsg>>,
    stopping: bool,
}

pub struct PollSupervisor<S>(PhantomData<fn() -> S>);

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
            failures_in_a_row: 0,
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
            state.failures_in_a_row = 0;
        }
        let kind = S::Snapshot::KIND.as_str();
        state
            .args
            .metrics
            .actor_restarts
            .with_label_values(&[kind])
            .inc();
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << state.failures_in_a_row.min(7))
            .min(MAX_BACKOFF);
        state.failures_in_a_row += 1;
        tracing::error!(kind, %reason, restart_in = ?backoff, "poller failed; restarting it");
        myself.send_after(backoff, || SupervisorMsg::Spawn);
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
