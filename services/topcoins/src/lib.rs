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
