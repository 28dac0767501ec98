//! `GET /v1/exchanges` (what can be tracked), `GET /v1/metrics` (the tracked exchange metrics) and `GET /v1/metrics/{id}` (one of them
//! now), both from the ticker snapshots in memory ([`crate::tickers`]). A metric is tracked
//! while its pair is in its exchange's snapshot in force.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use topcoins_schemas::api::{
    ErrorBody, ExchangeEntry, ExchangesResponse, MetricEntry, MetricRank, MetricResponse,
    MetricsMeta, MetricsResponse,
};
use topcoins_schemas::ticker::{EXCHANGES, is_pair};
use topcoins_schemas::{MetricKind, TickerWindow};

use super::coins::{current_json, percent_decoded, respond, too_long};
use super::{AppState, MAX_QUERY_BYTES};
use crate::error::ApiError;
use crate::query::{echo, params};
use crate::render::rfc3339;

/// Entries a page holds by default and at most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A metric id, `exchange:pair:metric`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricId<'a> {
    pub exchange: &'static str,
    pub pair: &'a str,
    pub kind: MetricKind,
}

impl<'a> MetricId<'a> {
    pub fn parse(id: &'a str) -> Option<Self> {
        let mut parts = id.split(':');
        let (exchange, pair, metric) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !is_pair(pair) {
            return None;
        }
        Some(Self {
            exchange: EXCHANGES.into_iter().find(|e| *e == exchange)?,
            pair,
            kind: MetricKind::parse(metric)?,
        })
    }
}

fn entry(exchange: &str, pair: &str, kind: MetricKind) -> MetricEntry {
    MetricEntry {
        id: format!("{exchange}:{pair}:{}", kind.as_str()),
        exchange: exchange.to_owned(),
        pair: pair.to_owned(),
        metric: kind.as_str().to_owned(),
    }
}

fn unknown_metric(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_metric",
        message: format!("no tracked metric {:?} (see GET /v1/metrics)", echo(id)),
    }
}

/// The filters and page of `GET /v1/metrics`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListQuery {
    exchange: Option<&'static str>,
    pair: Option<String>,
    metric: Option<MetricKind>,
    limit: usize,
    cursor: Option<String>,
}

fn parse_list(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let [exchange, pair, metric, limit, cursor] =
        params(raw, ["exchange", "pair", "metric", "limit", "cursor"])?;
    let exchange = exchange
        .map(|e| {
            EXCHANGES.into_iter().find(|x| *x == e).ok_or_else(|| {
                ApiError::bad_request(
                    "unknown_exchange",
                    format!(
                        "exchange must be one of {}, got {:?}",
                        EXCHANGES.join(", "),
                        echo(&e)
                    ),
                )
            })
        })
        .transpose()?;
    let pair = pair
        .map(|p| {
            if is_pair(&p) {
                Ok(p)
            } else {
                Err(ApiError::bad_request(
                    "invalid_pair",
                    format!(
                        "pair must be base-quote in lower case (btc-usd), got {:?}",
                        echo(&p)
                    ),
                ))
            }
        })
        .transpose()?;
    let metric = metric
        .map(|m| {
            MetricKind::parse(&m).ok_or_else(|| {
                let kinds: Vec<&str> = MetricKind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::bad_request(
                    "unknown_metric_kind",
                    format!(
                        "metric must be one of {}, got {:?}",
                        kinds.join(", "),
                        echo(&m)
                    ),
                )
            })
        })
        .transpose()?;
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_limit",
                    format!(
                        "limit must be an integer from 1 to {MAX_LIMIT}, got {:?}",
                        echo(&v)
                    ),
                ));
            }
        },
    };
    if let Some(c) = &cursor
        && MetricId::parse(c).is_none()
    {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            format!(
                "cursor must be a metric id from meta.next_cursor, got {:?}",
                echo(c)
            ),
        ));
    }
    Ok(ListQuery {
        exchange,
        pair,
        metric,
        limit,
        cursor,
    })
}

