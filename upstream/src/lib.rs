//! The HTTP client for providers, which the price and ranking services build their provider
//! clients on. (The poll → hash → store → announce runtime they run on is `topcoins-poller`.)
//!
//! - [`http`]: [`Upstream`], a provider's HTTP client with timeouts, retries with jittered
//!   exponential backoff (`topcoins_runtime::Backoff`), `Retry-After`, metrics, and errors
//!   that never carry a key.
//! - [`cryptocompare`]: what every CryptoCompare client shares: its envelope, its errors
//!   inside HTTP 200, its key header and its allowance.
//! - [`endpoint`]: [`Endpoint`], a provider's configured URL and key, and whether it is the
//!   real provider.
//! - [`error`]: [`UpstreamError`] and its matchable [`UpstreamErrorKind`].
//! - [`json`]: decoding a provider body into types, with the JSON path that broke.
//! - [`metrics`]: [`UpstreamMetrics`], what providers were asked and what they answered.
//! - `testing`: recorded responses and a one-response server, for tests of provider clients.

pub mod cryptocompare;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod json;
pub mod metrics;
#[doc(hidden)]
pub mod testing;

pub use endpoint::Endpoint;
pub use error::{UpstreamError, UpstreamErrorKind};
pub use http::{HttpConfig, Upstream};
pub use metrics::UpstreamMetrics;

/// Installs the process-wide TLS provider once (reqwest is built without one, to share
/// async-nats's `ring`). Idempotent.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
