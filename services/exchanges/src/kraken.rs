//! Kraken `GET /0/public/Ticker?pair=XBTUSD,ETHUSD`: many pairs in one call.
//!
//! Documented behaviour we rely on: errors come with **HTTP 200** and a non-empty `error`
//! array (`EQuery:Unknown asset pair`, which fails the whole request, and no `result`); every
//! figure is a string; in `v`, `h`, `l`, `p` index 0 is today (since 00:00 UTC) and index 1
//! the rolling 24 h; `c[0]` is the last trade price and `o` today's opening price. Result keys
//! are Kraken's own names (`XXBTZUSD`), mapped by [`crate::pair::from_kraken`].
//!
//! Derived figures: the change is `c[0] − o`, so it covers [`Window::UtcDay`]; Kraken gives no
//! quote volume, so `volume_quote = v[1] × p[1]` (24 h base volume times 24 h volume-weighted
//! average price), which is the quote volume exactly by the definition of a VWAP.

use serde::Deserialize;
use serde_json::{Map, Value};
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, json};

use crate::pair::from_kraken;
use crate::ticker::{Parsed, Rejection, Ticker, Window, change, number, pair_fields};

pub const PROVIDER: &str = "kraken";

#[derive(Deserialize)]
struct Envelope {
    error: Vec<String>,
    result: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct Fields {
    c: Vec<String>,
    v: Vec<String>,
    p: Vec<String>,
    l: Vec<String>,
    h: Vec<String>,
    o: String,
}

/// The `result` object of any Kraken public reply (`Ticker`, `AssetPairs`). An `error` entry
/// is a provider error (`EAPI:Rate limit exceeded` a rate limit); a non-2xx reply without an
/// error body is its status.
pub(crate) fn result(http: u16, body: &[u8]) -> Result<Map<String, Value>, UpstreamError> {
    let envelope: Envelope = match json::decode(PROVIDER, body) {
        Ok(e) => e,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if !envelope.error.is_empty() {
        let message = envelope.error.join("; ");
        let kind = if message.contains("Rate limit") || http == 429 {
            UpstreamErrorKind::RateLimited { retry_after: None }
        } else {
            UpstreamErrorKind::Provider { code: http.into() }
        };
        return Err(UpstreamError::new(PROVIDER, kind, message));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    envelope.result.ok_or_else(|| {
        UpstreamError::new(
            PROVIDER,
            UpstreamErrorKind::Malformed {
                path: "result".into(),
            },
            "success body without result",
        )
    })
}

/// Parses a Ticker reply (see [`result`] for the errors).
pub fn parse(http: u16, body: &[u8]) -> Result<Parsed, UpstreamError> {
    let result = result(http, body)?;
    let mut parsed = Parsed::default();
    for (key, value) in &result {
        match ticker(key, value) {
            Ok(t) => parsed.tickers.push(t),
            Err(r) => parsed.rejected.push(r),
        }
    }
    Ok(parsed)
}

fn ticker(key: &str, value: &Value) -> Result<Ticker, Rejection> {
    let pair = from_kraken(key)
        .ok_or_else(|| Rejection::new(key, "unknown_pair", "no known quote suffix"))?;
    let f: Fields = pair_fields(PROVIDER, key, value)?;
    let at = |field: &'static str, v: &[String], i: usize| -> Result<f64, Rejection> {
        let s = v
            .get(i)
            .ok_or_else(|| Rejection::new(key, "missing_field", format!("{key}.{field}[{i}]")))?;
        number(key, &format!("{field}[{i}]"), s, false)
    };
    let price = at("c", &f.c, 0)?;
    let volume = at("v", &f.v, 1)?;
    let vwap = at("p", &f.p, 1)?;
    let open = number(key, "o", &f.o, false)?;
    let (change_abs, change_pct) = change(key, open, price)?;
    Ok(Ticker {
        pair,
        price,
        high_24h: at("h", &f.h, 1)?,
        low_24h: at("l", &f.l, 1)?,
        open_24h: Some(open),
        change_abs,
        change_pct,
        volume,
        volume_quote: volume * vwap,
        window: Window::Rolling24h,
        change_window: Window::UtcDay,
    })
}
