//! Fault injection: make one provider endpoint misbehave, on request, the ways real ones do.
//!
//! `POST /sim/faults` with `{"endpoint":"coinmarketcap","fault":"status","status":429,
//! "retry_after":1,"times":2}` makes the next two CoinMarketCap calls answer 429 with
//! `Retry-After: 1`; without `times` the fault stays until `DELETE /sim/faults`.
//!
//! | `fault` | what the endpoint sends |
//! |---|---|
//! | `status` (`status`: 500, 502, 401, 429…, `retry_after` s) | that status with the provider's error body (502: an HTML gateway page) |
//! | `delay` (`ms`) | the normal answer, that late |
//! | `malformed_json` | a body that is not JSON |
//! | `truncated_json` | the first half of the normal body |
//! | `html_page` | an HTML error page with HTTP 200 |
//! | `error_in_200` | the provider's error body with HTTP 200 (CryptoCompare's habit) |
//! | `empty_data` | a success body with no coins |
//! | `missing_fields` | coins without a field the client needs |
//! | `extra_fields` | unknown fields added everywhere (must break nothing) |
//! | `duplicate_entries` | one coin listed twice |
//! | `nan_price` | a price written as the bare token `NaN` (as some JSON encoders do); on the exchanges, whose numbers are strings, the string `"NaN"` |
//! | `negative_price` | a negative price (the second coin's or pair's; a one-pair body's own) |
//!
//! The endpoints are the providers `coinmarketcap`, `cryptocompare`, `coingecko` and the
//! exchanges `kraken`, `coinbase`, `binance`; a fault set for one applies to every path of
//! that one only (CryptoCompare's toplist and history; Kraken's `Ticker` and `AssetPairs`;
//! Coinbase's `ticker`, `stats` and `products`, each call using one of `times`; Binance's
//! `ticker/24hr` and `exchangeInfo`). A body fault that finds nothing to act on in a body
//! (a price fault on a pair list) sends that body unchanged. For the exchanges the entries are
//! Kraken's `result` members (a duplicate is the same key written twice), Binance's array
//! items (or its one object), Coinbase's products (or its one ticker or stats object); the
//! price is Kraken's `c[0]`, Binance's `lastPrice`, Coinbase's ticker `price` and stats `open`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Coinmarketcap,
    Cryptocompare,
    Coingecko,
    Kraken,
    Coinbase,
    Binance,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    Delay {
        ms: u64,
    },
    MalformedJson,
    TruncatedJson,
    HtmlPage,
    #[serde(rename = "error_in_200")]
    ErrorIn200,
    EmptyData,
    MissingFields,
    ExtraFields,
    DuplicateEntries,
    NanPrice,
    NegativePrice,
}

#[derive(Debug, Deserialize)]
pub struct FaultRequest {
    pub endpoint: Endpoint,
    #[serde(flatten)]
    pub fault: Fault,
    /// How many requests the fault applies to; unlimited when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

/// The faults in force, per endpoint.
#[derive(Default)]
pub struct Faults {
    active: Mutex<HashMap<Endpoint, (Fault, Option<u32>)>>,
}

impl Faults {
    pub fn set(&self, request: FaultRequest) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.insert(request.endpoint, (request.fault, request.times));
    }

    pub fn clear(&self) {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The fault for this request, if any (using up one of its `times`).
    pub fn take(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let (fault, times) = active.get_mut(&endpoint)?;
        let fault = fault.clone();
        if let Some(n) = times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&endpoint);
            }
        }
        Some(fault)
    }
}

/// Marker replaced by a bare `NaN` after serialisation.
const NAN_MARKER: &str = "__topcoins_sim_nan__";

