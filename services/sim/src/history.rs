//! CryptoCompare's `GET /data/v2/histoday` and `/data/v2/histohour`, for the simulated market.
//!
//! **Consistent with the market, and fixed once closed.** The market keeps a [`Tape`]: each
//! coin's price and volume when the simulator started, and the last price of every hour in
//! which the market moved since (16 bytes per coin and hour). An hour since the start closes
//! at its last price on the tape, and the current hour at the coin's price now, so the latest
//! close is always the market's price and a closed hour never changes as the market moves on
//! (a backfill that pages with `toTs` while the market ticks gets pages that join). Hours
//! before the start are a deterministic walk *backwards* from the starting price: the close
//! of every hour is the next hour's close divided by that hour's return, each return drawn
//! from a hash of (seed, coin, hour), so any page of it is the same on every call and at every
//! `toTs`. A stablecoin's hours before the start are no walk (which would drift off the peg
//! over the years) but each 1 USD times a little hashed noise, within ±0.5%, its wicks as
//! small. A day is the aggregate of its 24 hours (open of the first, close of the last,
//! extremes, summed volumes), so the daily and hourly series agree as the real provider's do.
//! Each coin has a listing time before the start; before it, rows are all zeros, as
//! CryptoCompare fills them.
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
/// A stablecoin's typical hourly distance from its peg (standard deviation, in log space).
const STABLE_HOURLY_VOLATILITY: f64 = 0.0008;
/// The band around 1 USD a stablecoin's past never leaves.
const STABLE_BAND: f64 = 0.005;

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

/// What the history is drawn from: the market at the simulator's start, and the last price
/// of each hour it moved in since.
#[derive(Debug, Clone)]
pub struct Tape {
    /// When the simulator started, Unix seconds.
    start: i64,
    coins: Vec<CoinTape>,
}

#[derive(Debug, Clone)]
struct CoinTape {
    start_price: f64,
    /// CryptoCompare's 24 h volume (USD) at the start: hourly volumes are drawn around it.
    start_cc_volume: f64,
    /// `(hour, last price in it)`, ascending; the first is the starting hour.
    closes: Vec<(i64, f64)>,
}

fn hour_of(t: i64) -> i64 {
    t - t.rem_euclid(HOUR)
}

impl Tape {
    pub fn new(coins: &[Coin], start: i64) -> Self {
        let hour = hour_of(start);
        Tape {
            start,
            coins: coins
                .iter()
                .map(|c| CoinTape {
                    start_price: c.price,
                    start_cc_volume: c.cc_volume(),
                    closes: vec![(hour, c.price)],
                })
                .collect(),
        }
    }

    /// Notes the coins' prices at `now` (Unix seconds), after a market step.
    pub fn record(&mut self, coins: &[Coin], now: i64) {
        let hour = hour_of(now);
        for (tape, coin) in self.coins.iter_mut().zip(coins) {
            match tape.closes.last_mut() {
                Some(last) if last.0 >= hour => last.1 = coin.price,
                _ => tape.closes.push((hour, coin.price)),
            }
        }
    }
}

impl CoinTape {
    /// The close of an hour at or after the start: the last price on the tape up to it.
    fn close(&self, hour: i64) -> f64 {
        let i = self.closes.partition_point(|(h, _)| *h <= hour);
        self.closes[i.saturating_sub(1)].1
    }
}

/// When the coin was listed: 30 days to about six years before the simulator's start, the
/// same at every call.
fn listed_at(seed: u64, coin: &Coin, start: i64) -> i64 {
    let age_days = 30.0 + unit(seed, coin.cc_id, 3, 0) * 2200.0;
    hour_of(start) - (age_days as i64) * DAY
}

