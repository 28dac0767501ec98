//! `GET /v1/coins/{symbol}` (one coin now, from memory) and
//! `GET /v1/coins/{symbol}/candles` (its history, from the database through
//! [`crate::history::History`]).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, VARY};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use topcoins_schemas::api::{CandlesResponse, CoinResponse, ErrorBody};

use super::{AppState, MAX_QUERY_BYTES, not_modified};
use crate::encoding::{self, Variants};
use crate::error::ApiError;
use crate::history::{self, etag_of};
use crate::query::Format;
use crate::render::rfc3339;

const NEXT_CURSOR_HEADER: HeaderName = HeaderName::from_static("x-topcoins-next-cursor");

/// The symbol in `/v1/coins/{symbol}` followed by `suffix`, percent-decoded; `None` when it
/// does not decode to UTF-8 (no coin's symbol). Read off the path rather than with axum's
/// `Path` extractor, which deserialises and allocates on every request.
fn symbol_in<'a>(path: &'a str, suffix: &str) -> Option<Cow<'a, str>> {
    percent_decoded(path.strip_prefix("/v1/coins/")?.strip_suffix(suffix)?)
}

/// One path segment percent-decoded; `None` when that is not UTF-8.
pub(crate) fn percent_decoded(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

pub(crate) fn too_long() -> ApiError {
    ApiError {
        status: StatusCode::URI_TOO_LONG,
        code: "uri_too_long",
        message: format!("the query string is longer than {MAX_QUERY_BYTES} bytes"),
    }
}

/// A 200 with `body`, or a 304 when `If-None-Match` names `etag`; either way the ETag and
/// `Cache-Control`. The body goes in the coding the request prefers, from `variants` (made
/// once for a prepared body; a fresh one compresses for this request only).
pub(crate) fn respond(
    headers: &axum::http::HeaderMap,
    (body, etag, variants): (&Bytes, &HeaderValue, &Variants),
    content_type: &'static str,
    cache_control: &'static str,
) -> Response {
    let chosen = variants.choose(body, etag, encoding::preferred(headers));
    let mut response = if not_modified(headers, chosen.etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
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
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if chosen.varies {
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    response
}

/// A JSON body of current data: its strong ETag, `no-cache`, `304` on a match.
pub(crate) fn current_json(request: &Request, value: &impl serde::Serialize) -> Response {
    let body = Bytes::from(serde_json::to_vec(value).expect("API bodies serialise"));
    let etag = etag_of(&body);
    respond(
        request.headers(),
        (&body, &etag, &Variants::default()),
        "application/json",
        "no-cache",
    )
}

#[utoipa::path(
    get,
    path = "/v1/coins/{symbol}",
    operation_id = "coin",
    summary = "One coin now: its rank, price and 24 h change",
    description = "The coin's entry of the top list in force (`GET /`), found by symbol without \
        regard to case, with its market cap where the price source gives one. Served from \
        memory. `change_24h_pct` is the change of `price_usd` against the coin's recorded \
        price 24 h before (read from the history database about once a minute), `null` when \
        that is unknown.",
    params(
        ("symbol" = String, Path, example = "BTC",
            description = "The coin's symbol, e.g. `BTC` (any case)"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "The coin", body = CoinResponse,
            headers(
                ("ETag" = String, description = "Strong"),
                ("Cache-Control" = String, description = "`no-cache`"),
            )),
        (status = 304, description = "Not modified: `If-None-Match` names the current ETag",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 404, description = "`unknown_symbol`: not in the top list", body = ErrorBody),
        (status = 503, description = "`no_data`: no snapshots yet", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
    ),
)]
pub(crate) async fn coin(State(app): State<AppState>, request: Request) -> Response {
    let Some(symbol) = symbol_in(request.uri().path(), "") else {
        return ApiError::unknown_symbol("").into_response();
    };
    let Some(view) = app.view.load_full() else {
        return ApiError::no_data().into_response();
    };
    let merged = view.list.merged();
    let Some(i) = merged.find(&symbol) else {
        return ApiError::unknown_symbol(&symbol).into_response();
    };
    let entry = merged.entry(i);
    let coin = CoinResponse {
        symbol: entry.symbol.to_owned(),
        name: entry.name.to_owned(),
        rank: entry.rank,
        price_usd: entry.price_usd,
        price_source: entry.price_source.map(str::to_owned),
        change_24h_pct: entry.change_24h_pct,
        market_cap_usd: merged.priced_by(i).and_then(|c| c.market_cap_usd),
        volume_24h_usd: entry.volume_24h_usd,
        as_of: rfc3339(view.prices.as_of),
        stale: app.is_stale(&view),
    };
    current_json(&request, &coin)
}

#[utoipa::path(
    get,
    path = "/v1/coins/{symbol}/candles",
    operation_id = "candles",
    summary = "A coin's price history as candles",
    description = "Candles of `interval` whose bucket starts in `from`..`to` (`to` excluded), \
        ascending by `time`, one per bucket at most, at most `limit`. `time` is the bucket's \
        start (Unix ms, aligned to the interval in UTC). When more rows exist in the range, \
        `meta.next_cursor` (JSON) or the `x-topcoins-next-cursor` header (CSV) names the next \
        page: pass it as `cursor` with the same range.\n\n\
        `volume` is in USD: for a candle backfilled from CryptoCompare, the provider's \
        `volumeto` (USD traded within the bucket); for a candle recorded by topcoins, the \
        coin's rolling 24 h volume at the bucket's last ranking sample (`null` when none fell \
        in it) — not the volume of the bucket alone.\n\n\
        The bucket still open is brought up to the node's latest prices notice, even before \
        the recorder has written it. A range that ended (its last bucket closed a few \
        seconds ago or more) is cached by the node and served with `Cache-Control: \
        max-age=600`; others with `no-cache`. CSV (`Time,Open,High,Low,Close,Volume`) with \
        `format=csv`, or without `format` when `Accept` prefers `text/csv`. Unknown \
        parameters are ignored; one given twice is a 400.",
    params(
        ("symbol" = String, Path, example = "BTC",
            description = "The coin's symbol, e.g. `BTC` (any case)"),
        ("interval" = inline(IntervalParam), Query, description = "The candles' length"),
        ("from" = Option<String>, Query,
            description = "Unix milliseconds or RFC 3339; default one day before `to`"),
        ("to" = Option<String>, Query,
            description = "Unix milliseconds or RFC 3339, excluded; default now"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 2000,
            description = "Most rows in one page; default 500"),
        ("cursor" = Option<String>, Query,
            description = "`meta.next_cursor` of the previous page"),
        ("format" = inline(Option<Format>), Query, description = "`json` or `csv`; wins over `Accept`"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "One page of candles",
            content((CandlesResponse = "application/json"),
                (String = "text/csv", example = "Time,Open,High,Low,Close,Volume\n1764547200000,1.0,1.2,0.9,1.1,\n")),
            headers(
                ("ETag" = String, description = "Strong; a hash of the body"),
                ("Cache-Control" = String, description = "`max-age=600` for a range that ended, else `no-cache`"),
            )),
        (status = 304, description = "Not modified: `If-None-Match` names the current ETag",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`missing_parameter`, `invalid_interval`, `invalid_time`, \
            `invalid_range` (`from` after `to`), `invalid_limit`, `invalid_cursor`, \
            `invalid_format` or `duplicate_parameter`", body = ErrorBody),
        (status = 404, description = "`unknown_symbol`: not in the top list, and no candles recorded",
            body = ErrorBody),
        (status = 414, description = "`uri_too_long`: a query string over 2 KiB", body = ErrorBody),
        (status = 503, description = "`history_unavailable`: no history database is configured, \
            or it is down", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds"))),
    ),
)]
pub(crate) async fn candles(State(app): State<AppState>, request: Request) -> Response {
    let Some(symbol) = symbol_in(request.uri().path(), "/candles") else {
        return ApiError::unknown_symbol("").into_response();
    };
    let raw = request.uri().query();
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return too_long().into_response();
    }
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let now = history::now_ms();
    let q = match history::query::parse(raw, accept, now) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    match app.history.candles(&symbol, &q, &app.view, now).await {
        Ok(ready) => candles_response(request.headers(), q.format, &ready),
        Err(e) => e.into_response(),
    }
}

/// A candles answer in its hot slot, served before the router (see `HttpService::call`);
/// `None` for anything else — a miss, a bad query, a bad symbol — which the handler answers.
pub(crate) fn candles_hot(
    app: &AppState,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    let symbol = symbol_in(uri.path(), "/candles")?;
    let raw = uri.query();
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return None;
    }
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let now = history::now_ms();
    let q = history::query::parse(raw, accept, now).ok()?;
    let ready = app.history.hot(&symbol, &q, &app.view, now)?;
    Some(candles_response(headers, q.format, &ready))
}

