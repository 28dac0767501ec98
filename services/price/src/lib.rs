//! The price side of topcoins: polls a price provider, and announces a new price snapshot and
//! per-coin price events whenever prices change.
//!
//! - [`cmc`]: the CoinMarketCap listings client and parser.
//! - [`coingecko`]: the CoinGecko markets client and parser (the keyless source).
//! - [`failover`]: which of the two is in force.
//! - [`events`]: per-coin price events on `topcoins.v1.price.<SYMBOL>`.
//! - this file: [`PriceConfig`], the [`Source`] the generic poller drives, and [`run`].

pub mod cmc;
pub mod coingecko;
pub mod events;
pub mod failover;

use std::future::Future;
use std::time::Duration;

use topcoins_poller::{RunError, ServiceContext, Source, serve};
use topcoins_schemas::{HashNotice, PriceSnapshot};
use topcoins_upstream::{Endpoint, Upstream, UpstreamError};

use crate::cmc::CmcClient;
use crate::coingecko::CoinGeckoClient;
use crate::events::PriceEvents;
use crate::failover::FailoverPrices;

/// Defaults against the real CoinMarketCap: 200 coins cost 1 credit, every 5 minutes is
/// 8,640 credits a month, inside the free plan's 10,000.
pub const PROVIDER_INTERVAL: Duration = Duration::from_secs(300);
pub const PROVIDER_UNIVERSE: usize = 200;
/// Defaults against any other base URL (the simulator, a proxy).
pub const SIM_INTERVAL: Duration = Duration::from_secs(10);
pub const SIM_UNIVERSE: usize = 5000;
/// CoinGecko without a key allows a few calls a minute: one page of 250 per cycle.
pub const COINGECKO_UNIVERSE: usize = 250;

#[derive(Debug, Clone, clap::Args)]
pub struct PriceConfig {
    /// CoinMarketCap base URL (the simulator's root in development).
    #[arg(long = "cmc-url", env = "TOPCOINS_CMC_URL", default_value = cmc::DEFAULT_URL)]
    pub cmc_url: String,
    /// CoinMarketCap API key (sent as `X-CMC_PRO_API_KEY`; never logged).
    #[arg(long = "cmc-api-key", env = "CMC_API_KEY", hide_env_values = true)]
    pub cmc_api_key: Option<String>,
    /// CoinGecko base URL: the keyless price source, used when CoinMarketCap is not configured or keeps failing.
    #[arg(long = "coingecko-url", env = "TOPCOINS_COINGECKO_URL", default_value = coingecko::DEFAULT_URL)]
    pub coingecko_url: String,
    /// Optional CoinGecko API key (never logged).
    #[arg(
        long = "coingecko-api-key",
        env = "COINGECKO_API_KEY",
        hide_env_values = true
    )]
    pub coingecko_api_key: Option<String>,
    /// How often prices are polled [default: 5m against CoinMarketCap, 10s against another URL].
    #[arg(long = "price-interval", env = "TOPCOINS_PRICE_INTERVAL", value_parser = humantime::parse_duration)]
    pub price_interval: Option<Duration>,
    /// How many coins (by market cap) to price [default: 200 against CoinMarketCap, 5000 against another URL].
    #[arg(long = "price-universe", env = "TOPCOINS_PRICE_UNIVERSE")]
    pub price_universe: Option<usize>,
}

impl PriceConfig {
    /// CoinMarketCap as configured.
    pub fn cmc(&self) -> Endpoint {
        Endpoint::new(
            self.cmc_url.clone(),
            self.cmc_api_key.clone(),
            cmc::DEFAULT_URL,
        )
    }

    /// CoinGecko as configured.
    pub fn coingecko(&self) -> Endpoint {
        Endpoint::new(
            self.coingecko_url.clone(),
            self.coingecko_api_key.clone(),
            coingecko::DEFAULT_URL,
        )
    }

    /// An empty key (as `KEY=${KEY:-}` in a compose file gives) counts as no key.
    fn normalise_keys(&mut self) {
        (self.cmc_url, self.cmc_api_key) = self.cmc().into_parts();
        (self.coingecko_url, self.coingecko_api_key) = self.coingecko().into_parts();
    }

    /// Points every provider that has no key, and whose base URL was left at the real one, at
    /// the simulator at `sim_url` (what `topcoins up` and `TOPCOINS_SIM_URL` do). Returns
    /// whether CoinMarketCap was pointed there (CoinGecko needs no key, so it is the fallback
    /// either way).
    pub fn use_sim_for_keyless(&mut self, sim_url: &str) -> bool {
        let (mut cmc, mut coingecko) = (self.cmc(), self.coingecko());
        let used = cmc.use_sim_if_keyless(sim_url);
        coingecko.use_sim_if_keyless(sim_url);
        (self.cmc_url, self.cmc_api_key) = cmc.into_parts();
        (self.coingecko_url, self.coingecko_api_key) = coingecko.into_parts();
        used
    }

