//! CryptoCompare's `GET /data/v2/histoday` and `/data/v2/histohour`, for the simulated market.
//!
//! The history is a deterministic walk *backwards* from each coin's price now: the close of
//! every hour is the next hour's close divided by that hour's return, each return drawn from a
//! hash of (seed, coin, hour), so any page of it is the same on every call and at every
//! `toTs`, and the latest close is the market's current price. A day is the aggregate of its
//! 24 hours (open of the first, close of the last, extremes, summed volumes), so the daily and
//! hourly series agree as the real provider's do. Each coin has a listing time; before it,
//! rows are all zeros, as CryptoCompare fills them.
//!
//! Shape, as recorded in `testdata/upstream/cryptocompare/v2_hist*`: `limit` (default 30, at
//! most 2000) asks for `limit + 1` points ending at the bucket holding `toTs` (default now),
//! the last one still open; errors are HTTP 200 bodies with `"Response":"Error"`.

use serde_json::{Value, json};

use crate::market::{Coin, Market};
use crate::providers::cc_error;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// Largest `limit` CryptoCompare accepts.
pub const MAX_LIMIT: u64 = 2000;
/// Typical hourly move of a simulated coin (standard deviation of the log return).
const HOURLY_VOLATILITY: f64 = 0.006;

#[derive(Debug, Default)]
pub struct HistoQuery {
    pub fsym: Option<String>,
    pub tsym: Option<String>,
    pub limit: Option<String>,
    pub to_ts: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolution {
    Hour,
    Day,
}

impl Resolution {
    fn seconds(self) -> i64 {
        match self {
            Resolution::Hour => HOUR,
            Resolution::Day => DAY,
        }
    }
}

/// One candle as CryptoCompare writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candle {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume_from: f64,
}

/// A number in [0, 1) from a hash of the parts.
fn unit(seed: u64, coin: u64, salt: u64, at: i64) -> f64 {
    let mut h = blake3::Hasher::new();
    for part in [seed, coin, salt, at as u64] {
        h.update(&part.to_le_bytes());
    }
    let bytes = h.finalize();
    let n = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller) from two hashed uniforms.
