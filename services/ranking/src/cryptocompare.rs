//! CryptoCompare `GET /data/top/totalvolfull`: the toplist by 24h total volume.
//!
//! Documented behaviour we rely on: `limit` 10–100 and `page` from 0; `tsym` required; the key
//! as `authorization: Apikey …` (a header, so it never sits in a URL that could be logged).
//! Errors come with **HTTP 200** and `"Response":"Error"` plus a `Type`: 0 no such path,
//! 1 key required, 2 bad parameter, 99 rate limit. Success bodies have no `Response` key.
//! The order of the list is the ranking: a coin's rank is its position in the pages read one
//! after another, never a sort by the `TOTALVOLUME24HTO` shown beside it (the provider sorts
//! before rendering, and on real bodies the two disagree now and then). Some toplist entries
//! have no `RAW` block (no USD market); they keep their place, without a volume. `RAW.USD.PRICE`
//! is already in USD whatever its `CONVERSIONTYPE` (direct, invert, multiply via USDT):
//! CryptoCompare does the conversion; `DISPLAY` strings are never read.

use std::collections::HashSet;

use serde::Deserialize;
use topcoins_schemas::{RankedCoin, RankingSnapshot};
use topcoins_upstream::cryptocompare as cc;
use topcoins_upstream::{Upstream, UpstreamError, UpstreamErrorKind, json};

pub use topcoins_upstream::cryptocompare::{DEFAULT_URL, PROVIDER, calls_left};

pub const TOPLIST_PATH: &str = "/data/top/totalvolfull";
/// Most entries one toplist page holds.
pub const PAGE_SIZE: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

#[derive(Debug, Deserialize)]
struct CoinInfo {
    #[serde(rename = "Id")]
    id: Id,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "FullName")]
    full_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawUsd {
    #[serde(rename = "PRICE")]
    price: Option<f64>,
    #[serde(rename = "TOTALVOLUME24HTO")]
    total_volume_24h_to: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "USD")]
    usd: Option<RawUsd>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "CoinInfo")]
    coin_info: CoinInfo,
    #[serde(rename = "RAW")]
    raw: Option<Raw>,
}

/// Turns one toplist reply into its coins, in the provider's order, or a typed error.
pub fn parse(http: u16, body: &[u8]) -> Result<Vec<RankedCoin>, UpstreamError> {
    // The envelope and its errors inside HTTP 200 are typed where every CryptoCompare
    // client shares them (`topcoins_upstream::cryptocompare`).
    let data = cc::data(http, body)?;
    let entries: Vec<Entry> = json::decode_value(PROVIDER, "Data", &data)?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let usd = e.raw.and_then(|r| r.usd);
            RankedCoin {
                id: match e.coin_info.id {
                    Id::Text(s) => s.into(),
                    Id::Number(n) => n.to_string().into(),
                },
                name: e
                    .coin_info
                    .full_name
                    .unwrap_or_else(|| e.coin_info.name.clone())
                    .into(),
                symbol: e.coin_info.name.into(),
                volume_24h_usd: usd.as_ref().and_then(|u| u.total_volume_24h_to),
                price_usd: usd.and_then(|u| u.price),
            }
        })
        .collect())
}

/// CryptoCompare toplist client.
#[derive(Clone)]
pub struct CryptoCompareClient {
    http: Upstream,
    base_url: String,
    api_key: Option<String>,
}

impl CryptoCompareClient {
    pub fn new(http: Upstream, base_url: &str, api_key: Option<String>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }

    /// One toplist page (`page` from 0). A coin listed twice within one page means the body
    /// is broken, and the page is refused (across pages it is normal: see [`Self::snapshot`]).
    pub async fn page(&self, page: usize, limit: usize) -> Result<Vec<RankedCoin>, UpstreamError> {
        let url = format!("{}{TOPLIST_PATH}", self.base_url);
        let query = [
            ("limit", limit.to_string()),
            ("page", page.to_string()),
            ("tsym", "USD".to_owned()),
        ];
        let headers = cc::key_headers(self.api_key.as_deref());
        let reply = self.http.get(&url, &query, &headers).await?;
        cc::record_call(self.http.metrics(), &reply.body);
        let coins = parse(reply.status, &reply.body)?;
        let mut ids = HashSet::with_capacity(coins.len());
        if let Some(dup) = coins.iter().find(|c| !ids.insert(c.id.as_str())) {
            return Err(UpstreamError::new(
                PROVIDER,
                UpstreamErrorKind::Rejected {
                    reason: "duplicate",
                },
                format!("coin {} listed twice in page {page}", dup.symbol),
            ));
        }
        Ok(coins)
    }

