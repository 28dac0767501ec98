//! The ranking side of topcoins: polls CryptoCompare's toplist by 24h total volume and
//! announces a new ranking snapshot whenever the ranking changes.
//!
//! - [`cryptocompare`]: the toplist client and parser.
//! - this file: [`RankingConfig`], the [`Source`] the generic poller drives, and [`run`].

pub mod cryptocompare;

use std::future::Future;
use std::time::Duration;

use topcoins_bus::NatsConfig;
use topcoins_schemas::RankingSnapshot;
use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::poller::serve;
use topcoins_upstream::{RunError, Source, Upstream, UpstreamError, UpstreamMetrics};

use crate::cryptocompare::CryptoCompareClient;

/// CryptoCompare caches the toplist for 120 s; polling faster buys nothing.
pub const DEFAULT_INTERVAL: &str = "120s";
pub const DEFAULT_UNIVERSE: usize = 2000;

#[derive(Debug, Clone, clap::Args)]
pub struct RankingConfig {
    /// CryptoCompare base URL (the simulator's root in development).
    #[arg(long = "cryptocompare-url", env = "TOPCOINS_CRYPTOCOMPARE_URL", default_value = cryptocompare::DEFAULT_URL)]
    pub cryptocompare_url: String,
    /// CryptoCompare API key (sent as `authorization: Apikey …`; never logged).
    #[arg(
        long = "cryptocompare-api-key",
        env = "CRYPTOCOMPARE_API_KEY",
        hide_env_values = true
    )]
    pub cryptocompare_api_key: Option<String>,
    /// How often the ranking is polled.
    #[arg(long = "ranking-interval", env = "TOPCOINS_RANKING_INTERVAL", default_value = DEFAULT_INTERVAL, value_parser = humantime::parse_duration)]
    pub ranking_interval: Duration,
    /// How many coins (by 24h volume) to rank; read in pages of 100.
    #[arg(long = "ranking-universe", env = "TOPCOINS_RANKING_UNIVERSE", default_value_t = DEFAULT_UNIVERSE)]
    pub ranking_universe: usize,
}

pub struct CryptoCompareSource {
    client: CryptoCompareClient,
    universe: usize,
}

impl Source for CryptoCompareSource {
    type Snapshot = RankingSnapshot;

    fn provider(&self) -> &'static str {
        cryptocompare::PROVIDER
    }

    async fn fetch(&mut self) -> Result<RankingSnapshot, UpstreamError> {
        self.client.snapshot(self.universe).await
    }
}

/// Runs the ranking service until `shutdown`.
pub async fn run(
    config: RankingConfig,
    nats: NatsConfig,
    retention: Duration,
    metrics: UpstreamMetrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    tracing::info!(
        url = %config.cryptocompare_url,
        api_key = if config.cryptocompare_api_key.is_some() { "<set>" } else { "<unset>" },
        interval = %humantime::format_duration(config.ranking_interval),
        universe = config.ranking_universe,
        nats = %nats.url,
        "ranking service starting"
    );
    let http = Upstream::new(
        cryptocompare::PROVIDER,
        HttpConfig::default(),
        metrics.clone(),
    );
    let source = CryptoCompareSource {
        client: CryptoCompareClient::new(
            http,
            &config.cryptocompare_url,
            config.cryptocompare_api_key.clone(),
        ),
        universe: config.ranking_universe,
    };
    serve(
        &nats,
        |_| source,
        config.ranking_interval,
        retention,
        metrics,
        shutdown,
    )
    .await
}
