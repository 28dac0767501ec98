//! Each exchange's list of tradable pairs, read from its own pairs endpoint: what can be
//! tracked (`GET /v1/exchanges`), and the name to ask the ticker endpoint for each pair.
//!
//! - Kraken `GET /0/public/AssetPairs`: `{"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD",
//!   "base":"XXBT","quote":"ZUSD","status":"online",…}}}`; the pair comes from `base`/`quote`
//!   (Kraken's asset codes, [`crate::pair::kraken_asset`]), the query name is `altname`.
//!   Dark-pool entries (`….d`) and delisted pairs are left out; `cancel_only`, `post_only`,
//!   `limit_only`, `reduce_only` and `maintenance` pairs are kept (their tickers answer).
//! - Coinbase Exchange `GET /products`: an array of `{"id":"BTC-USD","base_currency":"BTC",
//!   "quote_currency":"USD","status":"online","trading_disabled":false,…}`; pairs whose status
//!   is not `online` or whose trading is disabled are left out.
//! - Binance `GET /api/v3/exchangeInfo`: `{"symbols":[{"symbol":"BTCUSDT","status":"TRADING",
//!   "baseAsset":"BTC","quoteAsset":"USDT",…}]}`; only `TRADING` symbols.
//!
//! An entry that does not make a pair is skipped (and counted by the caller as the
//! difference); a body that breaks the overall shape is an error, as for the tickers.

use serde::Deserialize;
use serde_json::Value;
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, json};

use crate::Pair;
use crate::pair::kraken_asset;

/// One tradable pair and the exchange's own name for it in ticker requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Market {
    pub pair: Pair,
    /// `XBTUSD` (Kraken), `BTC-USD` (Coinbase), `BTCUSDT` (Binance).
    pub name: String,
}

/// A list sorted by pair, one market per pair (the first listed wins).
fn sorted(mut markets: Vec<Market>) -> Vec<Market> {
    markets.sort();
    markets.dedup_by(|b, a| a.pair == b.pair);
    markets
}

fn shape(provider: &'static str, path: &str, what: &str) -> UpstreamError {
    UpstreamError::new(
        provider,
        UpstreamErrorKind::Malformed { path: path.into() },
        format!("body does not match the expected shape at {path}: {what}"),
    )
}

/// Kraken's `AssetPairs`.
pub fn kraken(http: u16, body: &[u8]) -> Result<Vec<Market>, UpstreamError> {
    const PROVIDER: &str = crate::kraken::PROVIDER;
    #[derive(Deserialize)]
    struct Entry {
        altname: String,
        base: String,
        quote: String,
        #[serde(default)]
        status: Option<String>,
    }
    let result = crate::kraken::result(http, body)?;
    let mut markets = Vec::with_capacity(result.len());
    for (key, value) in &result {
        if key.contains('.') {
            continue; // a dark-pool book
        }
        let Ok(e) = json::decode_value::<Entry>(PROVIDER, key, value) else {
            continue;
        };
        if e.status.as_deref() == Some("delisted") {
            continue;
        }
        if let Some(pair) = Pair::new(&kraken_asset(&e.base), &kraken_asset(&e.quote)) {
            markets.push(Market {
                pair,
                name: e.altname,
            });
        }
    }
    Ok(sorted(markets))
}