#[utoipa::path(
    get,
    path = "/v1/metrics",
    operation_id = "metrics",
    summary = "The tracked exchange metrics",
    description = "Every metric of every pair in the exchanges' ticker snapshots in force, \
        sorted by id (`exchange:pair:metric`), filtered and paged. Served from memory.",
    params(
        ("exchange" = Option<String>, Query, nullable = false, example = "kraken",
            description = "Only this exchange's: `kraken`, `coinbase` or `binance`"),
        ("pair" = Option<String>, Query, nullable = false, example = "btc-usd",
            description = "Only this pair's (`base-quote`, lower case)"),
        ("metric" = Option<String>, Query, nullable = false, example = "volume",
            description = "Only this kind: `price`, `high`, `low`, `change_pct`, `change_abs`, `volume`, `volume_quote`"),
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 1000,
            description = "Entries per page (default 100)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "A page of tracked metrics", body = MetricsResponse,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`unknown_exchange`, `invalid_pair`, `unknown_metric_kind`, \
            `invalid_limit`, `invalid_cursor` or `duplicate_parameter`", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
    ),
)]
pub(crate) async fn metrics_list(State(app): State<AppState>, request: Request) -> Response {
    let raw = request.uri().query();
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return too_long().into_response();
    }
    let q = match parse_list(raw) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let mut all = Vec::new();
    for exchange in EXCHANGES {
        if q.exchange.is_some_and(|e| e != exchange) {
            continue;
        }
        let Some(held) = app.tickers.get(exchange) else {
            continue;
        };
        for t in held.list.tickers() {
            if q.pair.as_deref().is_some_and(|p| p != t.pair) {
                continue;
            }
            for kind in MetricKind::ALL {
                if q.metric.is_none_or(|m| m == kind) {
                    all.push(entry(exchange, &t.pair, kind));
                }
            }
        }
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let start = q
        .cursor
        .as_deref()
        .map_or(0, |c| all.partition_point(|e| e.id.as_str() <= c));
    let mut data: Vec<MetricEntry> = all.drain(start..).take(q.limit + 1).collect();
    let next_cursor = if data.len() > q.limit {
        data.truncate(q.limit);
        data.last().map(|e| e.id.clone())
    } else {
        None
    };
    let body = MetricsResponse {
        meta: MetricsMeta {
            count: data.len(),
            next_cursor,
        },
        data,
    };
    current_json(&request, &body)
}

#[utoipa::path(
    get,
    path = "/v1/metrics/{id}",
    operation_id = "metric",
    summary = "One tracked exchange metric now",
    description = "The metric's value in its exchange's ticker snapshot in force, when that \
        was announced, the window the figure covers, and its rank: the sample standard \
        deviation of its values over the last 24 h (one per poll, unchanged polls included; \
        `null` with fewer than two), ranked among the tracked metrics of its kind, largest \
        first, ties sharing a position. Served from memory; `rank` is `null` until the first \
        ranks are announced.",
    params(
        ("id" = String, Path, example = "kraken:btc-usd:volume",
            pattern = r"^(kraken|coinbase|binance):[a-z0-9]{1,20}-[a-z0-9]{1,20}:(price|high|low|change_pct|change_abs|volume|volume_quote)$",
            description = "`exchange:pair:metric`"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The metric", body = MetricResponse,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`invalid_metric_id`: not `exchange:pair:metric`", body = ErrorBody),
        (status = 404, description = "`unknown_metric`: not tracked", body = ErrorBody),
    ),
)]
pub(crate) async fn metric(State(app): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    if let Some(r) = prepared(&app, path, request.headers()) {
        return r;
    }
    let raw_id = path.strip_prefix("/v1/metrics/").unwrap_or_default();
    let Some(raw) = percent_decoded(raw_id) else {
        return ApiError::bad_request("invalid_metric_id", "the metric id is not UTF-8")
            .into_response();
    };
    let Some(id) = MetricId::parse(&raw) else {
        return ApiError::bad_request(
            "invalid_metric_id",
            format!(
                "a metric id is exchange:pair:metric (kraken:btc-usd:volume), got {:?}",
                echo(&raw)
            ),
        )
        .into_response();
    };
    let ranks = app.tickers.ranks();
    match metric_response(&app.tickers, ranks.as_deref(), id) {
        Some(body) => current_json(&request, &body),
        None => unknown_metric(&raw).into_response(),
    }
}

