//! The simulated market rendered in each provider's own response format, with each provider's
//! parameter rules and error bodies (see `testdata/upstream/` for the real ones).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::market::{Coin, Market};

/// A number as the providers write it: whole values as integers, others as floats.
pub(crate) fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn rfc3339_millis(t: OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// A failure in the provider's own shape: the HTTP status and the body to send.
#[derive(Debug)]
pub struct ProviderError {
    pub status: u16,
    pub body: Value,
}

// ---------------------------------------------------------------------------------------------
// CoinMarketCap: GET /v1/cryptocurrency/listings/latest?start=1&limit=100&convert=USD

pub struct CmcQuery {
    pub start: Option<String>,
    pub limit: Option<String>,
    pub convert: Option<String>,
}

fn cmc_status(now: OffsetDateTime, code: u32, message: Option<&str>, credits: u64) -> Value {
    json!({
        "timestamp": rfc3339_millis(now),
        "error_code": code,
        "error_message": message,
        "elapsed": 10,
        "credit_count": credits,
        "notice": null,
    })
}

pub fn cmc_error(status: u16, code: u32, message: &str) -> ProviderError {
    ProviderError {
        status,
        body: json!({ "status": cmc_status(OffsetDateTime::now_utc(), code, Some(message), 0) }),
    }
}

fn parse_bounded(
    raw: Option<&str>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ProviderError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u64>() {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err(cmc_error(
            400,
            400,
            &format!("\"{name}\" must be an integer from 1 to {max}"),
        )),
    }
}

pub fn cmc_listings(market: &Market, q: &CmcQuery) -> Result<Value, ProviderError> {
    let start = parse_bounded(q.start.as_deref(), "start", 1, u64::MAX)? as usize;
    let limit = parse_bounded(q.limit.as_deref(), "limit", 100, 5000)? as usize;
    if let Some(convert) = &q.convert
        && !convert.eq_ignore_ascii_case("USD")
    {
        return Err(cmc_error(
            400,
            400,
            &format!("Invalid value for \"convert\": \"{convert}\""),
        ));
    }
    let ranked = market.by_market_cap();
    let updated = rfc3339_millis(market.updated);
    let data: Vec<Value> = ranked
        .iter()
        .enumerate()
        .skip(start - 1)
        .take(limit)
        .map(|(i, c)| cmc_coin(c, i + 1, &updated))
        .collect();
    let credits = data.len().div_ceil(200).max(1) as u64;
    let mut status = cmc_status(OffsetDateTime::now_utc(), 0, None, credits);
    status["total_count"] = json!(ranked.len());
    Ok(json!({ "status": status, "data": data }))
}

fn cmc_coin(c: &Coin, rank: usize, updated: &str) -> Value {
    json!({
        "id": c.cmc_id,
        "name": c.name,
        "symbol": c.symbol,
        "slug": c.gecko_id,
        "num_market_pairs": 10 + (c.cmc_id % 500),
        "date_added": "2020-01-01T00:00:00.000Z",
        "tags": ["simulated"],
        "max_supply": c.max_supply.map(num),
        "circulating_supply": num(c.circulating_supply),
        "total_supply": num(c.max_supply.unwrap_or(c.circulating_supply).max(c.circulating_supply)),
        "platform": if c.has_platform {
            json!({"id": 1027, "name": "Ethereum", "symbol": "ETH", "slug": "ethereum",
                   "token_address": format!("0x{:040x}", c.cmc_id)})
        } else {
            Value::Null
        },
        "cmc_rank": rank,
        "last_updated": updated,
        "quote": { "USD": {
            "price": c.price,
            "volume_24h": c.volume_24h,
            "percent_change_1h": c.change_24h_pct / 24.0,
            "percent_change_24h": c.change_24h_pct,
            "percent_change_7d": c.change_24h_pct * 2.0,
            "market_cap": c.market_cap(),
            "last_updated": updated,
        }},
    })
}

// ---------------------------------------------------------------------------------------------
// CryptoCompare: GET /data/top/totalvolfull?limit=10&page=0&tsym=USD
// Errors come with HTTP 200 and "Response":"Error".

pub struct CcQuery {
    pub limit: Option<String>,
    pub page: Option<String>,
    pub tsym: Option<String>,
}

pub fn cc_error(kind: u32, message: &str, param: Option<&str>) -> Value {
    let mut body = json!({
        "Response": "Error",
        "Message": message,
        "HasWarning": false,
        "Type": kind,
        "RateLimit": {},
        "Data": {},
    });
    if let Some(p) = param {
        body["ParamWithError"] = json!(p);
    }
    body
}

/// CryptoCompare's `tsym`, which the simulator prices in USD only: the error body otherwise.
pub(crate) fn cc_usd_only(tsym: Option<&str>) -> Result<(), Value> {
    let Some(tsym) = tsym.filter(|t| !t.is_empty()) else {
        return Err(cc_error(2, "tsym is a required param.", Some("tsym")));
    };
    if !tsym.eq_ignore_ascii_case("USD") {
        return Err(cc_error(
            2,
            &format!("tsym {tsym} is not supported by the simulator."),
            Some("tsym"),
        ));
    }
    Ok(())
}

pub fn cc_toplist(market: &Market, q: &CcQuery) -> Value {
    if let Err(body) = cc_usd_only(q.tsym.as_deref()) {
        return body;
    }
    let limit = match q.limit.as_deref().map(str::parse::<u64>) {
        None => 10,
        Some(Ok(v)) => v.clamp(10, 100) as usize,
        Some(Err(_)) => return cc_error(2, "limit param is not an integer.", Some("limit")),
    };
    let page = match q.page.as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(v)) => v as usize,
        Some(Err(_)) => return cc_error(2, "page param is not an integer.", Some("page")),
    };
    let ranked = market.by_cc_volume();
    let data: Vec<Value> = ranked
        .iter()
        .skip(page.saturating_mul(limit))
        .take(limit)
        .map(|c| cc_coin(c, market.updated.unix_timestamp()))
        .collect();
    json!({
        "Message": "Success",
        "Type": 100,
        "MetaData": { "Count": ranked.len() },
        "SponsoredData": [],
        "Data": data,
        "RateLimit": {},
        "HasWarning": false,
    })
}

