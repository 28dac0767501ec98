//! A whole polling service around a [`Source`]: connect to NATS, open the snapshot store,
//! take the lease when several instances run, and keep a supervised poller running until
//! shutdown. The price and ranking services are each a `Source` and a call to [`serve`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use topcoins_bus::{Lease, NatsConfig, SnapshotStore};
use topcoins_runtime::{Backoff, retry_until_shutdown};
use topcoins_schemas::Snapshot;
use topcoins_upstream::{HttpConfig, UpstreamMetrics};

use crate::supervisor::{PollSupervisor, SupervisorArgs};
use crate::{PollerMetrics, RunError, SharedLease, Source};

/// How long to wait between tries of something NATS should soon have (the store's streams,
/// the lease bucket): 100 ms, doubling up to 2 s, with equal jitter.
const OPEN_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// What every polling service needs besides its own provider settings.
#[derive(Clone)]
pub struct ServiceContext {
    pub nats: NatsConfig,
    pub http: HttpConfig,
    /// Snapshots older than this, and not current, are deleted from the store.
    pub retention: Duration,
    /// Provider calls and bodies; the service builds its HTTP clients with them.
    pub upstream_metrics: UpstreamMetrics,
    /// Poll cycles, announcements, restarts.
    pub poller_metrics: PollerMetrics,
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
) -> Result<(), RunError> {
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
        let (ttl, replicas) = (lease_ttl(interval), context.nats.stream_replicas);
        let open = || Lease::open(client.clone(), S::Snapshot::KIND, ttl, replicas);
        match retry_until_shutdown("lease bucket", OPEN_BACKOFF, &mut shutdown, open).await {
            Some(lease) => Some(Arc::new(tokio::sync::Mutex::new(lease))),
            None => return Ok(()),
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
        (context.poller_metrics, context.upstream_metrics),
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

/// Runs a supervised poller until `shutdown`, then stops it and waits for it to end. The
/// poller counts its cycles in the first `metrics`, and what providers answered (rejected
/// bodies) in the second.
pub async fn run_poller<S: Source>(
    make_source: Arc<dyn Fn() -> S + Send + Sync>,
    lease: Option<SharedLease>,
    store: SnapshotStore,
    interval: Duration,
    retention: Duration,
    metrics: (PollerMetrics, UpstreamMetrics),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ractor::SpawnErr> {
    let kind = S::Snapshot::KIND.as_str();
    let (metrics, upstream_metrics) = metrics;
    let args = SupervisorArgs {
        make_source,
        lease,
        store,
        interval,
        retention,
        metrics,
        upstream_metrics,
    };
    let (supervisor, handle) = Actor::spawn(None, PollSupervisor::<S>::default(), args).await?;
    tracing::info!(kind, interval = %humantime::format_duration(interval), "poller started");
    shutdown.await;
    supervisor.stop(Some("shutdown".into()));
    let _ = handle.await;
    tracing::info!(kind, "poller stopped");
    Ok(())
}
