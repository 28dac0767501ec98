//! A topcoins API node: stateless, answers every request from memory.
//!
//! - [`sync`]: follows hash notices on NATS (and the store on start and on reconnect).
//! - [`node`]: snapshot and merge caches, and the [`node::View`] requests read.
//! - [`merge`]: ranking × prices, and the rules for shared symbols and missing prices.
//! - [`render`]: response bytes, written once per (merge, limit, format) and kept by the view.
//! - [`query`]: strict parsing of `limit` and `format`.
//! - [`http`]: routes, ETag/304, errors; [`error`]: the error body; [`metrics`].
//! - [`openapi`]: `/openapi.json`, made from the routes' descriptions in [`http`].

pub mod error;
pub mod http;
pub mod merge;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod query;
pub mod render;
pub mod sync;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::Registry;
use tokio::net::TcpListener;
use topcoins_bus::{Link, NatsConfig, connect};

use crate::http::App;
use crate::metrics::ApiMetrics;
use crate::node::View;

pub const DEFAULT_LIMIT: usize = 200;
pub const MAX_LIMIT: usize = 5000;
pub const DEFAULT_STALE_AFTER: &str = "10m";
pub const DEFAULT_REQUEST_TIMEOUT: &str = "10s";

#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// `limit` when a request gives none.
    #[arg(long = "default-limit", env = "TOPCOINS_DEFAULT_LIMIT", default_value_t = DEFAULT_LIMIT)]
    pub default_limit: usize,
    /// Largest `limit` accepted; larger ones get a 400.
    #[arg(long = "max-limit", env = "TOPCOINS_MAX_LIMIT", default_value_t = MAX_LIMIT)]
    pub max_limit: usize,
    /// Data older than this is served with `"stale": true` (so is any data while NATS is away).
    #[arg(long = "stale-after", env = "TOPCOINS_STALE_AFTER", default_value = DEFAULT_STALE_AFTER, value_parser = humantime::parse_duration)]
    pub stale_after: Duration,
    /// Longest a client may take to send a request's headers; then the connection is closed.
    #[arg(long = "request-timeout", env = "TOPCOINS_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            default_limit: DEFAULT_LIMIT,
            max_limit: MAX_LIMIT,
            stale_after: humantime::parse_duration(DEFAULT_STALE_AFTER).expect("valid default"),
            request_timeout: humantime::parse_duration(DEFAULT_REQUEST_TIMEOUT)
                .expect("valid default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiRunError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("nats: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown`, then drains in-flight requests and the NATS
/// connection. Metrics go into `registry` (served on `/metrics` with whatever else is in it).
pub async fn run(
    config: ApiConfig,
    nats: NatsConfig,
    registry: Registry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiRunError> {
    if config.max_limit == 0 || config.default_limit == 0 || config.default_limit > config.max_limit
    {
        return Err(ApiRunError::Config(format!(
            "need 1 <= default limit ({}) <= max limit ({})",
            config.default_limit, config.max_limit
        )));
    }
    let metrics = ApiMetrics::register(&registry)?;
    let view = Arc::new(ArcSwapOption::empty());
    let (bus, link) = Bus::start(nats.clone(), metrics.clone(), view.clone()).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        nats = %nats.redacted_url(),
        default_limit = config.default_limit,
        max_limit = config.max_limit,
        stale_after = %humantime::format_duration(config.stale_after),
        "api node listening"
    );
    let app = App {
        view,
        link,
        metrics,
        registry,
        default_limit: config.default_limit,
        max_limit: config.max_limit,
        stale_after: config.stale_after,
        openapi: http::openapi(config.default_limit, config.max_limit),
    };
    let served = http::serve(
        listener,
        http::service(app),
        config.request_timeout,
        shutdown,
    )
    .await;
    bus.stop().await;
    served?;
    Ok(())
}

/// The node's bus side — the NATS connection, the notice follower, and the fetch, decode and
/// merge of each new snapshot — on a thread of its own with a single-threaded runtime. Requests
/// are served by the multi-threaded runtime and read what it prepares through one `ArcSwap`.
///
/// Why a thread: a change then goes from socket to view with no hand-off between worker
/// threads (notice → follower → direct-get request → reply → merge). On a busy machine every
/// such hand-off is a wait for a core, and they were most of a change's tail latency
/// (`bench/RESULTS.md`, propagation).
struct Bus {
    thread: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Bus {
    /// Starts the thread and returns once it is connected (or could not connect).
    async fn start(
        nats: NatsConfig,
        metrics: ApiMetrics,
        view: Arc<ArcSwapOption<View>>,
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
                    sync::follow(
                        client.clone(),
                        nats.stream_replicas,
                        link,
                        metrics,
                        view,
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
    async fn stop(self) {
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
