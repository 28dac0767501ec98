//! The node's bus side on a thread of its own; see [`Bus`].

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use topcoins_bus::{Link, NatsConfig, connect};

use crate::merge::References;
use crate::metrics::ApiMetrics;
use crate::slots::Slots;
use crate::view::View;
use crate::{ApiRunError, follower};

/// The node's bus side — the NATS connection, the notice follower, and the fetch, decode and
/// merge of each new snapshot — on a thread of its own with a single-threaded runtime. Requests
/// are served by the multi-threaded runtime and read what it prepares through one `ArcSwap`.
///
/// Why a thread: a change then goes from socket to view with no hand-off between worker
/// threads (notice → follower → direct-get request → reply → merge). On a busy machine every
/// such hand-off is a wait for a core, and they were most of a change's tail latency
/// (`bench/RESULTS.md`, propagation).
pub(crate) struct Bus {
    thread: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Bus {
    /// Starts the thread and returns once it is connected (or could not connect).
    pub(crate) async fn start(
        nats: NatsConfig,
        metrics: ApiMetrics,
        slots: Slots,
        view: Arc<ArcSwapOption<View>>,
        changed: Arc<tokio::sync::Notify>,
        references: tokio::sync::watch::Receiver<Arc<References>>,
    ) -> Result<(Self, Link), ApiRunError> {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("topcoins-bus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ApiRunError::Io(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (client, link) = match connect(&nats).await {
                        Ok(connected) => connected,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(link.clone()));
                    follower::follow(
                        client.clone(),
                        nats.stream_replicas,
                        link,
                        metrics,
                        slots,
                        view,
                        changed,
                        references,
                        async move {
                            let _ = stop_rx.await;
                        },
                    )
                    .await;
                    topcoins_bus::close(&client).await;
                });
            })?;
        match ready_rx.await {
            Ok(Ok(link)) => Ok((Self { thread, stop }, link)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiRunError::Io(std::io::Error::other(
                "the bus thread ended before connecting",
            ))),
        }
    }

    /// Stops following, drains the connection, and waits for the thread.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        if !matches!(
            tokio::task::spawn_blocking(move || thread.join()).await,
            Ok(Ok(()))
        ) {
            tracing::warn!("the bus thread did not end cleanly");
        }
    }
}