/// The answer made ahead for `path` (`/v1/metrics/{id}`), when the snapshots it was made
/// from are still in force; `None` otherwise (then a build of new answers is started, and the
/// caller answers from the snapshots).
pub(crate) fn prepared(
    app: &AppState,
    path: &str,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    let raw_id = path.strip_prefix("/v1/metrics/")?;
    match app.metric_bodies.prepared.load().as_ref() {
        Some(p) if app.tickers.is_current(&p.stamp) => {
            let (body, etag) = p.bodies.get(raw_id)?;
            Some(respond(
                headers,
                (body, etag, &Default::default()),
                "application/json",
                "no-cache",
            ))
        }
        _ => {
            app.metric_bodies.refresh(&app.tickers);
            None
        }
    }
}

/// One tracked metric's answer, from the snapshots in force; `None` if it is not tracked.
fn metric_response(
    tickers: &crate::tickers::Tickers,
    ranks: Option<&topcoins_schemas::RanksSnapshot>,
    id: MetricId<'_>,
) -> Option<MetricResponse> {
    let held = tickers.get(id.exchange)?;
    let t = held.list.get(id.pair)?;
    Some(response_of(id.exchange, t, id.kind, held.as_of, ranks))
}

fn response_of(
    exchange: &str,
    t: &topcoins_schemas::PairTicker,
    kind: MetricKind,
    as_of: time::OffsetDateTime,
    ranks: Option<&topcoins_schemas::RanksSnapshot>,
) -> MetricResponse {
    let window = match kind {
        MetricKind::ChangePct | MetricKind::ChangeAbs => t.change_window,
        _ => t.window,
    };
    let e = entry(exchange, &t.pair, kind);
    let rank = ranks.and_then(|ranks| {
        ranks.get(&e.id).map(|r| MetricRank {
            position: r.position,
            of: r.of,
            stddev_24h: r.stddev_24h,
        })
    });
    MetricResponse {
        id: e.id,
        exchange: e.exchange,
        pair: e.pair,
        metric: e.metric,
        value: t.value(kind),
        as_of: rfc3339(as_of),
        window: match window {
            TickerWindow::Rolling24h => "rolling_24h",
            TickerWindow::UtcDay => "utc_day",
        }
        .to_owned(),
        rank,
    }
}

/// Every tracked metric's `GET /v1/metrics/{id}` answer, made ahead: serving one is a map
/// lookup, as `GET /` is (a body made per request cost a third of the static baseline's
/// rate, `bench/metrics.sh`). Remade off the request path, on a blocking thread, the first
/// time a request finds the snapshots changed (a new ticker or ranks notice); until then
/// requests are answered the slow way, from the snapshots, so nothing is ever served stale.
#[derive(Default)]
pub struct MetricBodies {
    prepared: arc_swap::ArcSwapOption<Prepared>,
    building: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Itself, for the build task to hold.
    this: std::sync::Weak<MetricBodies>,
}

struct Prepared {
    stamp: crate::tickers::Stamp,
    bodies: std::collections::HashMap<
        compact_str::CompactString,
        (bytes::Bytes, axum::http::HeaderValue),
        foldhash::fast::RandomState,
    >,
}

impl MetricBodies {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new_cyclic(|this| Self {
            this: this.clone(),
            ..Default::default()
        })
    }

    /// Starts a build unless one is running.
    fn refresh(&self, tickers: &crate::tickers::Tickers) {
        use std::sync::atomic::Ordering;
        let Some(this) = self.this.upgrade() else {
            return;
        };
        if self.building.swap(true, Ordering::AcqRel) {
            return;
        }
        let tickers = tickers.clone();
        tokio::task::spawn_blocking(move || {
            let built = Prepared::build(&tickers);
            // Stored only if nothing changed meanwhile; otherwise the next request starts
            // another build from what is in force then.
            if tickers.is_current(&built.stamp) {
                this.prepared.store(Some(std::sync::Arc::new(built)));
            }
            this.building.store(false, Ordering::Release);
        });
    }
}

/// Each tracked metric's ETag, as a [`MetricBodies::build_now`] saw them.
pub type Etags = std::collections::HashMap<
    compact_str::CompactString,
    axum::http::HeaderValue,
    foldhash::fast::RandomState,
>;

