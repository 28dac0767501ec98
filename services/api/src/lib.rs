//! A topcoins API node: stateless, answers every request from memory.
//!
//! - [`follower`]: follows hash notices on NATS (and the store on start and on reconnect), on
//!   a thread of its own (`bus_thread`).
//! - [`slots`]: what the node holds of each registered kind of snapshot, and the order of
//!   notices; [`node`]: applying a notice, and the kinds registered ([`node::registered`]).
//! - [`view`]: the [`view::View`] requests read, with the responses written for it.
//! - [`merge`]: ranking × prices, and the rules for shared symbols and missing prices.
//! - [`render`]: response bytes, written once per (merge, limit, format) and kept by the view.
//! - [`query`]: strict parsing of `limit` and `format`.
//! - [`http`]: routes, ETag/304, errors; [`error`]: the error body; [`metrics`].
//! - [`openapi`]: `/openapi.json`, made from the routes' descriptions in [`http`].
//! - [`history`]: the record as the node reads it — candles (cached, the open bucket brought
//!   up to the latest prices notice) and the reference prices of each entry's 24 h change.

pub mod accounts;
mod bus_thread;
pub mod cors;
pub mod dashboard;
pub mod encoding;
pub mod error;
pub mod follower;
pub mod history;
pub mod http;
pub mod merge;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod query;
pub mod render;
pub mod slots;
pub mod stream;
pub mod tickers;
pub mod view;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::Registry;
use tokio::net::TcpListener;
use topcoins_bus::NatsConfig;

use tokio::sync::watch;
use topcoins_history::DatabaseUrl;

use crate::bus_thread::Bus;
use crate::history::History;
use crate::http::App;
use crate::merge::References;
use crate::metrics::ApiMetrics;

pub const DEFAULT_LIMIT: usize = 200;
pub const MAX_LIMIT: usize = 5000;
pub const DEFAULT_STALE_AFTER: &str = "10m";
pub const DEFAULT_REQUEST_TIMEOUT: &str = "10s";
pub const DEFAULT_KEEPALIVE_TIMEOUT: &str = "75s";
pub const DEFAULT_STREAM_KEEPALIVE: &str = "15s";

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
    /// Longest a client may take to send a request's headers, counted from its first byte;
    /// then the connection is closed.
    #[arg(long = "request-timeout", env = "TOPCOINS_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Longest a connection may wait for its next request (or its first); then it is closed.
    /// Longer than the idle timeout of a load balancer in front, so the balancer closes first.
    #[arg(long = "keepalive-timeout", env = "TOPCOINS_KEEPALIVE_TIMEOUT", default_value = DEFAULT_KEEPALIVE_TIMEOUT, value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,
    /// The history database, `sqlite://PATH` or `postgres://…`: candles and the 24 h change.
    /// Without it `/v1/coins/{symbol}/candles` answers 503 and changes are `null`.
    #[arg(
        long = "database-url",
        env = "TOPCOINS_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
    /// The key that may create users (`POST /v1/users`). Unset: users cannot be created.
    #[arg(long = "admin-key", env = "TOPCOINS_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Requests per second one API key may make (steady rate); over it, 429.
    #[arg(long = "key-rate", env = "TOPCOINS_KEY_RATE", default_value_t = accounts::DEFAULT_KEY_RATE)]
    pub key_rate: u32,
    /// Requests one API key may make in a burst.
    #[arg(long = "key-burst", env = "TOPCOINS_KEY_BURST", default_value_t = accounts::DEFAULT_KEY_BURST)]
    pub key_burst: u32,
    /// Origins whose pages may call this API: `*` (every origin, for public reads) or
    /// `scheme://host[:port]` names separated by commas. Requests with a key answer only
    /// origins named here.
    #[arg(long = "cors-origins", env = "TOPCOINS_CORS_ORIGINS", default_value = cors::DEFAULT_ORIGINS)]
    pub cors_origins: cors::Origins,
    /// How often `/v1/stream` sends a keep-alive comment when it has nothing else to send.
    #[arg(long = "stream-keepalive", env = "TOPCOINS_STREAM_KEEPALIVE", default_value = DEFAULT_STREAM_KEEPALIVE, value_parser = humantime::parse_duration)]
    pub stream_keepalive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            default_limit: DEFAULT_LIMIT,
            max_limit: MAX_LIMIT,
            stale_after: humantime::parse_duration(DEFAULT_STALE_AFTER).expect("valid default"),
            request_timeout: humantime::parse_duration(DEFAULT_REQUEST_TIMEOUT)
                .expect("valid default"),
            keepalive_timeout: humantime::parse_duration(DEFAULT_KEEPALIVE_TIMEOUT)
                .expect("valid default"),
            database_url: None,
            admin_key: None,
            key_rate: accounts::DEFAULT_KEY_RATE,
            key_burst: accounts::DEFAULT_KEY_BURST,
            cors_origins: cors::Origins::default(),
            stream_keepalive: humantime::parse_duration(DEFAULT_STREAM_KEEPALIVE)
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
    let history = Arc::new(History::new(config.database_url.clone(), metrics.clone()));
    let (references, references_rx) = watch::channel(Arc::new(References::default()));
    let maintain = tokio::spawn(history.clone().maintain(references));
    let (slots, tickers) = node::registered();
    let accounts = Arc::new(accounts::Accounts::new(
        config.admin_key.as_deref(),
        config.key_rate,
        config.key_burst,
        metrics.clone(),
    ));
    let following = tokio::spawn(accounts.clone().follow(nats.clone()));
    let tidy = {
        let accounts = accounts.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                accounts.tidy();
            }
        })
    };
    let hub = stream::Hub::new(metrics.clone(), config.stream_keepalive);
    let (bus, link) = match Bus::start(
        nats.clone(),
        metrics.clone(),
        slots,
        view.clone(),
        hub.changed(),
        references_rx,
    )
    .await
    {
        Ok(started) => started,
        Err(e) => {
            maintain.abort();
            following.abort();
            tidy.abort();
            return Err(e);
        }
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        nats = %nats.redacted_url(),
        default_limit = config.default_limit,
        max_limit = config.max_limit,
        stale_after = %humantime::format_duration(config.stale_after),
        database = %config.database_url.as_ref().map_or("none".to_owned(), |u| u.to_string()),
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
        history,
        tickers,
        accounts,
        metric_bodies: http::metrics_api::MetricBodies::new(),
        cors: config.cors_origins.clone(),
        stream: hub.clone(),
    };
    tokio::task::spawn_blocking(dashboard::warm);
    let streaming = tokio::spawn(stream::run(
        hub.clone(),
        app.view.clone(),
        app.tickers.clone(),
        app.metric_bodies.clone(),
    ));
    let alerting = tokio::spawn(stream::follow_alerts(hub.clone(), nats.clone()));
    // Streams never end by themselves: they are ended first, so that the server can finish.
    let closing = hub.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    let served = http::serve(
        listener,
        http::service(app),
        config.request_timeout,
        config.keepalive_timeout,
        shutdown,
    )
    .await;
    hub.close();
    let _ = streaming.await;
    let _ = alerting.await;
    maintain.abort();
    following.abort();
    tidy.abort();
    bus.stop().await;
    served?;
    Ok(())
}