fn cc_coin(c: &Coin, updated: i64) -> Value {
    let info = json!({
        "Id": c.cc_id.to_string(),
        "Name": c.cc_symbol,
        "FullName": c.name,
        "Internal": c.cc_symbol,
        "ImageUrl": format!("/media/{}/{}.png", c.cc_id, c.symbol.to_lowercase()),
        "Url": format!("/coins/{}/overview", c.symbol.to_lowercase()),
        "Algorithm": "N/A",
        "ProofType": "N/A",
        "Rating": { "Weiss": { "Rating": "", "TechnologyAdoptionRating": "", "MarketPerformanceRating": "" } },
        "NetHashesPerSecond": 0,
        "BlockNumber": 0,
        "BlockTime": 0,
        "BlockReward": 0,
        "MaxSupply": c.max_supply.map_or(json!(-1), num),
        "Type": 1,
        "DocumentType": "Webpagecoinp",
    });
    if !c.on_cryptocompare {
        return json!({ "CoinInfo": info });
    }
    let volume_to = c.cc_volume();
    json!({
        "CoinInfo": info,
        "RAW": { "USD": {
            "TYPE": "5",
            "MARKET": "CCCAGG",
            "FROMSYMBOL": c.cc_symbol,
            "TOSYMBOL": "USD",
            "FLAGS": "2052",
            "PRICE": c.price,
            "LASTUPDATE": updated,
            "VOLUME24HOUR": volume_to / c.price / 3.0,
            "VOLUME24HOURTO": volume_to / 3.0,
            "CHANGEPCT24HOUR": c.change_24h_pct,
            "CONVERSIONTYPE": "direct",
            "CONVERSIONSYMBOL": "",
            "SUPPLY": num(c.circulating_supply),
            "MKTCAP": c.market_cap(),
            "TOTALVOLUME24H": volume_to / c.price,
            "TOTALVOLUME24HTO": volume_to,
            "IMAGEURL": format!("/media/{}/{}.png", c.cc_id, c.symbol.to_lowercase()),
        }},
        "DISPLAY": { "USD": {
            "FROMSYMBOL": c.cc_symbol,
            "TOSYMBOL": "$",
            "PRICE": format!("$ {:.2}", c.price),
            "LASTUPDATE": "Just now",
            "TOTALVOLUME24HTO": format!("$ {:.2} M", volume_to / 1e6),
        }},
    })
}

// ---------------------------------------------------------------------------------------------
// CoinGecko: GET /api/v3/coins/markets?vs_currency=usd&per_page=100&page=1