/// The entries of a body: the coins of a provider, the pairs of an exchange.
enum Entries<'a> {
    List(&'a mut Vec<Value>),
    /// Kraken's `result`, keyed by pair.
    Keyed(&'a mut Map<String, Value>),
    /// A body that is one entry (Binance's `?symbol=`, Coinbase's ticker and stats).
    One(&'a mut Value),
}

impl Entries<'_> {
    fn len(&self) -> usize {
        match self {
            Entries::List(v) => v.len(),
            Entries::Keyed(m) => m.len(),
            Entries::One(_) => 1,
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Value> {
        match self {
            Entries::List(v) => v.get_mut(i),
            Entries::Keyed(m) => m.values_mut().nth(i),
            Entries::One(v) => (i == 0).then_some(&mut **v),
        }
    }

    fn for_each(&mut self, mut f: impl FnMut(&mut Value)) {
        match self {
            Entries::List(v) => v.iter_mut().for_each(f),
            Entries::Keyed(m) => m.values_mut().for_each(f),
            Entries::One(v) => f(v),
        }
    }
}

/// The entries of a body, if it has any.
fn entries(endpoint: Endpoint, body: &mut Value) -> Option<Entries<'_>> {
    match endpoint {
        Endpoint::Coinmarketcap => body.get_mut("data")?.as_array_mut().map(Entries::List),
        Endpoint::Cryptocompare => body.get_mut("Data")?.as_array_mut().map(Entries::List),
        Endpoint::Coingecko => body.as_array_mut().map(Entries::List),
        Endpoint::Kraken => body.get_mut("result")?.as_object_mut().map(Entries::Keyed),
        Endpoint::Binance | Endpoint::Coinbase => match body {
            Value::Array(v) => Some(Entries::List(v)),
            Value::Object(_) => Some(Entries::One(body)),
            _ => None,
        },
    }
}

/// The price field of one coin or pair.
fn price_of(endpoint: Endpoint, coin: &mut Value) -> Option<&mut Value> {
    match endpoint {
        Endpoint::Coinmarketcap => coin.pointer_mut("/quote/USD/price"),
        Endpoint::Cryptocompare => coin.pointer_mut("/RAW/USD/PRICE"),
        Endpoint::Coingecko => coin.get_mut("current_price"),
        Endpoint::Kraken => coin.pointer_mut("/c/0"),
        Endpoint::Binance => coin.get_mut("lastPrice"),
        Endpoint::Coinbase => {
            if coin.get("price").is_some() {
                coin.get_mut("price")
            } else {
                coin.get_mut("open")
            }
        }
    }
}

/// The fields `missing_fields` removes from every entry.
fn needed_fields(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Coinmarketcap | Endpoint::Coingecko => &["symbol"],
        Endpoint::Cryptocompare => &["CoinInfo"],
        Endpoint::Kraken => &["c"],
        Endpoint::Binance => &["lastPrice", "baseAsset"],
        Endpoint::Coinbase => &["price", "open", "id"],
    }
}

/// Whether prices are strings in the provider's bodies.
fn string_numbers(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::Kraken | Endpoint::Coinbase | Endpoint::Binance
    )
}

/// The provider's own error body for `error_in_200`.
fn error_body(endpoint: Endpoint) -> Value {
    match endpoint {
        Endpoint::Coinmarketcap => {
            json!({"status": {"error_code": 1002, "error_message": "API key missing.", "credit_count": 0}})
        }
        Endpoint::Cryptocompare => json!({
            "Response": "Error", "Message": "Rate limit excedeed!", "HasWarning": false, "Type": 99,
            "RateLimit": {"calls_made": {"second": 1, "minute": 1, "hour": 1, "day": 1, "month": 100001},
                          "max_calls": {"second": 50, "minute": 2500, "hour": 25000, "day": 50000, "month": 100000}},
            "Data": {}
        }),
        Endpoint::Coingecko => {
            json!({"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit."}})
        }
        Endpoint::Kraken => json!({"error": ["EAPI:Rate limit exceeded"]}),
        Endpoint::Coinbase => json!({"message": "Public rate limit exceeded"}),
        Endpoint::Binance => json!({
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        }),
    }
}

/// The body of an HTTP error status, as each provider (or the proxy in front of it) sends it.
pub fn status_body(endpoint: Endpoint, status: u16) -> (&'static str, Vec<u8>) {
    if status == 502 || status == 504 {
        return ("text/html", format!("<html><head><title>{status} Bad Gateway</title></head><body><center><h1>{status} Bad Gateway</h1></center></body></html>").into_bytes());
    }
    let body = match endpoint {
        Endpoint::Coinmarketcap => {
            let (code, message) = match status {
                401 => (1001, "This API Key is invalid."),
                429 => (
                    1008,
                    "You've exceeded your API Key's HTTP request rate limit. Rate limits reset every minute.",
                ),
                _ => (i64::from(status), "An internal server error occurred."),
            };
            json!({"status": {"error_code": code, "error_message": message, "credit_count": 0}})
        }
        Endpoint::Cryptocompare => {
            json!({"Response": "Error", "Message": format!("HTTP {status}"), "Type": 0, "Data": {}})
        }
        Endpoint::Coingecko => {
            json!({"status": {"error_code": status, "error_message": format!("HTTP {status}")}})
        }
        Endpoint::Kraken => {
            let message = match status {
                429 => "EAPI:Rate limit exceeded",
                401 | 403 => "EAPI:Invalid key",
                500..=599 => "EService:Unavailable",
                _ => "EGeneral:Internal error",
            };
            json!({"error": [message]})
        }
        Endpoint::Coinbase => {
            let message = match status {
                429 => "Public rate limit exceeded".to_owned(),
                401 => "Unauthorized.".to_owned(),
                404 => "NotFound".to_owned(),
                500..=599 => "Internal server error".to_owned(),
                _ => format!("HTTP {status}"),
            };
            json!({"message": message})
        }
        Endpoint::Binance => {
            let (code, msg) = match status {
                429 | 418 => (
                    -1003,
                    "Too many requests; current limit is 6000 request weight per 1 MINUTE.",
                ),
                401 | 403 => (-2015, "Invalid API-key, IP, or permissions for action."),
                500..=599 => (
                    -1001,
                    "Internal error; unable to process your request. Please try again.",
                ),
                _ => (
                    -1000,
                    "An unknown error occurred while processing the request.",
                ),
            };
            json!({"code": code, "msg": msg})
        }
    };
    ("application/json", serde_json::to_vec(&body).expect("json"))
}

