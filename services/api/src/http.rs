//! The HTTP surface: `GET /` (top list, JSON or CSV, ETag/304), `/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`, and JSON errors for everything else; [`coins`]: one coin
//! and its candles; [`idle`]: the header and keep-alive timeouts of a connection.
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`); [`routes`] is the one
//! list of routes, from which both the router and `/openapi.json` are made.

mod accounts_api;
mod alerts_api;
mod coins;
mod idle;
pub mod metrics_api;
mod records_api;

pub(crate) use coins::respond;
pub(crate) use coins::too_long as coins_too_long;

/// The user an `Authorization` header names (and counts the request against its key), or
/// the refusal to send.
pub(crate) async fn caller_of(
    app: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<String, Response> {
    match accounts_api::caller(app, parts).await {
        Ok((caller, _)) => Ok(caller.user_id.clone()),
        Err(refused) => Err(refused.into_response()),
    }
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    self, ACCEPT, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prometheus::Registry;
use time::OffsetDateTime;
use topcoins_bus::Link;
use topcoins_schemas::api::{ErrorBody, Health, Readiness, TopResponse};
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::encoding;
use crate::error::ApiError;
use crate::metrics::ApiMetrics;
use crate::openapi::Spec;
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
    /// `/openapi.json`, made by [`openapi`] for this node's limits.
    pub openapi: Spec,
    /// Candles, from the database.
    pub history: Arc<crate::history::History>,
    /// The exchange tickers in force.
    pub tickers: crate::tickers::Tickers,
    /// Keys, the admin key, rate limits and revocations.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// `GET /v1/metrics/{id}` answers made ahead.
    pub metric_bodies: Arc<metrics_api::MetricBodies>,
    /// The origins whose pages may call this node.
    pub cors: crate::cors::Origins,
    /// `/v1/stream`'s events.
    pub stream: Arc<crate::stream::Hub>,
}

/// How long a graceful shutdown waits for open connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest query string accepted; a longer one is answered 414.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Largest request body accepted (the JSON of `POST /v1/users` and `/v1/watchlist`); larger
/// ones are answered 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub(crate) type AppState = Arc<App>;

impl App {
    /// Stale: the bus is away (we cannot know of changes), or the data is older than
    /// `stale_after`.
    fn is_stale(&self, view: &View) -> bool {
        let age = OffsetDateTime::now_utc() - view.as_of();
        !self.link.is_up() || age > self.stale_after
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 says for this header).
pub(crate) fn not_modified(headers: &HeaderMap, etag: &[u8]) -> bool {
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag)
        })
    })
}

#[utoipa::path(
    get,
    path = "/",
    operation_id = "top",
    summary = "The top coins, ranked by 24 h volume and priced in USD",
    description = "JSON by default; CSV (`Rank,Symbol,Price USD`, then one row per coin) with \
        `format=csv`, or without `format` when `Accept` prefers `text/csv`. Fewer entries than \
        `limit` come back when fewer are known. Unknown parameters are ignored; `limit` or \
        `format` given twice is a 400.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 5000,
            description = "How many of the top coins; an integer from 1 to the node's maximum"),
        ("format" = inline(Option<Format>), Query, description = "`json` or `csv`; wins over `Accept`"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The top list",
            content((TopResponse = "application/json"),
                (String = "text/csv", example = "Rank,Symbol,Price USD\n1,BTC,67012.5\n")),
            headers(
                ("ETag" = String, description = "Strong; names the snapshots, limit and format"),
                ("Cache-Control" = String, description = "`no-cache`"),
                ("x-topcoins-stale" = String, description = "`true` or `false`, as `meta.stale`"),
                ("x-topcoins-as-of" = String, description = "The older snapshot's time (RFC 3339)"),
            )),
        (status = 304, description = "Not modified: `If-None-Match` names the current ETag",
            headers(
                ("ETag" = String),
                ("Cache-Control" = String),
                ("x-topcoins-stale" = String),
                ("x-topcoins-as-of" = String),
            )),
        (status = 400, description = "`invalid_limit`, `invalid_format` or `duplicate_parameter`",
            body = ErrorBody),
        (status = 414, description = "`uri_too_long`: a query string over 2 KiB", body = ErrorBody),
        (status = 503, description = "`no_data`: no snapshots yet", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
    ),
)]
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
    let chosen = ready
        .variants
        .choose(&ready.body, &ready.etag, encoding::preferred(headers));
    let mut response = if not_modified(headers, chosen.etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let content_type = match query.format {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        };
        let mut r = Body::from(chosen.body.clone()).into_response();
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(encoding) = chosen.encoding {
            h.insert(CONTENT_ENCODING, encoding);
        }
        r
    };
    let h = response.headers_mut();
    h.insert(ETAG, chosen.etag.clone());
    // The format follows `Accept` when `format` is not given, the coding `Accept-Encoding`.
    h.insert(
        VARY,
        HeaderValue::from_static(if chosen.varies {
            "Accept, Accept-Encoding"
        } else {
            "Accept"
        }),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        STALE_HEADER,
        HeaderValue::from_static(if stale { "true" } else { "false" }),
    );
    h.insert(AS_OF_HEADER, view.as_of_header.clone());
    response
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    summary = "Liveness: 200 while the process runs",
    responses((status = 200, description = "Alive", body = Health)),
)]
async fn healthz() -> Response {
    Json(Health {
        status: "ok".into(),
    })
    .into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    summary = "Readiness: 200 once the node has data to serve",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`no_data`: no snapshots yet", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
    ),
)]
async fn readyz(State(app): State<AppState>) -> Response {
    match app.view.load_full() {
        Some(view) => Json(Readiness {
            status: "ready".into(),
            coins: view.list.count(),
            stale: app.is_stale(&view),
            nats_connected: app.link.is_up(),
        })
        .into_response(),
        None => ApiError::no_data().into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "The node's metrics, in the Prometheus text format",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain", body = String)),
)]
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
    let (content_type, body) = topcoins_runtime::metrics::render(&app.registry);
    ([(CONTENT_TYPE, content_type)], body).into_response()
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
    app: AppState,
}

impl HttpService {
    /// An answer ready in memory for the two routes that have them (a metric's body made
    /// ahead, a candles range in its hot slot), served without the router: their path
    /// parameter alone (extracted into the request's extensions, two allocations) cost about
    /// a twentieth of their rate (bench/metrics.sh). Anything else about such a request — a
    /// miss, a stale body, bad input — goes through the router and the handler.
    fn ahead<B>(&self, route: &'static str, request: &axum::http::Request<B>) -> Option<Response> {
        if route == DASHBOARD_ROUTE
            && request.uri().path() == "/dashboard/"
            && matches!(*request.method(), Method::GET | Method::HEAD)
        {
            // The dashboard is `/dashboard`; with a slash it is the same page (its links are
            // absolute either way).
            let to = match request.uri().query() {
                Some(q) => format!("/dashboard?{q}"),
                None => "/dashboard".to_owned(),
            };
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            if let Ok(to) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, to);
            }
            return Some(r);
        }
        if request.method() != Method::GET {
            return None;
        }
        match route {
            METRIC_ROUTE => {
                metrics_api::prepared(&self.app, request.uri().path(), request.headers())
            }
            CANDLES_ROUTE => coins::candles_hot(&self.app, request.uri(), request.headers()),
            _ => None,
        }
    }

    pub async fn call<B>(&self, request: axum::http::Request<B>) -> Response
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let route = route_label(request.uri().path());
        let started = Instant::now();
        let origin = request.headers().get(header::ORIGIN).cloned();
        if origin.is_some()
            && let Some(r) = crate::cors::preflight(
                &self.app.cors,
                request.method(),
                request.uri().path(),
                request.headers(),
            )
        {
            self.metrics.observe_request(
                route,
                r.status().as_str(),
                started.elapsed().as_secs_f64(),
            );
            return r;
        }
        // What the CORS headers of the answer depend on, read before the request is consumed.
        let cors = origin.map(|o| {
            (
                o,
                request.method().clone(),
                request.uri().path().to_owned(),
                request.headers().contains_key(header::AUTHORIZATION),
            )
        });
        let mut response = if declared_length(request.headers()) > Some(MAX_BODY_BYTES) {
            let mut r = ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!("a request body is at most {MAX_BODY_BYTES} bytes"),
            }
            .into_response();
            // The body is refused unread, so this connection cannot carry another request.
            // Say so: a client that is not told may send its next request just as the server
            // closes.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        } else if let Some(r) = self.ahead(route, &request) {
            r
        } else {
            let coding = encoding::preferred(request.headers());
            let r = match self.router.clone().oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            encoding::compress_dynamic(r, coding).await
        };
        if cors.is_none() && self.app.cors.named_any() {
            response
                .headers_mut()
                .append(VARY, HeaderValue::from_static("Origin"));
        }
        if let Some((origin, method, path, authorized)) = cors {
            crate::cors::decorate(
                &self.app.cors,
                &origin,
                &method,
                &path,
                authorized,
                &mut response,
            );
        }
        self.metrics.observe_request(
            route,
            response.status().as_str(),
            started.elapsed().as_secs_f64(),
        );
        response
    }
}

/// Every path the router serves, `/` first (nearly every request is for it): the values of
/// the metrics' `route` label. The openapi test checks that it names exactly the paths of
/// [`routes`].
pub const ROUTES: [&str; 25] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    COIN_ROUTE,
    CANDLES_ROUTE,
    EXCHANGES_ROUTE,
    METRICS_ROUTE,
    METRIC_ROUTE,
    RECORDS_ROUTE,
    USERS_ROUTE,
    KEYS_ROUTE,
    KEY_ROUTE,
    WATCHLIST_ROUTE,
    WATCH_ROUTE,
    RULES_ROUTE,
    RULE_ROUTE,
    RULE_SECRET_ROUTE,
    RULE_TEST_ROUTE,
    ALERTS_ROUTE,
    STREAM_ROUTE,
    DASHBOARD_ROUTE,
    DASHBOARD_PAGE_ROUTE,
    DASHBOARD_COIN_ROUTE,
];
const DASHBOARD_ROUTE: &str = "/dashboard";
const DASHBOARD_PAGE_ROUTE: &str = "/dashboard/{page}";
const DASHBOARD_COIN_ROUTE: &str = "/dashboard/coins/{symbol}";
const STREAM_ROUTE: &str = "/v1/stream";
const RULES_ROUTE: &str = "/v1/alerts/rules";
const RULE_ROUTE: &str = "/v1/alerts/rules/{id}";
const RULE_SECRET_ROUTE: &str = "/v1/alerts/rules/{id}/secret";
const RULE_TEST_ROUTE: &str = "/v1/alerts/rules/{id}/test";
const ALERTS_ROUTE: &str = "/v1/alerts";
const EXCHANGES_ROUTE: &str = "/v1/exchanges";
const METRICS_ROUTE: &str = "/v1/metrics";
pub(crate) const METRIC_ROUTE: &str = "/v1/metrics/{id}";
const RECORDS_ROUTE: &str = "/v1/metrics/{id}/records";
const USERS_ROUTE: &str = "/v1/users";
const KEYS_ROUTE: &str = "/v1/keys";
const KEY_ROUTE: &str = "/v1/keys/{id}";
const WATCHLIST_ROUTE: &str = "/v1/watchlist";
const WATCH_ROUTE: &str = "/v1/watchlist/{exchange}/{pair}/{metric}";
const COIN_ROUTE: &str = "/v1/coins/{symbol}";
pub(crate) const CANDLES_ROUTE: &str = "/v1/coins/{symbol}/candles";

/// The `route` label of a request: its path if that is one of ours, with a coin's symbol
/// written `{symbol}`.
fn route_label(path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix("/v1/metrics/") {
        return match rest.split_once('/') {
            None if !rest.is_empty() => METRIC_ROUTE,
            Some((id, "records")) if !id.is_empty() => RECORDS_ROUTE,
            _ => "unmatched",
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/keys/") {
        return if rest.is_empty() || rest.contains('/') {
            "unmatched"
        } else {
            KEY_ROUTE
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/alerts/rules/") {
        return match rest.split_once('/') {
            None if !rest.is_empty() => RULE_ROUTE,
            Some((id, "secret")) if !id.is_empty() => RULE_SECRET_ROUTE,
            Some((id, "test")) if !id.is_empty() => RULE_TEST_ROUTE,
            _ => "unmatched",
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/watchlist/") {
        let segments: Vec<&str> = rest.split('/').collect();
        return if segments.len() == 3 && segments.iter().all(|s| !s.is_empty()) {
            WATCH_ROUTE
        } else {
            "unmatched"
        };
    }
    if let Some(rest) = path.strip_prefix("/dashboard/") {
        return match rest.split_once('/') {
            // Redirected to `/dashboard`.
            None if rest.is_empty() => DASHBOARD_ROUTE,
            None => DASHBOARD_PAGE_ROUTE,
            Some(("coins", symbol)) if !symbol.is_empty() && !symbol.contains('/') => {
                DASHBOARD_COIN_ROUTE
            }
            _ => "unmatched",
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/coins/") {
        return match rest.split_once('/') {
            None if !rest.is_empty() => COIN_ROUTE,
            Some((symbol, "candles")) if !symbol.is_empty() => CANDLES_ROUTE,
            _ => "unmatched",
        };
    }
    ROUTES
        .iter()
        .find(|route| **route == path)
        .copied()
        .unwrap_or("unmatched")
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
    // A connection ends once its response is sent; one whose client stopped reading (a
    // stream that cannot be told to end, since its body is not being polled) is not waited
    // for beyond the grace period.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; left behind");
    }
    Ok(())
}

/// Every route, each with its description. A route joins here, with `routes!` (which takes
/// its path and method from the handler's `#[utoipa::path]`), and in [`ROUTES`].
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::frame())
        .routes(routes!(top))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(self::metrics))
        .routes(routes!(crate::openapi::serve))
        .routes(routes!(coins::coin))
        .routes(routes!(coins::candles))
        .routes(routes!(metrics_api::exchanges))
        .routes(routes!(metrics_api::metrics_list))
        .routes(routes!(metrics_api::metric))
        .routes(routes!(records_api::records))
        .routes(routes!(accounts_api::create_user))
        .routes(routes!(accounts_api::create_key, accounts_api::list_keys))
        .routes(routes!(accounts_api::revoke_key))
        .routes(routes!(accounts_api::watch, accounts_api::watchlist))
        .routes(routes!(accounts_api::unwatch))
        .routes(routes!(alerts_api::create_rule, alerts_api::list_rules))
        .routes(routes!(alerts_api::delete_rule))
        .routes(routes!(alerts_api::rotate_secret))
        .routes(routes!(alerts_api::test_rule))
        .routes(routes!(alerts_api::list_alerts))
        .routes(routes!(crate::stream::stream))
        .routes(routes!(crate::dashboard::dashboard))
        .routes(routes!(crate::dashboard::dashboard_page))
        .routes(routes!(crate::dashboard::dashboard_coin))
}

/// `/openapi.json` for a node whose `limit` defaults to `default_limit`, at most `max_limit`.
pub fn openapi(default_limit: usize, max_limit: usize) -> Spec {
    Spec::new(routes().into_openapi(), default_limit, max_limit)
}

pub fn service(app: App) -> HttpService {
    let metrics = Arc::new(app.metrics.clone());
    let app = Arc::new(app);
    let (router, _) = routes().split_for_parts();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone());
    HttpService {
        router,
        metrics,
        app,
    }
}
