//! What every topcoins process shares at run time, below the bus and the providers: a leaf
//! crate with no topcoins dependency of its own.
//!
//! - [`backoff`]: [`Backoff`], exponential with a cap and equal jitter, and
//!   [`retry_until_shutdown`], the loop a service waits in for something it needs (the snapshot
//!   store, the lease bucket) to answer. Used by the store, the HTTP client of providers, the
//!   poll service and the poller's supervisor.
//! - [`metrics`]: the constructors every crate's `metrics.rs` registers its Prometheus
//!   metrics with, so each one reads as a list of names, help texts and labels; and
//!   [`metrics::render`], what every `/metrics` endpoint answers.
//! - [`secret`]: how keys, passwords and URLs with credentials appear in logs (they do not).

pub mod backoff;
pub mod metrics;
pub mod secret;

pub use backoff::{Backoff, retry_until_shutdown};
