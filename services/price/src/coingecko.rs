//! CoinGecko `GET /api/v3/coins/markets`: the keyless price source.
//!
//! Documented behaviour we rely on: `vs_currency` required; `per_page` 1–250 and `page` from 1;
//! `order=market_cap_desc`; the answer is a bare JSON array keyed by CoinGecko's string ids,
//! symbols in lower case, numbers sometimes in scientific notation (`1.149e-05`), and many
//! fields null (`current_price` included, for dead coins). An optional key goes in
//! `x-cg-demo-api-key` (or `x-cg-pro-api-key` for the pro host). Keyless access is throttled
//! hard: HTTP 429 with `{"status":{"error_code":429,"error_message":…}}`.

use reqwest::header::HeaderName;
use serde::Deserialize;
use serde_json::Value;
use topcoins_schemas::{PriceSnapshot, PricedCoin};
use topcoins_upstream::{Upstream, UpstreamError, UpstreamErrorKind, json};

pub const PROVIDER: &str = "coingecko";
pub const DEFAULT_URL: &str = "https://api.coingecko.com";
pub const MARKETS_PATH: &str = "/api/v3/coins/markets";
/// Most coins one call returns.
pub const MAX_PAGE: usize = 250;

#[derive(Debug, Deserialize)]
struct Market {
    id: String,
    symbol: String,
    name: String,
    current_price: Option<f64>,
    #[serde(default)]
    market_cap: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ErrorStatus {
    error_code: Option<i64>,
    error_message: Option<String>,
}

/// One page, parsed: coins with a price, and how many were listed.
#[derive(Debug)]
pub struct Page {
    pub coins: Vec<PricedCoin>,
    pub listed: usize,
    pub unpriced: usize,
}

fn error_kind(code: i64) -> UpstreamErrorKind {
    match code {
        429 => UpstreamErrorKind::RateLimited { retry_after: None },
        10002 | 10010 | 10011 => UpstreamErrorKind::Auth,
        c if UpstreamError::is_auth_status(c.try_into().unwrap_or(0)) => UpstreamErrorKind::Auth,
        c => UpstreamErrorKind::Provider { code: c },
    }
}

/// Turns one markets reply into a page or a typed error.
pub fn parse(http: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let value: Value = match json::decode(PROVIDER, body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&http) => {
            return Err(UpstreamError::from_status(PROVIDER, http));
        }
        Err(e) => return Err(e),
    };
    // Errors are objects: `{"status":{…}}` or `{"error":"…"}`, with or without an error status.
    if let Some(object) = value.as_object() {
        if let Some(status) = object.get("status") {
            let status: ErrorStatus = json::decode_value(PROVIDER, "status", status)?;
            let code = status.error_code.unwrap_or(i64::from(http));
            let message = status.error_message.unwrap_or_default();
            return Err(UpstreamError::new(
                PROVIDER,
                error_kind(code),
                format!("error {code}: {message}"),
            ));
        }
        if let Some(message) = object.get("error") {
            let kind = if (200..300).contains(&http) {
                UpstreamErrorKind::Provider { code: 0 }
            } else {
                error_kind(i64::from(http))
            };
            return Err(UpstreamError::new(
                PROVIDER,
                kind,
                format!("error: {message}"),
            ));
        }
    }
    if !(200..300).contains(&http) {
        return Err(UpstreamError::new(
            PROVIDER,
            error_kind(i64::from(http)),
            format!("HTTP {http}"),
        ));
    }
    let markets: Vec<Market> = json::decode_value(PROVIDER, "", &value)?;
    let listed = markets.len();
    let mut unpriced = 0;
    let coins = markets
        .into_iter()
        .filter_map(|m| {
            let Some(price) = m.current_price else {
                unpriced += 1;
                return None;
            };
            Some(PricedCoin {
                id: m.id.into(),
                symbol: m.symbol.to_uppercase().into(),
                name: m.name.into(),
                price_usd: price,
                market_cap_usd: m.market_cap,
            })
        })
        .collect();
    Ok(Page {
        coins,
        listed,
        unpriced,
    })
}

#[derive(Clone)]
pub struct CoinGeckoClient {
    http: Upstream,
    base_url: String,
    api_key: Option<String>,
}

impl CoinGeckoClient {
    pub fn new(http: Upstream, base_url: &str, api_key: Option<String>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    pub async fn page(&self, page: usize, per_page: usize) -> Result<Page, UpstreamError> {
        let url = format!("{}{MARKETS_PATH}", self.base_url);
        let query = [
            ("vs_currency", "usd".to_owned()),
            ("order", "market_cap_desc".to_owned()),
            ("per_page", per_page.to_string()),
            ("page", page.to_string()),
        ];
        let header = if self.base_url.contains("pro-api") {
            "x-cg-pro-api-key"
        } else {
            "x-cg-demo-api-key"
        };
        let headers: Vec<(HeaderName, String)> = self
            .api_key
            .iter()
            .map(|k| (HeaderName::from_static(header), k.clone()))
            .collect();
        let reply = self.http.get(&url, &query, &headers).await?;
        self.http
            .metrics()
            .credits
            .with_label_values(&[PROVIDER])
            .inc();
        parse(reply.status, &reply.body)
    }

    /// The top `universe` coins by market cap. `per_page` stays the same on every page: page
    /// N starts at (N-1)·per_page, so varying it would read coins twice.
    pub async fn snapshot(&self, universe: usize) -> Result<PriceSnapshot, UpstreamError> {
        let mut coins = Vec::with_capacity(universe);
        let per_page = universe.clamp(1, MAX_PAGE);
        let mut page = 1;
        let mut read = 0;
        while read < universe {
            let batch = self.page(page, per_page).await?;
            if batch.unpriced > 0 {
                self.http
                    .metrics()
                    .rejected
                    .with_label_values(&[PROVIDER, "coin_without_price"])
                    .inc_by(batch.unpriced as u64);
            }
            read += batch.listed;
            coins.extend(batch.coins);
            if batch.listed < per_page {
                break;
            }
            page += 1;
        }
        coins.truncate(universe);
        PriceSnapshot::new(PROVIDER, coins).map_err(|e| UpstreamError::rejected(PROVIDER, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        let limited = parse(
            429,
            br#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            limited.kind,
            UpstreamErrorKind::RateLimited { .. }
        ));
        let in_200 = parse(
            200,
            br#"{"status":{"error_code":429,"error_message":"limit"}}"#,
        )
        .unwrap_err();
        assert!(matches!(in_200.kind, UpstreamErrorKind::RateLimited { .. }));
        let bad = parse(400, br#"{"error":"invalid vs_currency"}"#).unwrap_err();
        assert_eq!(bad.kind, UpstreamErrorKind::Provider { code: 400 });
        let html = parse(502, b"<html>").unwrap_err();
        assert_eq!(html.kind, UpstreamErrorKind::Status(502));
    }

    #[test]
    fn symbols_upper_case_and_scientific_numbers() {
        let page = parse(200, br#"[{"id":"shiba-inu","symbol":"shib","name":"Shiba Inu","current_price":1.149e-05,"market_cap":6.3e9,"roi":null},
                                  {"id":"dead","symbol":"dd","name":"Dead","current_price":null}]"#).unwrap();
        assert_eq!(page.listed, 2);
        assert_eq!(page.unpriced, 1);
        assert_eq!(page.coins[0].symbol, "SHIB");
        assert_eq!(page.coins[0].price_usd, 1.149e-05);
    }
}