    /// The top `universe` coins, ranked in the order the pages list them (page × page size +
    /// index). Pages are read one after another, and the list can shift between two reads: a
    /// coin seen again on a later page keeps its first place, and the repeat is dropped,
    /// counted and logged — it never costs the snapshot.
    pub async fn snapshot(&self, universe: usize) -> Result<RankingSnapshot, UpstreamError> {
        let mut coins = Vec::with_capacity(universe);
        let mut seen = HashSet::new();
        let mut duplicates = 0u64;
        for page in 0..universe.div_ceil(PAGE_SIZE) {
            let batch = self.page(page, PAGE_SIZE).await?;
            let full = batch.len() >= PAGE_SIZE;
            for coin in batch {
                if seen.insert(coin.id.clone()) {
                    coins.push(coin);
                } else {
                    duplicates += 1;
                }
            }
            if !full {
                break;
            }
        }
        if duplicates > 0 {
            tracing::info!(
                provider = PROVIDER,
                duplicates,
                "coins repeated on a later toplist page dropped"
            );
            self.http
                .metrics()
                .rejected
                .with_label_values(&[PROVIDER, "duplicate_entry"])
                .inc_by(duplicates);
        }
        coins.truncate(universe);
        RankingSnapshot::new(PROVIDER, coins).map_err(|e| UpstreamError::rejected(PROVIDER, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_inside_http_200_are_typed() {
        let auth = parse(
            200,
            br#"{"Response":"Error","Message":"You need a valid auth key","Type":1,"Data":{}}"#,
        )
        .unwrap_err();
        assert_eq!(auth.kind, UpstreamErrorKind::Auth);
        let limit = parse(200, br#"{"Response":"Error","Message":"Rate limit excedeed!","Type":99,"RateLimit":{"calls_made":{}}}"#).unwrap_err();
        assert!(matches!(limit.kind, UpstreamErrorKind::RateLimited { .. }));
        let param = parse(
            200,
            br#"{"Response":"Error","Message":"tsym is a required param.","Type":2,"Data":{}}"#,
        )
        .unwrap_err();
        assert_eq!(param.kind, UpstreamErrorKind::Provider { code: 2 });
        let html = parse(502, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(html.kind, UpstreamErrorKind::Status(502));
    }

    #[test]
    fn wrong_shapes_name_the_path() {
        let e = parse(
            200,
            br#"{"Message":"Success","Type":100,"Data":[{"CoinInfo":{"Name":"BTC"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.kind,
            UpstreamErrorKind::Malformed {
                path: "Data[0].CoinInfo.Id".into()
            }
        );
        let e = parse(200, br#"{"Message":"Success","Type":100,"Data":[{"CoinInfo":{"Id":"1","Name":"BTC"},"RAW":{"USD":{"PRICE":"1"}}}]}"#).unwrap_err();
        assert_eq!(
            e.kind,
            UpstreamErrorKind::Malformed {
                path: "Data[0].RAW.USD.PRICE".into()
            }
        );
        let e = parse(200, br#"{"status":{"error_code":0},"data":[]}"#).unwrap_err();
        assert_eq!(
            e.kind,
            UpstreamErrorKind::Malformed {
                path: "Data".into()
            }
        );
    }

    #[test]
    fn entries_without_raw_keep_no_volume() {
        let coins = parse(200, br#"{"Message":"Success","Type":100,"Data":[{"CoinInfo":{"Id":7,"Name":"X","FullName":"Ex"}}]}"#).unwrap();
        assert_eq!(coins[0].id, "7");
        assert_eq!(coins[0].name, "Ex");
        assert_eq!(coins[0].volume_24h_usd, None);
    }
}
