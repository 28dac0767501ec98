//! `/metrics` and `/healthz` for processes that have no API of their own (`price`, `ranking`),
//! so Prometheus scrapes every service.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::Registry;

/// Serves `registry` on `listener` until `shutdown`. The caller binds it, so that a port in
/// use fails at start and tests can hand over a port the OS picked.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let (content_type, body) = topcoins_runtime::metrics::render(&registry);
                    ([(CONTENT_TYPE, content_type)], body).into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
