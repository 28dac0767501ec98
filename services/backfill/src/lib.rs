//! The backfill of price history: CryptoCompare's `histoday` and `histohour` for the top coins,
//! stored as `1d` and `1h` candles (source `cryptocompare`, with the provider's volumes) in a
//! [`topcoins_history::CandleStore`], so a chart has years of days and weeks of hours from
//! the first minute. Recorded candles always win their bucket (`upsert_backfilled` never
//! replaces one), and what was fetched is kept in the store, so a restart fetches nothing
//! again.
//!
//! Layout:
//! - [`client`]: [`HistoClient`], one histo page of one coin, and [`client::parse`], which
//!   says what a row may be (zero-filled rows skipped; one broken row refuses the body).
//! - [`driver`]: [`Backfill`], what to fetch for which coin, paging, pacing and backoff, and
//!   the progress records; [`Report`], what a run did.
//! - [`metrics`]: [`BackfillMetrics`], `topcoins_backfill_*`.
//! - this file: [`BackfillConfig`], the flags, and [`Backfill::from_config`].
//!
//! **For the caller** (the recorder): build it once, then call [`Backfill::run`] at start and
//! whenever the ranking changes, one run at a time:
//!
//! ```ignore
//! let backfill = Backfill::from_config(&config, endpoint, http, upstream_metrics, metrics);
//! let report = backfill.run(&store, &top_symbols_in_rank_order, shutdown.clone()).await;
//! ```
//!
//! A run with nothing due makes no call, so calling it on every ranking notice is cheap.
//! Budget against the real provider, with the defaults (`TOPCOINS_BACKFILL_COINS` = 100,
//! depth 2000 buckets = one call per coin and interval, refresh once a day):
//! - first start: 2 calls per coin (one `histoday`, one `histohour`): 200 calls, ~100 s at
//!   the default spacing of 500 ms, the daily candles of all 100 coins in the first 50 s;
//! - a restart: no call (records in the store; only what is due for its daily refresh);
//! - a coin newly in the top set: 2 calls;
//! - afterwards: 2 calls per coin a day (the refresh of the newest end), 200 a day, about
//!   6,000 a month — with the ranking's 43,200 well inside the free plan's ~100,000.

pub mod client;
pub mod driver;
pub mod metrics;

use std::time::Duration;

use topcoins_upstream::http::HttpConfig;
use topcoins_upstream::{Endpoint, Upstream, UpstreamMetrics};

pub use client::{Histo, HistoClient, HistoPage};
pub use driver::{Backfill, Failure, Limits, Pacing, Report, Stop};
pub use metrics::BackfillMetrics;

/// Coins backfilled against the real CryptoCompare.
pub const PROVIDER_COINS: usize = 100;
/// Coins backfilled against any other base URL (the simulator, a proxy).
pub const SIM_COINS: usize = 100;
/// Spacing of calls against any other base URL.
pub const SIM_SPACING: Duration = Duration::from_millis(10);

/// The backfill's own flags. The CryptoCompare URL and key are the ranking's
/// (`TOPCOINS_CRYPTOCOMPARE_URL`, `CRYPTOCOMPARE_API_KEY`), handed in as an [`Endpoint`], and
/// the HTTP settings are the shared `TOPCOINS_UPSTREAM_*`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillConfig {
    /// How many of the top coins get their history backfilled (0 = none) [default: 100].
    #[arg(long = "backfill-coins", env = "TOPCOINS_BACKFILL_COINS")]
    pub backfill_coins: Option<usize>,
    /// Least time between two backfill calls [default: 500ms against CryptoCompare, 10ms against another URL].
    #[arg(long = "backfill-spacing", env = "TOPCOINS_BACKFILL_SPACING", value_parser = humantime::parse_duration)]
    pub backfill_spacing: Option<Duration>,
    /// How often each coin's newest candles are fetched again.
    #[arg(long = "backfill-refresh", env = "TOPCOINS_BACKFILL_REFRESH", default_value = "24h", value_parser = humantime::parse_duration)]
    pub backfill_refresh: Duration,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            backfill_coins: None,
            backfill_spacing: None,
            backfill_refresh: driver::DEFAULT_REFRESH,
        }
    }
}

impl BackfillConfig {
    pub fn coins(&self, endpoint: &Endpoint) -> usize {
        self.backfill_coins.unwrap_or(if endpoint.is_real() {
            PROVIDER_COINS
        } else {
            SIM_COINS
        })
    }

    pub fn pacing(&self, endpoint: &Endpoint) -> Pacing {
        let spacing = self.backfill_spacing.unwrap_or(if endpoint.is_real() {
            driver::DEFAULT_SPACING
        } else {
            SIM_SPACING
        });
        Pacing {
            spacing,
            ..Pacing::default()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            refresh: self.backfill_refresh,
            ..Limits::default()
        }
    }
}

impl Backfill {
    /// The backfill as configured, against CryptoCompare at `endpoint`.
    pub fn from_config(
        config: &BackfillConfig,
        endpoint: Endpoint,
        http: HttpConfig,
        upstream_metrics: UpstreamMetrics,
        metrics: BackfillMetrics,
    ) -> Self {
        let coins = config.coins(&endpoint);
        let pacing = config.pacing(&endpoint);
        let (url, key) = endpoint.into_parts();
        let upstream = Upstream::new(
            topcoins_upstream::cryptocompare::PROVIDER,
            http,
            upstream_metrics,
        );
        Backfill::new(
            HistoClient::new(upstream, &url, key),
            coins,
            pacing,
            metrics,
        )
        .with_limits(config.limits())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        backfill: BackfillConfig,
    }

    #[test]
    fn defaults_depend_on_the_endpoint_and_flags_override_them() {
        let real = Endpoint::new(
            topcoins_upstream::cryptocompare::DEFAULT_URL,
            Some("k".into()),
            topcoins_upstream::cryptocompare::DEFAULT_URL,
        );
        let sim = Endpoint::new(
            "http://127.0.0.1:9000",
            None,
            topcoins_upstream::cryptocompare::DEFAULT_URL,
        );
        let config = Cli::try_parse_from(["x"]).unwrap().backfill;
        assert_eq!(config.coins(&real), PROVIDER_COINS);
        assert_eq!(config.pacing(&real).spacing, driver::DEFAULT_SPACING);
        assert_eq!(config.pacing(&sim).spacing, SIM_SPACING);
        assert_eq!(config.limits(), Limits::default());
        let config = Cli::try_parse_from([
            "x",
            "--backfill-coins",
            "0",
            "--backfill-spacing",
            "2s",
            "--backfill-refresh",
            "1h",
        ])
        .unwrap()
        .backfill;
        assert_eq!(config.coins(&real), 0);
        assert_eq!(config.pacing(&sim).spacing, Duration::from_secs(2));
        assert_eq!(config.limits().refresh, Duration::from_secs(3600));
        assert!(Cli::try_parse_from(["x", "--backfill-coins", "-1"]).is_err());
    }
}
