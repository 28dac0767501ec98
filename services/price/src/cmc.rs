//! CoinMarketCap `GET /v1/cryptocurrency/listings/latest`: request, paging, parsing.
//!
//! Documented behaviour we rely on: `start` ≥ 1 and `limit` 1–5000 per call; the key goes in
//! the `X-CMC_PRO_API_KEY` header; every body has a `status` object whose `error_code` is 0 on
//! success and whose `credit_count` says what the call cost; error bodies have a `status` and
//! no `data` (1001/1002 bad or missing key, 1008–1011 rate limits), with HTTP 4xx.

use reqwest::header::HeaderName;
use serde::Deserialize;
use topcoins_schemas::{PriceSnapshot, PricedCoin};
use topcoins_upstream::http::Reply;
use topcoins_upstream::{Upstream, UpstreamError, UpstreamErrorKind, json};

pub const PROVIDER: &str = "coinmarketcap";
pub const DEFAULT_URL: &str = "https://pro-api.coinmarketcap.com";
pub const LISTINGS_PATH: &str = "/v1/cryptocurrency/listings/latest";
/// Most coins one listings call returns.
pub const MAX_PAGE: usize = 5000;
const KEY_HEADER: HeaderName = HeaderName::from_static("x-cmc_pro_api_key");

#[derive(Debug, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub credit_count: Option<u64>,
    #[serde(default)]
    pub total_count: Option<u64>,
}

/// Ids are numbers in every recorded body; a string is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(s) => s,
        }
    }
}

/// One currency's quote of a listing.
#[derive(Debug, Clone, Deserialize)]
pub struct QuoteValue {
    pub price: Option<f64>,
    #[serde(default)]
    pub market_cap: Option<f64>,
    #[serde(default)]
    pub percent_change_24h: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct Listing {
    pub id: Id,
    pub name: String,
    pub symbol: String,
    #[serde(default)]
    pub cmc_rank: Option<u64>,
    /// Quotes by currency code (`USD`, or whatever `convert` asked for).
    pub quote: std::collections::HashMap<String, QuoteValue>,
}

#[derive(Debug, Deserialize)]
pub struct Body {
    pub status: Status,
    pub data: Option<Vec<Listing>>,
}

/// One page of listings, parsed.
#[derive(Debug)]
pub struct Page {
    pub coins: Vec<PricedCoin>,
    /// Listings in the body, priced or not (paging goes by this).
    pub listed: usize,
    /// Listings without a USD price, left out.
    pub unpriced: usize,
    pub credits: u64,
    pub total_count: Option<u64>,
}

fn error_from_status(http: u16, status: &Status) -> UpstreamError {
    let code = status.error_code.unwrap_or(i64::from(http));
    let message = status
        .error_message
        .clone()
        .unwrap_or_else(|| format!("HTTP {http}"));
    let kind = match code {
        1001 | 1002 => UpstreamErrorKind::Auth,
        1008..=1011 => UpstreamErrorKind::RateLimited { retry_after: None },
        _ if UpstreamError::is_auth_status(http) => UpstreamErrorKind::Auth,
        _ => UpstreamErrorKind::Provider { code },
    };
    UpstreamError::new(PROVIDER, kind, format!("error {code}: {message}"))
}

/// The listings of a reply, or the typed error it stands for. Error bodies carry `status`
/// (with HTTP 4xx, or now and then 200); anything else, such as an HTML page, says only its
/// HTTP status.
fn listings(http: u16, body: &[u8]) -> Result<(Status, Vec<Listing>), UpstreamError> {
    if !(200..300).contains(&http) {
        return Err(match json::decode::<Body>(PROVIDER, body) {
            Ok(b) => error_from_status(http, &b.status),
            Err(_) => UpstreamError::from_status(PROVIDER, http),
        });
    }
    let parsed: Body = json::decode(PROVIDER, body)?;
    if parsed.status.error_code.is_some_and(|c| c != 0) {
        return Err(error_from_status(http, &parsed.status));
    }
    let Some(data) = parsed.data else {
        return Err(UpstreamError::new(
            PROVIDER,
            UpstreamErrorKind::Malformed {
                path: "data".into(),
            },
            "success body without data",
        ));
    };
    Ok((parsed.status, data))
}

/// Turns one listings reply into a page of USD prices or a typed error.
pub fn parse(http: u16, body: &[u8]) -> Result<Page, UpstreamError> {
    let (status, data) = listings(http, body)?;
    let listed = data.len();
    let mut unpriced = 0;
    let coins = data
        .into_iter()
        .filter_map(|l| {
            let Some(QuoteValue {
                price: Some(price),
                market_cap,
                ..
            }) = l.quote.get("USD").cloned()
            else {
                unpriced += 1;
                return None;
            };
            Some(PricedCoin {
                id: l.id.into_string().into(),
                symbol: l.symbol.into(),
                name: l.name.into(),
                price_usd: price,
                market_cap_usd: market_cap,
            })
        })
        .collect();
    Ok(Page {
        coins,
        listed,
        unpriced,
        credits: status.credit_count.unwrap_or(0),
        total_count: status.total_count,
    })
}

/// One listing as the `topcoins cmc` command shows it, in the requested currency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub rank: Option<u64>,
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub currency: String,
    pub price: Option<f64>,
    pub market_cap: Option<f64>,
    pub percent_change_24h: Option<f64>,
}

