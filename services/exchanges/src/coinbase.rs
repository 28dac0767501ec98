//! Coinbase Exchange `GET /products/{id}/ticker` and `GET /products/{id}/stats`: one product
//! a call, two calls per ticker.
//!
//! Documented behaviour we rely on: figures are strings; `ticker` has the last trade `price`
//! and the 24 h `volume` (base); `stats` has `open`, `high`, `low`, `last` and `volume` over
//! the rolling 24 h (`volume_30day` unused); errors are `{"message":"NotFound"}` with a 4xx
//! status. Combined: `price` from `ticker` (the fresher of the two), high, low, open and
//! volume from `stats`, the change `price − open`. Coinbase gives no quote volume, so
//! `volume_quote = volume × price`, an approximation (the 24 h VWAP is not published).

use serde::Deserialize;
use serde_json::Value;
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, json};

use crate::pair::from_coinbase;
use crate::ticker::{Parsed, Rejection, Ticker, Window, change, number, pair_fields};

pub const PROVIDER: &str = "coinbase";

#[derive(Deserialize)]
struct TickerFields {
    price: String,
}

#[derive(Deserialize)]
struct StatsFields {
    open: String,
    high: String,
    low: String,
    volume: String,
}

/// One reply, `(HTTP status, body)`.
pub type Reply<'a> = (u16, &'a [u8]);

/// Parses the `ticker` and `stats` replies of one product into one ticker (or its rejection).
pub fn parse(
    product_id: &str,
    ticker: Reply<'_>,
    stats: Reply<'_>,
) -> Result<Parsed, UpstreamError> {
    let t = body(ticker, "ticker")?;
    let s = body(stats, "stats")?;
    let mut parsed = Parsed::default();
    match combine(product_id, &t, &s) {
        Ok(x) => parsed.tickers.push(x),
        Err(r) => parsed.rejected.push(r),
    }
    Ok(parsed)
}

fn body((http, body): Reply<'_>, which: &str) -> Result<Value, UpstreamError> {
    let value: Value = match json::decode(PROVIDER, body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if let Some(message) = value.get("message").and_then(Value::as_str) {
        let kind = match http {
            429 => UpstreamErrorKind::RateLimited { retry_after: None },
            s if UpstreamError::is_auth_status(s) => UpstreamErrorKind::Auth,
            s => UpstreamErrorKind::Provider { code: s.into() },
        };
        return Err(UpstreamError::new(
            PROVIDER,
            kind,
            format!("{which}: {message}"),
        ));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    if !value.is_object() {
        return Err(UpstreamError::new(
            PROVIDER,
            UpstreamErrorKind::Malformed { path: ".".into() },
            format!("{which} body is not an object"),
        ));
    }
    Ok(value)
}

fn combine(key: &str, ticker: &Value, stats: &Value) -> Result<Ticker, Rejection> {
    let pair =
        from_coinbase(key).ok_or_else(|| Rejection::new(key, "unknown_pair", "not BASE-QUOTE"))?;
    let t: TickerFields = pair_fields(PROVIDER, "ticker", ticker).map_err(|r| Rejection {
        key: key.to_owned(),
        ..r
    })?;
    let s: StatsFields = pair_fields(PROVIDER, "stats", stats).map_err(|r| Rejection {
        key: key.to_owned(),
        ..r
    })?;
    let n = |field: &str, v: &str| number(key, field, v, false);
    let price = n("ticker.price", &t.price)?;
    let open = n("stats.open", &s.open)?;
    let volume = n("stats.volume", &s.volume)?;
    let (change_abs, change_pct) = change(key, open, price)?;
    Ok(Ticker {
        pair,
        price,
        high_24h: n("stats.high", &s.high)?,
        low_24h: n("stats.low", &s.low)?,
        open_24h: Some(open),
        change_abs,
        change_pct,
        volume,
        volume_quote: volume * price,
        window: Window::Rolling24h,
        change_window: Window::Rolling24h,
    })
}
