//! Binance `GET /api/v3/ticker/24hr`: one object for `?symbol=`, an array for `?symbols=` or
//! no parameter.
//!
//! Documented behaviour we rely on: figures are strings over the rolling 24 h
//! (`lastPrice`, `highPrice`, `lowPrice`, `openPrice`, `priceChange`, `priceChangePercent`,
//! `volume` in the base asset, `quoteVolume` in the quote asset); errors are
//! `{"code":-1121,"msg":"Invalid symbol."}` with a 4xx status (429 and 418 are rate limits —
//! the `Retry-After` header is the HTTP client's to read). The change is Binance's own.

use serde::Deserialize;
use serde_json::Value;
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, json};

use crate::pair::from_binance;
use crate::ticker::{Parsed, Rejection, Ticker, Window, number, pair_fields};

pub const PROVIDER: &str = "binance";

#[derive(Deserialize)]
struct ErrorBody {
    code: i64,
    msg: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    symbol: String,
    last_price: String,
    high_price: String,
    low_price: String,
    open_price: Option<String>,
    price_change: String,
    price_change_percent: String,
    volume: String,
    quote_volume: String,
}

/// Parses a 24hr ticker reply, one object or an array of them.
pub fn parse(http: u16, body: &[u8]) -> Result<Parsed, UpstreamError> {
    let value: Value = match json::decode(PROVIDER, body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if let Ok(e) = serde_json::from_value::<ErrorBody>(value.clone()) {
        let kind = match http {
            429 | 418 => UpstreamErrorKind::RateLimited { retry_after: None },
            s if UpstreamError::is_auth_status(s) => UpstreamErrorKind::Auth,
            _ => UpstreamErrorKind::Provider { code: e.code },
        };
        return Err(UpstreamError::new(
            PROVIDER,
            kind,
            format!("code {}: {}", e.code, e.msg),
        ));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    let items: Vec<(String, &Value)> = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("[{i}]"), v))
            .collect(),
        Value::Object(_) => vec![(String::new(), &value)],
        _ => {
            return Err(UpstreamError::new(
                PROVIDER,
                UpstreamErrorKind::Malformed { path: ".".into() },
                "body is neither an object nor an array",
            ));
        }
    };
    let mut parsed = Parsed::default();
    for (path, item) in items {
        if !item.is_object() {
            return Err(UpstreamError::new(
                PROVIDER,
                UpstreamErrorKind::Malformed { path: path.clone() },
                format!("body does not match the expected shape at {path}: not an object"),
            ));
        }
        match ticker(&path, item) {
            Ok(t) => parsed.tickers.push(t),
            Err(r) => parsed.rejected.push(r),
        }
    }
    Ok(parsed)
}

fn ticker(path: &str, value: &Value) -> Result<Ticker, Rejection> {
    let key = value
        .get("symbol")
        .and_then(Value::as_str)
        .map_or_else(|| path.to_owned(), str::to_owned);
    let f: Fields = pair_fields(PROVIDER, &key, value)?;
    let pair = from_binance(&f.symbol)
        .ok_or_else(|| Rejection::new(&key, "unknown_pair", "no known quote asset"))?;
    let n = |field: &str, s: &str| number(&key, field, s, false);
    let open_24h = f
        .open_price
        .as_deref()
        .map(|s| n("openPrice", s))
        .transpose()?;
    Ok(Ticker {
        pair,
        price: n("lastPrice", &f.last_price)?,
        high_24h: n("highPrice", &f.high_price)?,
        low_24h: n("lowPrice", &f.low_price)?,
        open_24h,
        change_abs: number(&key, "priceChange", &f.price_change, true)?,
        change_pct: number(&key, "priceChangePercent", &f.price_change_percent, true)?,
        volume: n("volume", &f.volume)?,
        volume_quote: n("quoteVolume", &f.quote_volume)?,
        window: Window::Rolling24h,
        change_window: Window::Rolling24h,
    })
}
