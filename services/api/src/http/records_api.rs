//! `GET /v1/metrics/{id}/records`: a metric's records from the database, one value per poll
//! (unchanged polls included), JSON or CSV, paged by time.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::ACCEPT;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use topcoins_history::{Cursor, RecordRange, RecordStore};
use topcoins_schemas::api::{ErrorBody, RecordEntry, RecordsMeta, RecordsResponse};

use super::coins::{percent_decoded, respond, too_long};
use super::metrics_api::MetricId;
use super::{AppState, MAX_QUERY_BYTES};
use crate::error::ApiError;
use crate::history::etag_of;
use crate::history::query::{parse_cursor, parse_range};
use crate::query::{Format, echo, params, parse_format, parse_limit};

/// Records a page holds by default (a day at one poll a minute) and at most.
pub const DEFAULT_LIMIT: usize = 1440;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordsQuery {
    pub from: i64,
    pub to: i64,
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub format: Format,
}

pub(crate) fn parse(
    raw: Option<&str>,
    accept: Option<&str>,
    now: i64,
) -> Result<RecordsQuery, ApiError> {
    let [from, to, limit, cursor, format] =
        params(raw, ["from", "to", "limit", "cursor", "format"])?;
    let (from, to) = parse_range(from.as_deref(), to.as_deref(), now)?;
    let limit = match limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(v) => parse_limit(v, MAX_LIMIT)?,
    };
    let cursor = cursor.as_deref().map(parse_cursor).transpose()?;
    let format = parse_format(format.as_deref(), accept)?;
    Ok(RecordsQuery {
        from,
        to,
        limit,
        cursor,
        format,
    })
}

fn unknown_metric(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_metric",
        message: format!(
            "no metric {:?} is tracked or recorded (see GET /v1/metrics)",
            echo(id)
        ),
    }
}

/// The metric id of a `/v1/metrics/{id}/records` path, checked.
fn metric_of(path: &str) -> Result<String, ApiError> {
    let raw = path
        .strip_prefix("/v1/metrics/")
        .and_then(|p| p.strip_suffix("/records"))
        .and_then(percent_decoded)
        .ok_or_else(|| ApiError::bad_request("invalid_metric_id", "the metric id is not UTF-8"))?;
    if MetricId::parse(&raw).is_none() {
        return Err(ApiError::bad_request(
            "invalid_metric_id",
            format!(
                "a metric id is exchange:pair:metric (kraken:btc-usd:volume), got {:?}",
                echo(&raw)
            ),
        ));
    }
    Ok(raw.into_owned())
}

