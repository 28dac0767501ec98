//! `/metrics` and `/healthz` for processes that have no API of their own (`price`, `ranking`),
//! so Prometheus scrapes every service.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Serves `registry` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let encoder = TextEncoder::new();
                    let mut buffer = Vec::new();
                    if let Err(e) = encoder.encode(&registry.gather(), &mut buffer) {
                        tracing::error!(error = %e, "metrics encoding failed");
                    }
                    ([(CONTENT_TYPE, encoder.format_type().to_owned())], buffer).into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
