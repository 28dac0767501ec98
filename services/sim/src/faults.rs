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
//! | `nan_price` | a price written as the bare token `NaN` (as some JSON encoders do) |
//! | `negative_price` | a negative price |

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Coinmarketcap,
    Cryptocompare,
    Coingecko,
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

/// The coins array of a provider body.
fn coins(endpoint: Endpoint, body: &mut Value) -> Option<&mut Vec<Value>> {
    match endpoint {
        Endpoint::Coinmarketcap => body.get_mut("data")?.as_array_mut(),
        Endpoint::Cryptocompare => body.get_mut("Data")?.as_array_mut(),
        Endpoint::Coingecko => body.as_array_mut(),
    }
}

/// The price field of one coin.
fn price_of(endpoint: Endpoint, coin: &mut Value) -> Option<&mut Value> {
    match endpoint {
        Endpoint::Coinmarketcap => coin.pointer_mut("/quote/USD/price"),
        Endpoint::Cryptocompare => coin.pointer_mut("/RAW/USD/PRICE"),
        Endpoint::Coingecko => coin.get_mut("current_price"),
    }
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
            if let Some(coins) = coins(endpoint, &mut body) {
                coins.clear();
            }
            json(&body)
        }
        Fault::MissingFields => {
            if let Some(coins) = coins(endpoint, &mut body) {
                for coin in coins.iter_mut() {
                    if let Some(obj) = coin.as_object_mut() {
                        match endpoint {
                            Endpoint::Coinmarketcap => obj.remove("symbol"),
                            Endpoint::Cryptocompare => obj.remove("CoinInfo"),
                            Endpoint::Coingecko => obj.remove("symbol"),
                        };
                    }
                }
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
            if let Some(coins) = coins(endpoint, &mut body) {
                for coin in coins.iter_mut() {
                    if let Some(obj) = coin.as_object_mut() {
                        obj.insert("brand_new_field".into(), json!("x"));
                    }
                }
            }
            json(&body)
        }
        Fault::DuplicateEntries => {
            if let Some(coins) = coins(endpoint, &mut body)
                && coins.len() > 1
            {
                let copy = coins[0].clone();
                coins.insert(coins.len() / 2, copy);
            }
            json(&body)
        }
        Fault::NanPrice => {
            if let Some(coins) = coins(endpoint, &mut body)
                && let Some(price) = coins.first_mut().and_then(|c| price_of(endpoint, c))
            {
                *price = json!(NAN_MARKER);
            }
            let text = serde_json::to_string(&body).expect("json").replacen(
                &format!("\"{NAN_MARKER}\""),
                "NaN",
                1,
            );
            ("application/json", text.into_bytes())
        }
        Fault::NegativePrice => {
            if let Some(coins) = coins(endpoint, &mut body)
                && let Some(price) = coins.get_mut(1).and_then(|c| price_of(endpoint, c))
            {
                *price = json!(-0.5);
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