/// The hourly candles of `coin` for the hours starting at `from` ..= `to` (aligned), the
/// current hour (holding `now`) the last one.
fn hours(
    seed: u64,
    coin: &Coin,
    tape: &Tape,
    index: usize,
    now: i64,
    from: i64,
    to: i64,
) -> Vec<Candle> {
    let coin_tape = &tape.coins[index];
    let start_hour = hour_of(tape.start);
    let to = to.min(hour_of(now));
    if to < from {
        return Vec::new();
    }
    let listed = listed_at(seed, coin, tape.start);
    // Closes of the hours `from - 1 ..= to`: before the start a walk back from the starting
    // price (the close of the hour before the start), from the start on the tape.
    let first = from - HOUR;
    let mut closes = Vec::with_capacity(((to - first) / HOUR + 1) as usize);
    if first < start_hour {
        let mut walk = Vec::new();
        let mut close = coin_tape.start_price;
        let mut hour = start_hour - HOUR;
        while hour >= first {
            if hour <= to {
                walk.push(close);
            }
            close = if coin.stable {
                // The close of the hour before, about the peg.
                let noise = STABLE_HOURLY_VOLATILITY * normal(seed, coin.cc_id, hour - HOUR);
                noise.exp().clamp(1.0 - STABLE_BAND, 1.0 + STABLE_BAND)
            } else {
                close / (HOURLY_VOLATILITY * normal(seed, coin.cc_id, hour)).exp()
            };
            hour -= HOUR;
        }
        walk.reverse();
        closes.extend(walk);
    }
    let mut hour = first.max(start_hour);
    while hour <= to {
        closes.push(coin_tape.close(hour));
        hour += HOUR;
    }
    let mut out = Vec::with_capacity(closes.len().saturating_sub(1));
    for (i, pair) in closes.windows(2).enumerate() {
        let hour = from + i as i64 * HOUR;
        let (open, close) = (pair[0], pair[1]);
        if hour < listed {
            out.push(Candle {
                time: hour,
                open: 0.0,
                high: 0.0,
                low: 0.0,
                close: 0.0,
                volume_from: 0.0,
            });
            continue;
        }
        let volatility = if coin.stable {
            STABLE_HOURLY_VOLATILITY
        } else {
            HOURLY_VOLATILITY
        };
        let wick = volatility * unit(seed, coin.cc_id, 4, hour);
        let hourly_volume = coin_tape.start_cc_volume / 24.0 / close.max(f64::MIN_POSITIVE);
        out.push(Candle {
            time: hour,
            open,
            high: open.max(close) * (1.0 + wick),
            low: open.min(close) * (1.0 - wick),
            close,
            volume_from: hourly_volume * (0.5 + unit(seed, coin.cc_id, 5, hour)),
        });
    }
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
    let Some(index) = market
        .coins
        .iter()
        .position(|c| c.on_cryptocompare && c.cc_symbol.eq_ignore_ascii_case(fsym))
    else {
        return cc_error(
            2,
            &format!("There is no data for the symbol {fsym} ."),
            Some("fsym"),
        );
    };
    let coin = &market.coins[index];
    let tape = &market.tape;
    let step = resolution.seconds();
    let last = to_ts - to_ts.rem_euclid(step);
    let first = last - limit * step;
    let candles = match resolution {
        Resolution::Hour => hours(seed, coin, tape, index, now, first, last),
        Resolution::Day => days(&hours(
            seed,
            coin,
            tape,
            index,
            now,
            first,
            last + DAY - HOUR,
        )),
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
        let start = market.tape.start;
        // The coin listed most recently: its first days are zeros.
        let coin = market
            .coins
            .iter()
            .filter(|c| c.on_cryptocompare)
            .max_by_key(|c| listed_at(3, c, start))
            .unwrap();
        let listed = listed_at(3, coin, start);
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

    #[test]
    fn closed_buckets_stay_as_the_market_moves_and_the_last_close_follows_it() {
        let mut market = Market::new(30, 5);
        let coin = market.by_cc_volume()[1].cc_symbol.clone();
        let rows = |m: &Market, r, limit: &str| {
            histo(m, 5, r, &query(&coin, limit, None))["Data"]["Data"]
                .as_array()
                .unwrap()
                .clone()
        };
        let (hours, days) = (
            rows(&market, Resolution::Hour, "300"),
            rows(&market, Resolution::Day, "40"),
        );
        for _ in 0..5 {
            market.step();
        }
        let price = market
            .coins
            .iter()
            .find(|c| c.cc_symbol == coin)
            .unwrap()
            .price;
        let (hours_after, days_after) = (
            rows(&market, Resolution::Hour, "300"),
            rows(&market, Resolution::Day, "40"),
        );
        for (before, after) in [(&hours, &hours_after), (&days, &days_after)] {
            let moved_on = before.last().unwrap()["time"] != after.last().unwrap()["time"];
            // Every closed bucket as it was (the last two too when the hour turned meanwhile).
            let closed = before.len() - if moved_on { 2 } else { 1 };
            let offset = usize::from(moved_on);
            assert_eq!(&before[offset..closed], &after[..closed - offset]);
            let close = after.last().unwrap()["close"].as_f64().unwrap();
            assert!(
                (close - price).abs() <= price * 1e-6 + 0.01,
                "{close} vs {price}"
            );
        }
    }
}