    fn is_real_provider(&self) -> bool {
        self.cmc().is_real()
    }

    /// CoinMarketCap is usable with a key, or at any other base URL (the simulator, a proxy).
    pub fn has_cmc(&self) -> bool {
        self.cmc_api_key.is_some() || !self.is_real_provider()
    }

    /// The polling interval in force.
    pub fn interval(&self) -> Duration {
        self.price_interval.unwrap_or(if self.is_real_provider() {
            PROVIDER_INTERVAL
        } else {
            SIM_INTERVAL
        })
    }

    /// The number of coins priced by CoinMarketCap.
    pub fn universe(&self) -> usize {
        self.price_universe.unwrap_or(if self.is_real_provider() {
            PROVIDER_UNIVERSE
        } else {
            SIM_UNIVERSE
        })
    }

    /// The number of coins priced by CoinGecko: one keyless page against the real one.
    pub fn coingecko_universe(&self) -> usize {
        if self.coingecko_url.trim_end_matches('/') == coingecko::DEFAULT_URL
            && self.coingecko_api_key.is_none()
        {
            self.universe().min(COINGECKO_UNIVERSE)
        } else {
            self.universe()
        }
    }
}

/// Prices from the source in force, with per-coin events after each change.
pub struct PriceSource {
    prices: FailoverPrices,
    events: PriceEvents,
}

impl Source for PriceSource {
    type Snapshot = PriceSnapshot;

    fn provider(&self) -> &'static str {
        self.prices.active()
    }

    async fn fetch(&mut self) -> Result<PriceSnapshot, UpstreamError> {
        self.prices.fetch().await
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
    mut config: PriceConfig,
    context: ServiceContext,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    config.normalise_keys();
    tracing::info!(
        cmc_url = %config.cmc_url,
        cmc_api_key = topcoins_runtime::secret::presence(config.cmc_api_key.as_ref()),
        coingecko_url = %config.coingecko_url,
        coingecko_api_key = topcoins_runtime::secret::presence(config.coingecko_api_key.as_ref()),
        primary = if config.has_cmc() { cmc::PROVIDER } else { coingecko::PROVIDER },
        interval = %humantime::format_duration(config.interval()),
        universe = config.universe(),
        nats = %context.nats.redacted_url(),
        "price service starting"
    );
    let metrics = context.upstream_metrics.clone();
    let primary = config.has_cmc().then(|| {
        let http = Upstream::new(cmc::PROVIDER, context.http.clone(), metrics.clone());
        (
            CmcClient::new(http, &config.cmc_url, config.cmc_api_key.clone()),
            config.universe(),
        )
    });
    let gecko_http = Upstream::new(coingecko::PROVIDER, context.http.clone(), metrics.clone());
    let fallback = (
        CoinGeckoClient::new(
            gecko_http,
            &config.coingecko_url,
            config.coingecko_api_key.clone(),
        ),
        config.coingecko_universe(),
    );
    // Called again for each restart of the poller: a fresh failover state, the same clients.
    let make_source = move |client| PriceSource {
        prices: FailoverPrices::new(primary.clone(), fallback.clone(), metrics.clone()),
        events: PriceEvents::new(client, metrics.clone()),
    };
    let interval = config.interval();
    serve(context, make_source, interval, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_target() {
        let mut c = PriceConfig {
            cmc_url: format!("{}/", cmc::DEFAULT_URL),
            cmc_api_key: None,
            coingecko_url: coingecko::DEFAULT_URL.into(),
            coingecko_api_key: None,
            price_interval: None,
            price_universe: None,
        };
        assert_eq!(
            (c.interval(), c.universe()),
            (PROVIDER_INTERVAL, PROVIDER_UNIVERSE)
        );
        // 200 coins is one credit; a month of polls stays inside the free 10,000 credits.
        let polls_per_month = 30 * 24 * 3600 / PROVIDER_INTERVAL.as_secs() as usize;
        assert!(polls_per_month * PROVIDER_UNIVERSE.div_ceil(200) <= 10_000);
        c.cmc_url = "http://127.0.0.1:9000".into();
        assert_eq!((c.interval(), c.universe()), (SIM_INTERVAL, SIM_UNIVERSE));
        assert!(c.has_cmc());
        assert_eq!(
            c.coingecko_universe(),
            COINGECKO_UNIVERSE,
            "keyless real coingecko: one page"
        );
        c.coingecko_url = "http://127.0.0.1:9000".into();
        assert_eq!(c.coingecko_universe(), SIM_UNIVERSE);
        c.price_universe = Some(7);
        c.price_interval = Some(Duration::from_secs(1));
        assert_eq!((c.interval(), c.universe()), (Duration::from_secs(1), 7));
    }
}