/// Turns one listings reply into rows quoted in `convert`.
pub fn rows(http: u16, body: &[u8], convert: &str) -> Result<Vec<Row>, UpstreamError> {
    let (_, data) = listings(http, body)?;
    Ok(data
        .into_iter()
        .map(|l| {
            let quote = l.quote.get(convert).cloned();
            Row {
                rank: l.cmc_rank,
                id: l.id.into_string(),
                symbol: l.symbol,
                name: l.name,
                currency: convert.to_owned(),
                price: quote.as_ref().and_then(|q| q.price),
                market_cap: quote.as_ref().and_then(|q| q.market_cap),
                percent_change_24h: quote.and_then(|q| q.percent_change_24h),
            }
        })
        .collect())
}

/// CoinMarketCap listings client.
#[derive(Clone)]
pub struct CmcClient {
    http: Upstream,
    base_url: String,
    api_key: Option<String>,
}

impl CmcClient {
    pub fn new(http: Upstream, base_url: &str, api_key: Option<String>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    async fn call(
        &self,
        start: usize,
        limit: usize,
        convert: &str,
    ) -> Result<Reply, UpstreamError> {
        let url = format!("{}{LISTINGS_PATH}", self.base_url);
        let query = [
            ("start", start.to_string()),
            ("limit", limit.to_string()),
            ("convert", convert.to_owned()),
        ];
        let headers: Vec<(HeaderName, String)> = self
            .api_key
            .iter()
            .map(|k| (KEY_HEADER, k.clone()))
            .collect();
        self.http.get(&url, &query, &headers).await
    }

    /// One listings call in USD: `limit` coins from rank `start` (1-based).
    pub async fn listings(&self, start: usize, limit: usize) -> Result<Page, UpstreamError> {
        let Reply { status, body, .. } = self.call(start, limit, "USD").await?;
        let page = parse(status, &body)?;
        self.http
            .metrics()
            .credits
            .with_label_values(&[PROVIDER])
            .inc_by(page.credits);
        Ok(page)
    }

    /// One listings call quoted in `convert`, as rows for display.
    pub async fn rows(
        &self,
        start: usize,
        limit: usize,
        convert: &str,
    ) -> Result<Vec<Row>, UpstreamError> {
        let Reply { status, body, .. } = self.call(start, limit, convert).await?;
        rows(status, &body, convert)
    }

    /// The top `universe` coins by market cap, in as few calls as the provider allows.
    pub async fn snapshot(&self, universe: usize) -> Result<PriceSnapshot, UpstreamError> {
        let mut coins = Vec::with_capacity(universe);
        let mut start = 1;
        while start <= universe {
            let limit = (universe + 1 - start).min(MAX_PAGE);
            let page = self.listings(start, limit).await?;
            if page.unpriced > 0 {
                self.http
                    .metrics()
                    .rejected
                    .with_label_values(&[PROVIDER, "coin_without_price"])
                    .inc_by(page.unpriced as u64);
            }
            coins.extend(page.coins);
            if page.listed < limit {
                break; // the provider has no more
            }
            start += limit;
        }
        PriceSnapshot::new(PROVIDER, coins).map_err(|e| UpstreamError::rejected(PROVIDER, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_become_kinds() {
        let auth = parse(401, br#"{"status":{"error_code":1001,"error_message":"This API Key is invalid.","credit_count":0}}"#).unwrap_err();
        assert_eq!(auth.kind, UpstreamErrorKind::Auth);
        assert!(auth.to_string().contains("This API Key is invalid."));
        let limited = parse(
            429,
            br#"{"status":{"error_code":1008,"error_message":"minute"}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            limited.kind,
            UpstreamErrorKind::RateLimited { .. }
        ));
        let html = parse(403, b"<html>forbidden</html>").unwrap_err();
        assert_eq!(html.kind, UpstreamErrorKind::Auth);
        let other = parse(
            400,
            br#"{"status":{"error_code":400,"error_message":"bad limit"}}"#,
        )
        .unwrap_err();
        assert_eq!(other.kind, UpstreamErrorKind::Provider { code: 400 });
        let no_data = parse(200, br#"{"status":{"error_code":0}}"#).unwrap_err();
        assert!(matches!(no_data.kind, UpstreamErrorKind::Malformed { .. }));
        let wrong_shape =
            parse(200, br#"{"Response":"Error","Message":"x","Type":1}"#).unwrap_err();
        assert_eq!(
            wrong_shape.kind,
            UpstreamErrorKind::Malformed {
                path: "status".into()
            }
        );
    }

    #[test]
    fn coins_without_usd_price_are_left_out() {
        let body = br#"{"status":{"error_code":0,"credit_count":1},"data":[
            {"id":1,"name":"A","symbol":"A","quote":{"USD":{"price":2.5,"market_cap":null}}},
            {"id":2,"name":"B","symbol":"B","quote":{"USD":{"price":null}}},
            {"id":"3","name":"C","symbol":"C","quote":{}}]}"#;
        let page = parse(200, body).unwrap();
        assert_eq!(page.listed, 3);
        assert_eq!(page.unpriced, 2);
        assert_eq!(page.coins.len(), 1);
        assert_eq!(page.coins[0].price_usd, 2.5);
    }
}