impl MetricBodies {
    /// Builds every answer now (on the caller's thread: a blocking one), installs them, and
    /// returns what they were built from, their ETags, and the bodies that differ from
    /// `previous` (none when there is no `previous`): what the live stream sends.
    pub fn build_now(
        &self,
        tickers: &crate::tickers::Tickers,
        previous: Option<&Etags>,
    ) -> (
        crate::tickers::Stamp,
        Etags,
        Vec<(compact_str::CompactString, bytes::Bytes)>,
    ) {
        let built = Prepared::build(tickers);
        let mut etags = Etags::default();
        let mut changed = Vec::new();
        for (id, (body, etag)) in &built.bodies {
            if previous.is_some_and(|p| p.get(id) != Some(etag)) {
                changed.push((id.clone(), body.clone()));
            }
            etags.insert(id.clone(), etag.clone());
        }
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        let stamp = built.stamp.clone();
        if tickers.is_current(&built.stamp) {
            self.prepared.store(Some(std::sync::Arc::new(built)));
        }
        (stamp, etags, changed)
    }
}

impl Prepared {
    fn build(tickers: &crate::tickers::Tickers) -> Self {
        let stamp = tickers.stamp();
        let ranks = tickers.ranks();
        let mut bodies = std::collections::HashMap::default();
        for exchange in EXCHANGES {
            let Some(held) = tickers.get(exchange) else {
                continue;
            };
            for t in held.list.tickers() {
                for kind in MetricKind::ALL {
                    let body = response_of(exchange, t, kind, held.as_of, ranks.as_deref());
                    let bytes = serde_json::to_vec(&body).expect("API bodies serialise");
                    let etag = crate::history::etag_of(&bytes);
                    bodies.insert(body.id.into(), (bytes::Bytes::from(bytes), etag));
                }
            }
        }
        Self { stamp, bodies }
    }
}

#[utoipa::path(
    get,
    path = "/v1/exchanges",
    operation_id = "exchanges",
    summary = "The exchanges and their tradable pairs",
    description = "Each exchange whose list of pairs the exchange actors have read from the \
        exchange's own pairs endpoint (Kraken `AssetPairs`, Coinbase `/products`, Binance \
        `exchangeInfo`, read again every `TOPCOINS_MARKETS_REFRESH`): the pairs that can be \
        tracked. Served from memory; an exchange not polled is not listed.",
    params(
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The exchanges", body = ExchangesResponse,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String), ("Cache-Control" = String))),
    ),
)]
pub(crate) async fn exchanges(State(app): State<AppState>, request: Request) -> Response {
    let data = EXCHANGES
        .into_iter()
        .filter_map(|id| {
            let list = app.tickers.markets(id)?;
            Some(ExchangeEntry {
                id: id.to_owned(),
                pairs: list.pairs().iter().map(|p| p.to_string()).collect(),
            })
        })
        .collect();
    current_json(&request, &ExchangesResponse { data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_ids() {
        let id = MetricId::parse("kraken:btc-usd:volume").unwrap();
        assert_eq!(
            (id.exchange, id.pair, id.kind),
            ("kraken", "btc-usd", MetricKind::Volume)
        );
        for bad in [
            "",
            "kraken",
            "kraken:btc-usd",
            "kraken:btc-usd:volume:x",
            "bitfinex:btc-usd:volume",
            "kraken:BTC-USD:volume",
            "kraken:btcusd:volume",
            "kraken:btc-usd:Volume",
        ] {
            assert!(MetricId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn list_queries() {
        assert_eq!(
            parse_list(None).unwrap(),
            ListQuery {
                limit: DEFAULT_LIMIT,
                ..Default::default()
            }
        );
        let q = parse_list(Some(
            "exchange=kraken&pair=btc-usd&metric=volume&limit=5&cursor=kraken:btc-usd:high&x=1",
        ))
        .unwrap();
        assert_eq!(q.exchange, Some("kraken"));
        assert_eq!(q.metric, Some(MetricKind::Volume));
        assert_eq!(q.limit, 5);
        for (bad, code) in [
            ("exchange=ftx", "unknown_exchange"),
            ("pair=BTCUSD", "invalid_pair"),
            ("metric=open", "unknown_metric_kind"),
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=abc", "invalid_limit"),
            ("cursor=nope", "invalid_cursor"),
            ("limit=1&limit=2", "duplicate_parameter"),
        ] {
            assert_eq!(parse_list(Some(bad)).unwrap_err().code, code, "{bad}");
        }
    }
}