pub struct GeckoQuery {
    pub vs_currency: Option<String>,
    pub per_page: Option<String>,
    pub page: Option<String>,
}

pub fn gecko_error(status: u16, message: &str) -> ProviderError {
    ProviderError {
        status,
        body: json!({ "error": message }),
    }
}

pub fn gecko_markets(market: &Market, q: &GeckoQuery) -> Result<Value, ProviderError> {
    match q.vs_currency.as_deref() {
        Some(v) if v.eq_ignore_ascii_case("usd") => {}
        Some(_) => return Err(gecko_error(400, "invalid vs_currency")),
        None => return Err(gecko_error(400, "Missing parameter vs_currency")),
    }
    let per_page = q.per_page.as_deref().map_or(Ok(100), str::parse::<usize>);
    let page = q.page.as_deref().map_or(Ok(1), str::parse::<usize>);
    let (Ok(per_page), Ok(page)) = (per_page, page) else {
        return Err(gecko_error(400, "invalid per_page or page"));
    };
    let per_page = per_page.clamp(1, 250);
    let page = page.max(1);
    let updated = rfc3339_millis(market.updated);
    let data: Vec<Value> = market
        .by_market_cap()
        .iter()
        .enumerate()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(i, c)| {
            json!({
                "id": c.gecko_id,
                "symbol": c.symbol.to_lowercase(),
                "name": c.name,
                "image": format!("https://example.invalid/{}.png", c.gecko_id),
                "current_price": c.price,
                "market_cap": c.market_cap().round() as i64,
                "market_cap_rank": i + 1,
                "fully_diluted_valuation": c.max_supply.map(|m| num((m * c.price).round())),
                "total_volume": c.volume_24h,
                "price_change_percentage_24h": c.change_24h_pct,
                "circulating_supply": c.circulating_supply,
                "total_supply": c.max_supply,
                "max_supply": c.max_supply,
                "roi": null,
                "last_updated": updated,
            })
        })
        .collect();
    Ok(Value::Array(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmc(start: Option<&str>, limit: Option<&str>) -> Result<Value, ProviderError> {
        cmc_listings(
            &Market::new(300, 1),
            &CmcQuery {
                start: start.map(Into::into),
                limit: limit.map(Into::into),
                convert: None,
            },
        )
    }

    #[test]
    fn cmc_pages_and_credits() {
        let body = cmc(Some("201"), Some("200")).unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 100);
        assert_eq!(body["data"][0]["cmc_rank"], 201);
        assert_eq!(body["status"]["credit_count"], 1);
        assert_eq!(body["status"]["total_count"], 300);
        assert_eq!(cmc(None, Some("5001")).err().unwrap().status, 400);
        assert_eq!(cmc(Some("0"), None).err().unwrap().status, 400);
    }

    #[test]
    fn ten_thousand_coins_page_through_every_provider() {
        let m = Market::new(10_000, 3);
        let q = CmcQuery {
            start: Some("5001".into()),
            limit: Some("5000".into()),
            convert: Some("USD".into()),
        };
        let body = cmc_listings(&m, &q).unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 5000);
        assert_eq!(body["data"][4999]["cmc_rank"], 10_000);
        assert_eq!(body["status"]["credit_count"], 25);
        let q = CcQuery {
            limit: Some("100".into()),
            page: Some("99".into()),
            tsym: Some("USD".into()),
        };
        assert_eq!(cc_toplist(&m, &q)["Data"].as_array().unwrap().len(), 100);
        let q = GeckoQuery {
            vs_currency: Some("usd".into()),
            per_page: Some("250".into()),
            page: Some("40".into()),
        };
        assert_eq!(
            gecko_markets(&m, &q).unwrap().as_array().unwrap().len(),
            250
        );
    }

    #[test]
    fn cc_errors_are_http_200_shaped() {
        let m = Market::new(300, 1);
        let q = |tsym: Option<&str>| CcQuery {
            limit: Some("100".into()),
            page: Some("2".into()),
            tsym: tsym.map(Into::into),
        };
        assert_eq!(cc_toplist(&m, &q(None))["Response"], "Error");
        let page = cc_toplist(&m, &q(Some("USD")));
        assert_eq!(page["Data"].as_array().unwrap().len(), 100);
        assert!(page.get("Response").is_none());
    }
}
