//! What every exchange parser returns: the pairs that parsed, and the pairs that did not with
//! why, so the caller can count rejections per reason and still publish the others.

use serde_json::Value;
use topcoins_upstream::{UpstreamError, json};

use crate::Pair;

/// The time a ticker's figures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last 24 hours up to the reply (Kraken index 1, Binance, Coinbase `stats`).
    Rolling24h,
    /// Since 00:00 UTC today (Kraken's `o`, its "today's opening price").
    UtcDay,
}

/// One pair's 24 h ticker. Prices are in the quote asset, `volume` in the base asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticker {
    pub pair: Pair,
    /// The last trade price.
    pub price: f64,
    pub high_24h: f64,
    pub low_24h: f64,
    /// The price the change is measured from, where the exchange gives one.
    pub open_24h: Option<f64>,
    /// `price − open`; may be negative.
    pub change_abs: f64,
    /// `change_abs / open × 100`; may be negative.
    pub change_pct: f64,
    /// Traded volume in the base asset over [`Ticker::window`].
    pub volume: f64,
    /// Traded volume in the quote asset over [`Ticker::window`] (how each exchange's figure is
    /// obtained is written on its parser).
    pub volume_quote: f64,
    /// What `high_24h`, `low_24h` and the volumes cover.
    pub window: Window,
    /// What `open_24h` and the changes cover.
    pub change_window: Window,
}

/// A pair that could not become a [`Ticker`]; the rest of the body is unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The exchange's own name for the pair (`XXBTZUSD`, `BTCUSDT`, `BTC-USD`).
    pub key: String,
    /// A short label for metrics: `unknown_pair`, `missing_field`, `not_a_number`,
    /// `non_finite`, `negative`, `zero_open`.
    pub reason: &'static str,
    /// For the log: which field and what it held.
    pub detail: String,
}

/// A parsed body: tickers in the exchange's order, and rejected pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub tickers: Vec<Ticker>,
    pub rejected: Vec<Rejection>,
}

impl Rejection {
    pub(crate) fn new(key: &str, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            reason,
            detail: detail.into(),
        }
    }
}

/// A number as exchanges send it, a decimal string; `field` names it in the rejection.
/// Rejects what is not a number, not finite (`"inf"`, `"NaN"` parse in Rust), or negative
/// unless `signed`.
pub(crate) fn number(key: &str, field: &str, s: &str, signed: bool) -> Result<f64, Rejection> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| Rejection::new(key, "not_a_number", format!("{field}: {s:?}")))?;
    if !v.is_finite() {
        return Err(Rejection::new(key, "non_finite", format!("{field}: {s:?}")));
    }
    if !signed && v < 0.0 {
        return Err(Rejection::new(key, "negative", format!("{field}: {s:?}")));
    }
    Ok(v)
}

/// Decodes one pair's object; a field missing or of the wrong type rejects that pair only.
pub(crate) fn pair_fields<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    key: &str,
    value: &Value,
) -> Result<T, Rejection> {
    json::decode_value(provider, key, value).map_err(|e: UpstreamError| {
        let path = match &e.kind {
            topcoins_upstream::UpstreamErrorKind::Malformed { path } => path.clone(),
            _ => key.to_owned(),
        };
        Rejection::new(key, "missing_field", format!("{path}: {}", e.message))
    })
}

/// `change_abs` and `change_pct` from an open and a last price.
pub(crate) fn change(key: &str, open: f64, last: f64) -> Result<(f64, f64), Rejection> {
    if open <= 0.0 {
        return Err(Rejection::new(key, "zero_open", format!("open: {open}")));
    }
    let abs = last - open;
    Ok((abs, abs / open * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked() {
        assert_eq!(number("k", "f", "1.50", false), Ok(1.5));
        assert_eq!(number("k", "f", "-2", true), Ok(-2.0));
        for (s, reason) in [
            ("-2", "negative"),
            ("inf", "non_finite"),
            ("NaN", "non_finite"),
            ("1e999", "non_finite"),
            ("", "not_a_number"),
            ("1,5", "not_a_number"),
        ] {
            assert_eq!(
                number("k", "f", s, false).unwrap_err().reason,
                reason,
                "{s}"
            );
        }
        assert_eq!(
            number("k", "f", "NaN", true).unwrap_err().reason,
            "non_finite"
        );
    }

    #[test]
    fn change_from_open() {
        assert_eq!(change("k", 100.0, 110.0), Ok((10.0, 10.0)));
        assert_eq!(change("k", 0.0, 1.0).unwrap_err().reason, "zero_open");
    }
}