fn normal(seed: u64, coin: u64, at: i64) -> f64 {
    let u1 = unit(seed, coin, 1, at).max(1e-12);
    let u2 = unit(seed, coin, 2, at);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// When the coin was listed: up to about six years before `now`, bigger coins earlier.
fn listed_at(seed: u64, coin: &Coin, now: i64) -> i64 {
    let age_days = 30.0 + unit(seed, coin.cc_id, 3, 0) * 2200.0;
    now - (age_days as i64) * DAY
}

/// The hourly candles of `coin` for the hours starting at `from` ..= `to` (aligned), walking
/// back from the current hour, whose close is the coin's price now.
fn hours(seed: u64, coin: &Coin, now: i64, from: i64, to: i64) -> Vec<Candle> {
    let current = now - now.rem_euclid(HOUR);
    let listed = listed_at(seed, coin, now);
    let mut out = Vec::new();
    let mut close = coin.price;
    let mut hour = current;
    // Walk back from now: close(h - 1) = close(h) / exp(r(h)); the open of h is close(h - 1).
    while hour >= from {
        let r = HOURLY_VOLATILITY * normal(seed, coin.cc_id, hour);
        let open = close / r.exp();
        if hour <= to {
            if hour < listed {
                out.push(Candle {
                    time: hour,
                    open: 0.0,
                    high: 0.0,
                    low: 0.0,
                    close: 0.0,
                    volume_from: 0.0,
                });
            } else {
                let wick = HOURLY_VOLATILITY * unit(seed, coin.cc_id, 4, hour);
                let hourly_volume = coin.cc_volume() / 24.0 / coin.price.max(f64::MIN_POSITIVE);
                out.push(Candle {
                    time: hour,
                    open,
                    high: open.max(close) * (1.0 + wick),
                    low: open.min(close) * (1.0 - wick),
                    close,
                    volume_from: hourly_volume * (0.5 + unit(seed, coin.cc_id, 5, hour)),
                });
            }
        }
        close = open;
        hour -= HOUR;
    }
    out.reverse();
    out
}

/// Hours aggregated into days (UTC), a day with any zero-filled hour being zero-filled.
fn days(hourly: &[Candle]) -> Vec<Candle> {
    hourly
        .chunk_by(|a, b| a.time.div_euclid(DAY) == b.time.div_euclid(DAY))
        .map(|hours| {
            let time = hours[0].time - hours[0].time.rem_euclid(DAY);
            if hours.iter().any(|h| h.close == 0.0) {
                return Candle {
                    time,
                    open: 0.0,
                    high: 0.0,
                    low: 0.0,
                    close: 0.0,
                    volume_from: 0.0,
                };
            }
            Candle {
                time,
                open: hours[0].open,
                high: hours.iter().map(|h| h.high).fold(f64::MIN, f64::max),
                low: hours.iter().map(|h| h.low).fold(f64::MAX, f64::min),
                close: hours[hours.len() - 1].close,
                volume_from: hours.iter().map(|h| h.volume_from).sum(),
            }
        })
        .collect()
}

fn round(x: f64) -> Value {
    let digits = if x.abs() >= 1.0 { 2 } else { 8 };
    let factor = 10f64.powi(digits);
    crate::providers::num((x * factor).round() / factor)
}

/// The body of a histo request, success or CryptoCompare-shaped error.
pub fn histo(market: &Market, seed: u64, resolution: Resolution, q: &HistoQuery) -> Value {
    let Some(fsym) = q.fsym.as_deref().filter(|s| !s.is_empty()) else {
        return cc_error(2, "fsym is a required param.", Some("fsym"));
    };
    if let Err(body) = crate::providers::cc_usd_only(q.tsym.as_deref()) {
        return body;
    }
    let limit = match q.limit.as_deref().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(v)) if (1..=MAX_LIMIT).contains(&v) => v as i64,
        Some(Ok(_)) => {
            return cc_error(
                2,
                &format!("limit param is not in range [1, {MAX_LIMIT}]."),
                Some("limit"),
            );
        }
        Some(Err(_)) => return cc_error(2, "limit param is not an integer.", Some("limit")),
    };
    let now = market.updated.unix_timestamp();
    let to_ts = match q.to_ts.as_deref().map(str::parse::<i64>) {
        None => now,
        Some(Ok(t)) => t.min(now),
        Some(Err(_)) => return cc_error(2, "toTs param is not an integer.", Some("toTs")),
    };
    let Some(coin) = market
        .coins
        .iter()
        .find(|c| c.on_cryptocompare && c.cc_symbol.eq_ignore_ascii_case(fsym))
    else {
        return cc_error(
            2,
            &format!("There is no data for the symbol {fsym} ."),
            Some("fsym"),
        );
    };
    let step = resolution.seconds();
    let last = to_ts - to_ts.rem_euclid(step);
    let first = last - limit * step;
    let candles = match resolution {
        Resolution::Hour => hours(seed, coin, now, first, last),
        Resolution::Day => days(&hours(seed, coin, now, first, last + DAY - HOUR)),
    };
    let data: Vec<Value> = candles
        .iter()
        .map(|c| {
            json!({
                "time": c.time,
                "high": round(c.high),
                "low": round(c.low),
                "open": round(c.open),
                "volumefrom": round(c.volume_from),
                "volumeto": round(c.volume_from * c.close),
                "close": round(c.close),
                "conversionType": "direct",
                "conversionSymbol": "",
            })
        })
        .collect();
    json!({
        "Response": "Success",
        "Message": "",
        "HasWarning": false,
        "Type": 100,
        "RateLimit": {},
        "Data": {
            "Aggregated": false,
            "TimeFrom": first,
            "TimeTo": last,
            "Data": data,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(fsym: &str, limit: &str, to_ts: Option<i64>) -> HistoQuery {
        HistoQuery {
            fsym: Some(fsym.into()),
            tsym: Some("USD".into()),
            limit: Some(limit.into()),
            to_ts: to_ts.map(|t| t.to_string()),
        }
    }

    #[test]
    fn pages_are_stable_end_at_the_price_and_days_aggregate_hours() {
        let market = Market::new(50, 7);
        let coin = market.by_cc_volume()[0].clone();
        let hourly = histo(
            &market,
            7,
            Resolution::Hour,
            &query(&coin.cc_symbol, "48", None),
        );
        let rows = hourly["Data"]["Data"].as_array().unwrap();
        assert_eq!(rows.len(), 49, "limit + 1 points");
        let last_close = rows.last().unwrap()["close"].as_f64().unwrap();
        assert!((last_close - coin.price).abs() <= coin.price * 1e-6 + 0.01);
        for pair in rows.windows(2) {
            assert_eq!(
                pair[1]["time"].as_i64().unwrap() - pair[0]["time"].as_i64().unwrap(),
                HOUR
            );
            for row in pair {
                let (o, h, l, c) = (
                    row["open"].as_f64().unwrap(),
                    row["high"].as_f64().unwrap(),
                    row["low"].as_f64().unwrap(),
                    row["close"].as_f64().unwrap(),
                );
                assert!(l <= o.min(c) && o.max(c) <= h, "{row}");
            }
        }
        // The same page again, and as the tail of a page asked with an earlier toTs.
        let again = histo(
            &market,
            7,
            Resolution::Hour,
            &query(&coin.cc_symbol, "48", None),
        );
        assert_eq!(hourly, again);
        let t = rows[10]["time"].as_i64().unwrap();
        let earlier = histo(
            &market,
            7,
            Resolution::Hour,
            &query(&coin.cc_symbol, "5", Some(t)),
        );
        let earlier = earlier["Data"]["Data"].as_array().unwrap();
        assert_eq!(earlier.last().unwrap(), &rows[10]);

        // A finished day is its 24 hours.
        let daily = histo(
            &market,
            7,
            Resolution::Day,
            &query(&coin.cc_symbol, "3", None),
        );
        let day = &daily["Data"]["Data"].as_array().unwrap()[1];
        let start = day["time"].as_i64().unwrap();
        let hours_of_day = histo(
            &market,
            7,
            Resolution::Hour,
            &query(&coin.cc_symbol, "23", Some(start + DAY - HOUR)),
        );
        let hours_of_day = hours_of_day["Data"]["Data"].as_array().unwrap();
        assert_eq!(hours_of_day.len(), 24);
        assert_eq!(hours_of_day[0]["time"].as_i64().unwrap(), start);
        assert_eq!(day["open"], hours_of_day[0]["open"]);
        assert_eq!(day["close"], hours_of_day[23]["close"]);
    }

    #[test]
    fn before_listing_rows_are_zeros_and_errors_are_http_200_shaped() {
        let market = Market::new(20, 3);
        let now = market.updated.unix_timestamp();
        // The coin listed most recently: its first days are zeros.
        let coin = market
            .coins
            .iter()
            .filter(|c| c.on_cryptocompare)
            .max_by_key(|c| listed_at(3, c, now))
            .unwrap();
        let listed = listed_at(3, coin, now);
        let all = histo(
            &market,
            3,
            Resolution::Day,
            &query(&coin.cc_symbol, "2000", None),
        );
        let rows = all["Data"]["Data"].as_array().unwrap();
        assert_eq!(rows.len(), 2001);
        let mut zeros = 0;
        for row in rows {
            let (t, close) = (
                row["time"].as_i64().unwrap(),
                row["close"].as_f64().unwrap(),
            );
            if t + DAY <= listed {
                assert_eq!(close, 0.0, "{row}");
                assert_eq!(row["volumefrom"].as_f64(), Some(0.0));
                zeros += 1;
            } else if t >= listed {
                assert!(close > 0.0, "{row}");
            }
        }
        assert!(
            zeros > 0,
            "the youngest of 20 coins was listed within 2000 days"
        );

        for (q, param) in [
            (HistoQuery::default(), "fsym"),
            (query(&coin.cc_symbol, "2001", None), "limit"),
            (query(&coin.cc_symbol, "x", None), "limit"),
            (query("NOPE-NOT-A-COIN", "5", None), "fsym"),
        ] {
            let body = histo(&market, 3, Resolution::Hour, &q);
            assert_eq!(body["Response"], "Error", "{body}");
            assert_eq!(body["ParamWithError"], param);
        }
    }
}