/// Applies a body fault to a normal answer; returns the content type and bytes to send.
pub fn apply(endpoint: Endpoint, fault: &Fault, mut body: Value) -> (&'static str, Vec<u8>) {
    let json = |v: &Value| ("application/json", serde_json::to_vec(v).expect("json"));
    match fault {
        Fault::MalformedJson => (
            "application/json",
            b"{\"status\": {\"error_code\": 0,, ]]".to_vec(),
        ),
        Fault::TruncatedJson => {
            let mut bytes = serde_json::to_vec(&body).expect("json");
            bytes.truncate(bytes.len() / 2);
            ("application/json", bytes)
        }
        Fault::HtmlPage => (
            "text/html",
            b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"
                .to_vec(),
        ),
        Fault::ErrorIn200 => json(&error_body(endpoint)),
        Fault::EmptyData => {
            match entries(endpoint, &mut body) {
                Some(Entries::List(v)) => v.clear(),
                Some(Entries::Keyed(m)) => m.clear(),
                Some(Entries::One(v)) => *v = json!({}),
                None => {}
            }
            json(&body)
        }
        Fault::MissingFields => {
            if let Some(mut entries) = entries(endpoint, &mut body) {
                entries.for_each(|entry| {
                    if let Some(obj) = entry.as_object_mut() {
                        for field in needed_fields(endpoint) {
                            obj.remove(*field);
                        }
                    }
                });
            }
            json(&body)
        }
        Fault::ExtraFields => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "added_in_a_later_version".into(),
                    json!({"nested": [1, 2.5, null]}),
                );
            }
            if let Some(mut entries) = entries(endpoint, &mut body) {
                entries.for_each(|entry| {
                    if let Some(obj) = entry.as_object_mut() {
                        obj.insert("brand_new_field".into(), json!("x"));
                    }
                });
            }
            json(&body)
        }
        Fault::DuplicateEntries => match entries(endpoint, &mut body) {
            Some(Entries::List(coins)) if coins.len() > 1 => {
                let copy = coins[0].clone();
                coins.insert(coins.len() / 2, copy);
                json(&body)
            }
            Some(Entries::Keyed(m)) if !m.is_empty() => {
                // A JSON object cannot hold a key twice, so the first pair is written again in
                // the text, as a buggy encoder would.
                let (key, value) = m
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .expect("non-empty");
                let entry = format!(
                    "{}:{},",
                    serde_json::to_string(&key).expect("json"),
                    serde_json::to_string(&value).expect("json")
                );
                let text = serde_json::to_string(&body).expect("json").replacen(
                    "\"result\":{",
                    &format!("\"result\":{{{entry}"),
                    1,
                );
                ("application/json", text.into_bytes())
            }
            _ => json(&body),
        },
        Fault::NanPrice => {
            let string = string_numbers(endpoint);
            if let Some(mut entries) = entries(endpoint, &mut body)
                && let Some(price) = entries.get_mut(0).and_then(|c| price_of(endpoint, c))
            {
                *price = if string {
                    json!("NaN")
                } else {
                    json!(NAN_MARKER)
                };
            }
            let text = serde_json::to_string(&body).expect("json").replacen(
                &format!("\"{NAN_MARKER}\""),
                "NaN",
                1,
            );
            ("application/json", text.into_bytes())
        }
        Fault::NegativePrice => {
            let string = string_numbers(endpoint);
            if let Some(mut entries) = entries(endpoint, &mut body) {
                let i = if string && entries.len() == 1 { 0 } else { 1 };
                if let Some(price) = entries.get_mut(i).and_then(|c| price_of(endpoint, c)) {
                    *price = if string { json!("-0.5") } else { json!(-0.5) };
                }
            }
            json(&body)
        }
        // Handled before the body is made.
        Fault::Status { .. } | Fault::Delay { .. } => json(&body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_run_out_and_clear_clears() {
        let faults = Faults::default();
        faults.set(
            serde_json::from_value(
                json!({"endpoint": "coinmarketcap", "fault": "status", "status": 500, "times": 2}),
            )
            .unwrap(),
        );
        assert!(faults.take(Endpoint::Coinmarketcap).is_some());
        assert!(faults.take(Endpoint::Cryptocompare).is_none());
        assert!(faults.take(Endpoint::Coinmarketcap).is_some());
        assert!(faults.take(Endpoint::Coinmarketcap).is_none());
        faults.set(
            serde_json::from_value(json!({"endpoint": "coingecko", "fault": "nan_price"})).unwrap(),
        );
        assert_eq!(faults.take(Endpoint::Coingecko), Some(Fault::NanPrice));
        assert_eq!(faults.take(Endpoint::Coingecko), Some(Fault::NanPrice));
        faults.clear();
        assert_eq!(faults.take(Endpoint::Coingecko), None);
    }

    #[test]
    fn nan_is_a_bare_token() {
        let body = json!({"data": [{"quote": {"USD": {"price": 1.0}}}]});
        let (_, bytes) = apply(Endpoint::Coinmarketcap, &Fault::NanPrice, body);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"data":[{"quote":{"USD":{"price":NaN}}}]}"#
        );
    }
}
