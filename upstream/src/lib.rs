//! What the price and ranking services share about talking to providers.
//!
//! - [`http`]: [`Upstream`], a provider's HTTP client with timeouts, retries with jittered
//!   exponential backoff, `Retry-After`, metrics, and errors that never carry a key.
//! - [`endpoint`]: [`Endpoint`], a provider's configured URL and key, and whether it is the
//!   real provider.
//! - [`error`]: [`UpstreamError`] and its matchable [`UpstreamErrorKind`].
//! - [`json`]: decoding a provider body into types, with the JSON path that broke.
//! - [`poller`]: [`Poller`], the ractor actor that polls a [`Source`] on an interval, hashes
//!   the snapshot, and stores and announces it only when the hash changed.
//! - [`supervisor`]: restarts a poller that fails, with backoff.
//! - [`metrics`]: the Prometheus metrics of all of the above.

pub mod endpoint;
pub mod error;
pub mod http;
pub mod json;
pub mod metrics;
pub mod poller;
pub mod supervisor;
#[doc(hidden)]
pub mod testing;

pub use endpoint::Endpoint;
pub use error::{RunError, UpstreamError, UpstreamErrorKind};
pub use http::{HttpConfig, Upstream};
pub use metrics::UpstreamMetrics;
pub use poller::{Poller, PollerArgs, PollerMsg, ServiceContext, Source};

/// Installs the process-wide TLS provider once (reqwest is built without one, to share
/// async-nats's `ring`). Idempotent.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
