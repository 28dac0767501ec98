//! The HTTP surface: `GET /` (top list, JSON or CSV, ETag/304), `/healthz`, `/readyz`,
//! `/metrics`, and JSON errors for everything else; [`idle`]: the header and keep-alive
//! timeouts of a connection.

mod idle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;
use time::OffsetDateTime;
use topcoins_bus::Link;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::query::{self, Format};
use crate::view::View;

const STALE_HEADER: HeaderName = HeaderName::from_static("x-topcoins-stale");
const AS_OF_HEADER: HeaderName = HeaderName::from_static("x-topcoins-as-of");

/// What every handler shares. Handlers get it as one `Arc`: axum clones the state for each
/// request, and a clone of this struct itself (a dozen metric handles) costs more than the
/// rest of the request.
pub struct App {
    pub view: Arc<ArcSwapOption<View>>,
    pub link: Link,
    pub metrics: ApiMetrics,
    pub registry: Registry,
    pub default_limit: usize,
    pub max_limit: usize,
    pub stale_after: Duration,
}

/// Longest query string accepted; a longer one is answered 414.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Largest request body accepted (no route takes one); larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

type AppState = Arc<App>;

impl App {
    /// Stale: the bus is away (we cannot know of changes), or the data is older than
    /// `stale_after`.
    fn is_stale(&self, view: &View) -> bool {
        let age = OffsetDateTime::now_utc() - view.as_of();
        !self.link.is_up() || age > self.stale_after
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 says for this header).
fn not_modified(headers: &HeaderMap, etag: &[u8]) -> bool {
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag)
        })
    })
}

async fn top(State(app): State<AppState>, request: Request) -> Response {
    // The request itself, not the `RawQuery` and `HeaderMap` extractors: those copy the query
    // and every header on each request.
    let (raw, headers) = (request.uri().query(), request.headers());
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return ApiError {
            status: StatusCode::URI_TOO_LONG,
            code: "uri_too_long",
            message: format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
        }
        .into_response();
    }
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let query = match query::parse(raw, accept, app.default_limit, app.max_limit) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    // A guard, not a counted reference: no write to memory the other threads read.
    let view = app.view.load();
    let Some(view) = view.as_ref() else {
        return ApiError::no_data().into_response();
    };
    let n = query.limit.min(view.list.count());
    let stale = app.is_stale(view);
    // Only the JSON body says whether it is stale; CSV is the same bytes either way.
    let ready = view.response(n, query.format, stale && query.format == Format::Json);
    let mut response = if not_modified(headers, ready.etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let content_type = match query.format {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        };
        let mut r = Body::from(ready.body.clone()).into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(ETAG, ready.etag.clone());
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        STALE_HEADER,
        HeaderValue::from_static(if stale { "true" } else { "false" }),
    );
    h.insert(AS_OF_HEADER, view.as_of_header.clone());
    response
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    match app.view.load_full() {
        Some(view) => Json(json!({
            "status": "ready",
            "coins": view.list.count(),
            "stale": app.is_stale(&view),
            "nats_connected": app.link.is_up(),
        }))
        .into_response(),
        None => ApiError::no_data().into_response(),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    if let Some(view) = app.view.load_full() {
        let now = OffsetDateTime::now_utc();
        for (kind, notice) in [("prices", &view.prices), ("ranking", &view.ranking)] {
            let age = (now - notice.as_of).as_seconds_f64().max(0.0);
            app.metrics
                .snapshot_age_seconds
                .with_label_values(&[kind])
                .set(age);
        }
        app.metrics.stale.set(i64::from(app.is_stale(&view)));
    }
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&app.registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], buffer).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// The node's HTTP service: the routes, with every request counted and timed by route and
/// status, and a declared body over [`MAX_BODY_BYTES`] refused before routing.
///
/// It wraps the router rather than being an axum middleware layer: a `from_fn` middleware
/// with its matched-path lookup and a body-limit layer cost 7-8 % of the requests per second
/// of `GET /` (bench/serve.sh), for what a few comparisons here do.
#[derive(Clone)]
pub struct HttpService {
    router: Router,
    metrics: Arc<ApiMetrics>,
}

impl HttpService {
    pub async fn call<B>(&self, request: axum::http::Request<B>) -> Response
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let route = route_label(request.uri().path());
        let started = Instant::now();
        let response = if declared_length(request.headers()) > Some(MAX_BODY_BYTES) {
            let mut r = ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!(
                    "no request takes a body; at most {MAX_BODY_BYTES} bytes are accepted"
                ),
            }
            .into_response();
            // The body is refused unread, so this connection cannot carry another request.
            // Say so: a client that is not told may send its next request just as the server
            // closes.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        } else {
            match self.router.clone().oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        };
        self.metrics.observe_request(
            route,
            response.status().as_str(),
            started.elapsed().as_secs_f64(),
        );
        response
    }
}

/// The `route` label of a request: its path if that is one of ours.
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "unmatched",
    }
}

/// The request's `Content-Length`, if it has one. An unparsable value counts as too large.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    })
}

/// Serves `service` on `listener` until `shutdown`, then lets in-flight requests finish.
///
/// Connections are served by hyper directly rather than through `axum::serve`, for the time
/// limits that protect a server whose handlers never wait (every answer is in memory) from
/// slow clients, which `axum::serve` does not expose: a request that has started gets
/// `header_timeout` from its first byte to send its headers, and a connection waiting for its
/// next request (or its first) is closed after `keepalive_timeout` (see [`idle`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: HttpService,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    let mut base = hyper::server::conn::http1::Builder::new();
    base.header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let service = hyper::service::service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, std::convert::Infallible>(service.call(request).await) }
                });
                // Each connection its own timer, which its IO tells when a request starts.
                let (stream, timer) = idle::watch(stream, header_timeout, keepalive_timeout);
                let mut builder = base.clone();
                builder.timer(timer);
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

pub fn service(app: App) -> HttpService {
    let metrics = Arc::new(app.metrics.clone());
    let app = Arc::new(app);
    let router = Router::new()
        .route("/", get(top))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app);
    HttpService { router, metrics }
}
