//! The ranking side of topcoins: polls CryptoCompare's toplist by 24h total volume and
//! announces a new ranking snapshot whenever the ranking changes.
//!
//! - [`cryptocompare`]: the toplist client and parser.
//! - this file: [`RankingConfig`], the [`Source`] the generic poller drives, and [`run`].

pub mod cryptocompare;

use std::future::Future;
use std::time::Duration;

use topcoins_poller::{RunError, ServiceContext, Source, serve};
use topcoins_schemas::RankingSnapshot;
use topcoins_upstream::{Endpoint, Upstream, UpstreamError};

use crate::cryptocompare::CryptoCompareClient;

/// Defaults against the real CryptoCompare: 500 coins are 5 calls, every 5 minutes is 43,200
/// calls a month, inside the free tier's ~100,000 (and the toplist is cached 120 s anyway).
pub const PROVIDER_INTERVAL: Duration = Duration::from_secs(300);
pub const PROVIDER_UNIVERSE: usize = 500;
/// Defaults against any other base URL (the simulator, a proxy).
pub const SIM_INTERVAL: Duration = Duration::from_secs(10);
pub const SIM_UNIVERSE: usize = 2000;

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
    /// How often the ranking is polled [default: 5m against CryptoCompare, 10s against another URL].
    #[arg(long = "ranking-interval", env = "TOPCOINS_RANKING_INTERVAL", value_parser = humantime::parse_duration)]
    pub ranking_interval: Option<Duration>,
    /// How many coins (by 24h volume) to rank, read in pages of 100 [default: 500 against CryptoCompare, 2000 against another URL].
    #[arg(long = "ranking-universe", env = "TOPCOINS_RANKING_UNIVERSE")]
    pub ranking_universe: Option<usize>,
}

impl RankingConfig {
    /// CryptoCompare as configured.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(
            self.cryptocompare_url.clone(),
            self.cryptocompare_api_key.clone(),
            cryptocompare::DEFAULT_URL,
        )
    }

    fn set_endpoint(&mut self, endpoint: Endpoint) {
        (self.cryptocompare_url, self.cryptocompare_api_key) = endpoint.into_parts();
    }

    /// An empty key counts as no key.
    fn normalise_keys(&mut self) {
        self.set_endpoint(self.endpoint());
    }

    /// Points CryptoCompare at the simulator at `sim_url` when it has no key and its base URL
    /// was left at the real one. Returns whether it did.
    pub fn use_sim_for_keyless(&mut self, sim_url: &str) -> bool {
        let mut endpoint = self.endpoint();
        let used = endpoint.use_sim_if_keyless(sim_url);
        self.set_endpoint(endpoint);
        used
    }

    fn is_real_provider(&self) -> bool {
        self.endpoint().is_real()
    }

    /// The polling interval in force.
    pub fn interval(&self) -> Duration {
        self.ranking_interval.unwrap_or(if self.is_real_provider() {
            PROVIDER_INTERVAL
        } else {
            SIM_INTERVAL
        })
    }

    /// The number of coins ranked.
    pub fn universe(&self) -> usize {
        self.ranking_universe.unwrap_or(if self.is_real_provider() {
            PROVIDER_UNIVERSE
        } else {
            SIM_UNIVERSE
        })
    }
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
    mut config: RankingConfig,
    context: ServiceContext,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    config.normalise_keys();
    tracing::info!(
        url = %config.cryptocompare_url,
        api_key = topcoins_runtime::secret::presence(config.cryptocompare_api_key.as_ref()),
        interval = %humantime::format_duration(config.interval()),
        universe = config.universe(),
        nats = %context.nats.redacted_url(),
        "ranking service starting"
    );
    let http = Upstream::new(
        cryptocompare::PROVIDER,
        context.http.clone(),
        context.upstream_metrics.clone(),
    );
    let client = CryptoCompareClient::new(
        http,
        &config.cryptocompare_url,
        config.cryptocompare_api_key.clone(),
    );
    let universe = config.universe();
    let make_source = move |_| CryptoCompareSource {
        client: client.clone(),
        universe,
    };
    let interval = config.interval();
    serve(context, make_source, interval, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_target() {
        let mut c = RankingConfig {
            cryptocompare_url: cryptocompare::DEFAULT_URL.into(),
            cryptocompare_api_key: None,
            ranking_interval: None,
            ranking_universe: None,
        };
        assert_eq!(
            (c.interval(), c.universe()),
            (PROVIDER_INTERVAL, PROVIDER_UNIVERSE)
        );
        let polls_per_month = 30 * 24 * 3600 / PROVIDER_INTERVAL.as_secs() as usize;
        assert!(polls_per_month * PROVIDER_UNIVERSE.div_ceil(cryptocompare::PAGE_SIZE) <= 100_000);
        c.cryptocompare_url = "http://sim:9000".into();
        assert_eq!((c.interval(), c.universe()), (SIM_INTERVAL, SIM_UNIVERSE));
    }
}
