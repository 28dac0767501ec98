//! What every CryptoCompare client shares (the ranking's toplist, the backfill's `histo*`):
//! the envelope of its bodies, its errors inside HTTP 200, its key header and its allowance.
//!
//! Documented behaviour we rely on: errors come with **HTTP 200** and `"Response":"Error"`
//! plus a `Type` — 0 no such path, 1 key required, 2 bad parameter, 99 rate limit; success
//! bodies have no `Response` key (toplists) or `"Response":"Success"` (`histo*`). The key
//! travels as `authorization: Apikey …`, a header, so it never sits in a URL that could be
//! logged. A `RateLimit` block (in error bodies) or a `/stats/rate/limit` body says what is
//! left of the allowance per period.

use reqwest::header::{AUTHORIZATION, HeaderName};
use serde::Deserialize;
use serde_json::Value;

use crate::{UpstreamError, UpstreamErrorKind, UpstreamMetrics, json};

pub const PROVIDER: &str = "cryptocompare";
pub const DEFAULT_URL: &str = "https://min-api.cryptocompare.com";

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "Response")]
    response: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<i64>,
    #[serde(rename = "Data")]
    data: Option<Value>,
}

/// The `Data` of a reply, or its error typed: `Type` 1 (or HTTP 401/403) is about the key,
/// `Type` 99 (or HTTP 429) a rate limit, any other `Type` a provider error with its code; a
/// non-2xx reply without an error body is its status; a success without `Data` is malformed.
pub fn data(http: u16, body: &[u8]) -> Result<Value, UpstreamError> {
    let envelope: Envelope = match json::decode(PROVIDER, body) {
        Ok(e) => e,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if envelope.response.as_deref() == Some("Error") {
        let code = envelope.kind.unwrap_or(-1);
        let message = envelope.message.unwrap_or_default();
        let kind = match (http, code) {
            (_, 1) => UpstreamErrorKind::Auth,
            (http, _) if UpstreamError::is_auth_status(http) => UpstreamErrorKind::Auth,
            (429, _) | (_, 99) => UpstreamErrorKind::RateLimited { retry_after: None },
            _ => UpstreamErrorKind::Provider { code },
        };
        return Err(UpstreamError::new(
            PROVIDER,
            kind,
            format!("error type {code}: {message}"),
        ));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    envelope.data.ok_or_else(|| {
        UpstreamError::new(
            PROVIDER,
            UpstreamErrorKind::Malformed {
                path: "Data".into(),
            },
            "success body without Data",
        )
    })
}

/// The key as CryptoCompare takes it, a header (none without a key).
pub fn key_headers(api_key: Option<&str>) -> Vec<(HeaderName, String)> {
    api_key
        .iter()
        .map(|k| (AUTHORIZATION, format!("Apikey {k}")))
        .collect()
}

/// Counts one call spent and what the reply says is left of the allowance.
pub fn record_call(metrics: &UpstreamMetrics, body: &[u8]) {
    metrics.credits.with_label_values(&[PROVIDER]).inc();
    for (period, left) in calls_left(body) {
        metrics
            .calls_left
            .with_label_values(&[PROVIDER, &period])
            .set(left);
    }
}

/// Calls left per period, from a `RateLimit` block (`calls_left`, or `max_calls` minus
/// `calls_made`, as rate-limit errors give it) or from a `/stats/rate/limit` body's `Data`.
pub fn calls_left(body: &[u8]) -> Vec<(String, i64)> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for block in [&value["RateLimit"], &value["Data"]] {
        if let Some(left) = block["calls_left"].as_object() {
            out.extend(
                left.iter()
                    .filter_map(|(p, v)| Some((p.clone(), v.as_i64()?))),
            );
        } else if let (Some(max), Some(made)) = (
            block["max_calls"].as_object(),
            block["calls_made"].as_object(),
        ) {
            out.extend(
                max.iter()
                    .filter_map(|(p, m)| Some((p.clone(), m.as_i64()? - made.get(p)?.as_i64()?))),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_inside_http_200_are_typed() {
        let kind = |http, body: &[u8]| data(http, body).unwrap_err().kind;
        assert_eq!(
            kind(
                200,
                br#"{"Response":"Error","Message":"key","Type":1,"Data":{}}"#
            ),
            UpstreamErrorKind::Auth
        );
        assert!(matches!(
            kind(200, br#"{"Response":"Error","Message":"limit","Type":99}"#),
            UpstreamErrorKind::RateLimited { .. }
        ));
        assert_eq!(
            kind(200, br#"{"Response":"Error","Message":"x","Type":2}"#),
            UpstreamErrorKind::Provider { code: 2 }
        );
        assert_eq!(kind(502, b"<html>"), UpstreamErrorKind::Status(502));
        assert_eq!(
            kind(200, br#"{"Response":"Success"}"#),
            UpstreamErrorKind::Malformed {
                path: "Data".into()
            }
        );
        assert_eq!(
            data(200, br#"{"Response":"Success","Data":[1]}"#).unwrap(),
            serde_json::json!([1])
        );
    }

    #[test]
    fn the_key_is_a_header() {
        assert!(key_headers(None).is_empty());
        assert_eq!(
            key_headers(Some("k")),
            vec![(AUTHORIZATION, "Apikey k".to_owned())]
        );
    }
}