/// Coinbase Exchange's `/products`.
pub fn coinbase(http: u16, body: &[u8]) -> Result<Vec<Market>, UpstreamError> {
    const PROVIDER: &str = crate::coinbase::PROVIDER;
    #[derive(Deserialize)]
    struct Product {
        id: String,
        base_currency: String,
        quote_currency: String,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        trading_disabled: bool,
    }
    let value: Value = match json::decode(PROVIDER, body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if let Some(message) = value.get("message").and_then(Value::as_str) {
        return Err(UpstreamError::new(
            PROVIDER,
            UpstreamErrorKind::Provider { code: http.into() },
            message.to_owned(),
        ));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    let Value::Array(items) = &value else {
        return Err(shape(PROVIDER, ".", "not an array"));
    };
    let mut markets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Ok(p) = json::decode_value::<Product>(PROVIDER, &format!("[{i}]"), item) else {
            continue;
        };
        if p.trading_disabled || p.status.as_deref().is_some_and(|s| s != "online") {
            continue;
        }
        if let Some(pair) = Pair::new(&p.base_currency, &p.quote_currency) {
            markets.push(Market { pair, name: p.id });
        }
    }
    Ok(sorted(markets))
}

/// Binance's `exchangeInfo`.
pub fn binance(http: u16, body: &[u8]) -> Result<Vec<Market>, UpstreamError> {
    const PROVIDER: &str = crate::binance::PROVIDER;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Symbol {
        symbol: String,
        status: String,
        base_asset: String,
        quote_asset: String,
    }
    let value: Value = match json::decode(PROVIDER, body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    if let (Some(code), Some(msg)) = (
        value.get("code").and_then(Value::as_i64),
        value.get("msg").and_then(Value::as_str),
    ) {
        let kind = if matches!(http, 418 | 429) {
            UpstreamErrorKind::RateLimited { retry_after: None }
        } else {
            UpstreamErrorKind::Provider { code }
        };
        return Err(UpstreamError::new(PROVIDER, kind, msg.to_owned()));
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::from_status(PROVIDER, http));
    }
    let symbols = value
        .get("symbols")
        .and_then(Value::as_array)
        .ok_or_else(|| shape(PROVIDER, "symbols", "missing or not an array"))?;
    let mut markets = Vec::with_capacity(symbols.len());
    for (i, item) in symbols.iter().enumerate() {
        let Ok(s) = json::decode_value::<Symbol>(PROVIDER, &format!("symbols[{i}]"), item) else {
            continue;
        };
        if s.status != "TRADING" {
            continue;
        }
        if let Some(pair) = Pair::new(&s.base_asset, &s.quote_asset) {
            markets.push(Market {
                pair,
                name: s.symbol,
            });
        }
    }
    Ok(sorted(markets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(markets: &[Market]) -> Vec<(&str, &str)> {
        markets
            .iter()
            .map(|m| (m.pair.as_str(), m.name.as_str()))
            .collect()
    }

    #[test]
    fn kraken_asset_pairs() {
        let body = br#"{"error":[],"result":{
            "XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT","quote":"ZUSD","status":"online"},
            "XXBTZUSD.d":{"altname":"XBTUSD.d","base":"XXBT","quote":"ZUSD"},
            "SOLUSD":{"altname":"SOLUSD","base":"SOL","quote":"ZUSD","status":"online"},
            "XXDGZUSD":{"altname":"XDGUSD","base":"XXDG","quote":"ZUSD","status":"cancel_only"},
            "OLDUSD":{"altname":"OLDUSD","base":"OLD","quote":"ZUSD","status":"delisted"},
            "BROKEN":{"altname":1}
        }}"#;
        assert_eq!(
            pairs(&kraken(200, body).unwrap()),
            [
                ("btc-usd", "XBTUSD"),
                ("doge-usd", "XDGUSD"),
                ("sol-usd", "SOLUSD")
            ]
        );
        let err = kraken(200, br#"{"error":["EGeneral:Internal error"]}"#).unwrap_err();
        assert!(err.message.contains("Internal error"));
        assert!(kraken(200, br#"{"error":[]}"#).is_err());
        assert!(kraken(502, b"<html>").is_err());
    }

    #[test]
    fn coinbase_products() {
        let body = br#"[
            {"id":"BTC-USD","base_currency":"BTC","quote_currency":"USD","status":"online","trading_disabled":false},
            {"id":"ETH-USD","base_currency":"ETH","quote_currency":"USD","status":"delisted","trading_disabled":false},
            {"id":"SOL-USD","base_currency":"SOL","quote_currency":"USD","status":"online","trading_disabled":true},
            {"id":"ETH-BTC","base_currency":"ETH","quote_currency":"BTC","status":"online"},
            {"id":5}
        ]"#;
        assert_eq!(
            pairs(&coinbase(200, body).unwrap()),
            [("btc-usd", "BTC-USD"), ("eth-btc", "ETH-BTC")]
        );
        assert!(coinbase(200, br#"{"message":"Internal server error"}"#).is_err());
        assert!(coinbase(200, br#"{"products":[]}"#).is_err());
    }

    #[test]
    fn binance_exchange_info() {
        let body = br#"{"timezone":"UTC","symbols":[
            {"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT"},
            {"symbol":"ETHBTC","status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC"},
            {"symbol":"LUNAUSDT","status":"BREAK","baseAsset":"LUNA","quoteAsset":"USDT"}
        ]}"#;
        assert_eq!(
            pairs(&binance(200, body).unwrap()),
            [("btc-usdt", "BTCUSDT"), ("eth-btc", "ETHBTC")]
        );
        let banned = binance(418, br#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000000000."}"#)
            .unwrap_err();
        assert_eq!(banned.reason(), "rate_limited");
        assert!(binance(200, br#"{"timezone":"UTC"}"#).is_err());
    }
}