fn candles_response(
    headers: &axum::http::HeaderMap,
    format: Format,
    ready: &history::Ready,
) -> Response {
    let (content_type, cache_control) = match (format, ready.past) {
        (Format::Json, true) => ("application/json", "max-age=600"),
        (Format::Json, false) => ("application/json", "no-cache"),
        (Format::Csv, true) => ("text/csv; charset=utf-8", "max-age=600"),
        (Format::Csv, false) => ("text/csv; charset=utf-8", "no-cache"),
    };
    let mut response = respond(
        headers,
        (&ready.body, &ready.etag, &ready.variants),
        content_type,
        cache_control,
    );
    if let Some(cursor) = &ready.next_cursor {
        response
            .headers_mut()
            .insert(NEXT_CURSOR_HEADER, cursor.clone());
    }
    // The format follows `Accept` when `format` is not given.
    response
        .headers_mut()
        .append(VARY, HeaderValue::from_static("Accept"));
    response
}

/// The intervals, as `/openapi.json` lists them.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
enum IntervalParam {
    #[schema(rename = "1m")]
    M1,
    #[schema(rename = "5m")]
    M5,
    #[schema(rename = "15m")]
    M15,
    #[schema(rename = "1h")]
    H1,
    #[schema(rename = "4h")]
    H4,
    #[schema(rename = "1d")]
    D1,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_read_off_the_path() {
        assert_eq!(symbol_in("/v1/coins/BTC", "").as_deref(), Some("BTC"));
        assert_eq!(
            symbol_in("/v1/coins/btc/candles", "/candles").as_deref(),
            Some("btc")
        );
        assert_eq!(
            symbol_in("/v1/coins/A%2FB%20c", "").as_deref(),
            Some("A/B c")
        );
        assert_eq!(
            symbol_in("/v1/coins/%C3%91/candles", "/candles").as_deref(),
            Some("Ñ")
        );
        for bad in [
            "/v1/coins/%FF",
            "/v1/coins/%F",
            "/v1/coins/%zz",
            "/v1/coins/%",
        ] {
            assert_eq!(symbol_in(bad, ""), None, "{bad}");
        }
    }
}
