//! The `topcoins` command: one binary that runs any service (`api`, `price`, `ranking`,
//! `sim`) or all of them in one process (`up`), and `cmc`, a CoinMarketCap listings client.
//!
//! - [`cli`]: the command line; every flag also reads an environment variable.
//! - [`shutdown`]: one shutdown signal (Ctrl-C or SIGTERM) fanned out to every component.
//! - [`up`]: everything at once, with a private nats-server and the simulator when needed.
//! - [`cmc`]: the CoinMarketCap command-line client.
//! - [`metrics_http`]: `/metrics` for the actor processes.
//! - [`telemetry`]: logging set-up.

pub mod cli;
pub mod cmc;
pub mod metrics_http;
pub mod shutdown;
pub mod telemetry;
pub mod up;

/// The history backfill as configured: `None` when `TOPCOINS_BACKFILL_COINS` is 0.
pub fn backfill(
    config: &topcoins_backfill::BackfillConfig,
    cryptocompare: topcoins_upstream::Endpoint,
    http: topcoins_upstream::HttpConfig,
    upstream_metrics: topcoins_upstream::UpstreamMetrics,
    registry: &prometheus::Registry,
) -> anyhow::Result<Option<topcoins_backfill::Backfill>> {
    if config.coins(&cryptocompare) == 0 {
        return Ok(None);
    }
    let metrics = topcoins_backfill::BackfillMetrics::register(registry)?;
    Ok(Some(topcoins_backfill::Backfill::from_config(
        config,
        cryptocompare,
        http,
        upstream_metrics,
        metrics,
    )))
}
