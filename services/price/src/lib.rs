//! The price side of topcoins: polls a price provider, and announces a new price snapshot and
//! per-coin price events whenever prices change.
//!
//! - [`cmc`]: the CoinMarketCap listings client and parser.
//! - [`events`]: per-coin price events on `topcoins.v1.price.<SYMBOL>`.
//! - this file: [`PriceConfig`], the [`Source`] the generic poller drives, and [`run`].

pub mod cmc;
pub mod events;

use std::future::Future;
use std::time::Duration;

use topcoins_bus::NatsConfig;
use topcoins_schemas::{HashNotice, PriceSnapshot};
use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::poller::serve;
use topcoins_upstream::{RunError, Source, Upstream, UpstreamError, UpstreamMetrics};

use crate::cmc::CmcClient;
use crate::events::PriceEvents;

pub const DEFAULT_INTERVAL: &str = "60s";
pub const DEFAULT_UNIVERSE: usize = 5000;

#[derive(Debug, Clone, clap::Args)]
pub struct PriceConfig {
    /// CoinMarketCap base URL (the simulator's root in development).
    #[arg(long = "cmc-url", env = "TOPCOINS_CMC_URL", default_value = cmc::DEFAULT_URL)]
    pub cmc_url: String,
    /// CoinMarketCap API key (sent as `X-CMC_PRO_API_KEY`; never logged).
    #[arg(long = "cmc-api-key", env = "CMC_API_KEY", hide_env_values = true)]
    pub cmc_api_key: Option<String>,
    /// How often prices are polled.
    #[arg(long = "price-interval", env = "TOPCOINS_PRICE_INTERVAL", default_value = DEFAULT_INTERVAL, value_parser = humantime::parse_duration)]
    pub price_interval: Duration,
    /// How many coins (by market cap) to price.
    #[arg(long = "price-universe", env = "TOPCOINS_PRICE_UNIVERSE", default_value_t = DEFAULT_UNIVERSE)]
    pub price_universe: usize,
}

/// Prices from CoinMarketCap, with per-coin events after each change.
pub struct CmcSource {
    client: CmcClient,
    universe: usize,
    events: PriceEvents,
}

impl Source for CmcSource {
    type Snapshot = PriceSnapshot;

    fn provider(&self) -> &'static str {
        cmc::PROVIDER
    }

    async fn fetch(&mut self) -> Result<PriceSnapshot, UpstreamError> {
        self.client.snapshot(self.universe).await
    }

    async fn announced(
        &mut self,
        previous: Option<&PriceSnapshot>,
        current: &PriceSnapshot,
        notice: &HashNotice,
    ) {
        self.events
            .publish_changes(previous, current, notice.as_of)
            .await;
    }
}

/// Runs the price service until `shutdown`.
pub async fn run(
    config: PriceConfig,
    nats: NatsConfig,
    retention: Duration,
    metrics: UpstreamMetrics,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    tracing::info!(
        cmc_url = %config.cmc_url,
        cmc_api_key = if config.cmc_api_key.is_some() { "<set>" } else { "<unset>" },
        interval = %humantime::format_duration(config.price_interval),
        universe = config.price_universe,
        nats = %nats.url,
        "price service starting"
    );
    let http = Upstream::new(cmc::PROVIDER, HttpConfig::default(), metrics.clone());
    let make_source = |client| CmcSource {
        client: CmcClient::new(http, &config.cmc_url, config.cmc_api_key.clone()),
        universe: config.price_universe,
        events: PriceEvents::new(client, metrics.clone()),
    };
    serve(
        &nats,
        make_source,
        config.price_interval,
        retention,
        metrics.clone(),
        shutdown,
    )
    .await
}