#[utoipa::path(
    get,
    path = "/v1/metrics/{id}/records",
    operation_id = "metric_records",
    summary = "A metric's records: one value per poll",
    description = "From the database: the metric's value at every poll in `from..=to` \
        (default the last 24 h), unchanged polls included, ascending by time, paged with \
        `cursor` = `meta.next_cursor`. JSON, or CSV (`time,value`) with `format=csv` or \
        `Accept: text/csv`; the CSV's next cursor is in the `x-next-cursor` header. \
        Records are kept `TOPCOINS_RECORD_RETENTION` (default 7 days).",
    params(
        ("id" = String, Path, example = "kraken:btc-usd:volume",
            pattern = r"^(kraken|coinbase|binance):[a-z0-9]{1,20}-[a-z0-9]{1,20}:(price|high|low|change_pct|change_abs|volume|volume_quote)$",
            description = "`exchange:pair:metric`"),
        ("from" = Option<String>, Query, nullable = false,
            description = "Unix ms or RFC 3339, included (default `to` − 24 h)"),
        ("to" = Option<String>, Query, nullable = false,
            description = "Unix ms or RFC 3339, included (default now)"),
        ("limit" = Option<usize>, Query, nullable = false, minimum = 1, maximum = 10000,
            description = "Records per page (default 1440)"),
        ("cursor" = Option<String>, Query, nullable = false,
            description = "`meta.next_cursor` of the page before"),
        ("format" = Option<String>, Query, nullable = false, description = "`json` or `csv`"),
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An ETag of an earlier response: `304` if it is still current"),
    ),
    responses(
        (status = 200, description = "A page of records",
            content((RecordsResponse = "application/json"),
                (String = "text/csv", example = "time,value\n1764547200000,1234.5\n")),
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified", headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "`invalid_metric_id`, `invalid_time`, `invalid_range`, \
            `invalid_limit`, `invalid_cursor`, `invalid_format` or `duplicate_parameter`",
            body = ErrorBody),
        (status = 404, description = "`unknown_metric`: neither tracked nor recorded in the range", body = ErrorBody),
        (status = 414, description = "`uri_too_long`", body = ErrorBody),
        (status = 503, description = "`history_unavailable`: no database, or it is down", body = ErrorBody),
    ),
)]
pub(crate) async fn records(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match records_response(&app, &parts).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn records_response(
    app: &AppState,
    request: &axum::http::request::Parts,
) -> Result<Response, ApiError> {
    let raw = request.uri.query();
    if raw.is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
        return Err(too_long());
    }
    let id = metric_of(request.uri.path())?;
    let accept = request.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let q = parse(raw, accept, crate::history::now_ms())?;
    let store = app.history.store()?;
    app.metrics.history_reads.inc();
    let page = store
        .records(&RecordRange {
            metric: id.clone(),
            from: q.from,
            to: q.to,
            limit: q.limit,
            cursor: q.cursor,
        })
        .await
        .map_err(|e| app.history.failed(&e))?;
    if page.records.is_empty() && q.cursor.is_none() && !app.tickers.is_tracked(&id) {
        return Err(unknown_metric(&id));
    }
    let next_cursor = page.next_cursor.map(|c| c.to_string());
    let (body, content_type) = match q.format {
        Format::Json => {
            let body = RecordsResponse {
                meta: RecordsMeta {
                    id,
                    from: q.from,
                    to: q.to,
                    count: page.records.len(),
                    next_cursor: next_cursor.clone(),
                },
                data: page
                    .records
                    .iter()
                    .map(|&(time, value)| RecordEntry { time, value })
                    .collect(),
            };
            (
                serde_json::to_vec(&body).expect("API bodies serialise"),
                "application/json",
            )
        }
        Format::Csv => {
            let mut out = String::with_capacity(16 + page.records.len() * 28);
            out.push_str("time,value\n");
            for (time, value) in &page.records {
                out.push_str(&format!("{time},{value}\n"));
            }
            (out.into_bytes(), "text/csv; charset=utf-8")
        }
    };
    let body = Bytes::from(body);
    let etag = etag_of(&body);
    let mut response = respond(
        &request.headers,
        (&body, &etag, &Default::default()),
        content_type,
        "no-cache",
    );
    response.headers_mut().append(
        axum::http::header::VARY,
        axum::http::HeaderValue::from_static("Accept"),
    );
    if let Some(c) = next_cursor
        && let Ok(v) = axum::http::HeaderValue::from_str(&c)
    {
        response.headers_mut().insert("x-next-cursor", v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::query::DEFAULT_SPAN_MS;

    const NOW: i64 = 1_764_596_832_345;

    #[test]
    fn the_last_day_by_default_and_bad_input_named() {
        let q = parse(None, None, NOW).unwrap();
        assert_eq!(
            (q.from, q.to, q.limit, q.format),
            (NOW - DEFAULT_SPAN_MS, NOW, DEFAULT_LIMIT, Format::Json)
        );
        let q = parse(
            Some("from=2025-12-01T00:00:00Z&to=1764633600000&limit=10&cursor=5&format=csv"),
            None,
            NOW,
        )
        .unwrap();
        assert_eq!(
            (q.from, q.to, q.limit),
            (1_764_547_200_000, 1_764_633_600_000, 10)
        );
        assert_eq!(q.cursor, Some(Cursor(5)));
        assert_eq!(q.format, Format::Csv);
        for (bad, code) in [
            ("from=2&to=1", "invalid_range"),
            ("from=yesterday", "invalid_time"),
            ("limit=0", "invalid_limit"),
            ("limit=10001", "invalid_limit"),
            ("cursor=abc", "invalid_cursor"),
            ("format=xml", "invalid_format"),
            ("to=1&to=2", "duplicate_parameter"),
        ] {
            assert_eq!(parse(Some(bad), None, NOW).unwrap_err().code, code, "{bad}");
        }
        assert_eq!(
            metric_of("/v1/metrics/kraken:btc-usd:volume/records").unwrap(),
            "kraken:btc-usd:volume"
        );
        assert_eq!(
            metric_of("/v1/metrics/kraken%3Abtc-usd%3Aprice/records").unwrap(),
            "kraken:btc-usd:price"
        );
        assert_eq!(
            metric_of("/v1/metrics/nope/records").unwrap_err().code,
            "invalid_metric_id"
        );
    }
}
