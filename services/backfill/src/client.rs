//! CryptoCompare `GET /data/v2/histoday` and `/data/v2/histohour` for one coin against USD.
//!
//! Documented behaviour we rely on (and the recorded bodies in
//! `testdata/upstream/cryptocompare/v2_hist*` show): `limit` from 1 to 2000 asks for
//! `limit + 1` rows, one per bucket, ascending, ending with the bucket that holds `toTs` (Unix
//! seconds, default now), the last one still open; `Data.TimeFrom`/`Data.TimeTo` are the first
//! and last bucket; `time` is a bucket's start in seconds, 00:00 UTC for days. Before a coin
//! existed (or has data) the provider does not stop: it fills the rows with zeros
//! (open = high = low = close = 0, zero volumes), as far back as one asks. The envelope and its
//! errors inside HTTP 200 (`"Response":"Error"`, `Type` 1 key, 2 parameter, 99 rate limit)
//! are typed by `topcoins_upstream::cryptocompare`, as for the ranking's toplist.
//!
//! **What a row may be.** A row whose four prices are all zero is not a candle: it is skipped
//! and counted. Any other row must be a candle: finite, non-negative numbers, `low ≤ open,
//! close ≤ high`, its time aligned and inside `TimeFrom..=TimeTo`, times ascending. One row
//! that is not rejects the whole body: a histo body is one series computed as a whole from one
//! feed, so a broken row means the computation or the transport broke and the rows around it
//! are suspect too; and keeping the others would leave a hole that the backfill's progress
//! record would then claim fetched. A rejected body stores nothing and is asked again later.

use compact_str::CompactString;
use serde::Deserialize;
use serde_json::Value;
use topcoins_history::{Candle, Interval, Ohlc, Source, symbol_key};
use topcoins_upstream::cryptocompare::{self as cc, PROVIDER};
use topcoins_upstream::json::{self, fold_indices};
use topcoins_upstream::{Upstream, UpstreamError, UpstreamErrorKind};

pub const HISTODAY_PATH: &str = "/data/v2/histoday";
pub const HISTOHOUR_PATH: &str = "/data/v2/histohour";
/// Largest `limit` the provider takes (it returns `limit + 1` rows).
pub const MAX_LIMIT: u32 = 2000;

/// The two histo endpoints, and the interval of the candles each gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Histo {
    Day,
    Hour,
}

impl Histo {
    /// Days first: a year of daily data for every coin comes before any hours.
    pub const ALL: [Histo; 2] = [Histo::Day, Histo::Hour];

    pub const fn interval(self) -> Interval {
        match self {
            Histo::Day => Interval::D1,
            Histo::Hour => Interval::H1,
        }
    }

    pub const fn path(self) -> &'static str {
        match self {
            Histo::Day => HISTODAY_PATH,
            Histo::Hour => HISTOHOUR_PATH,
        }
    }

    /// One bucket in milliseconds.
    pub const fn step(self) -> i64 {
        self.interval().millis()
    }
}

/// One answer of a histo endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoPage {
    /// First and last bucket the provider answered for (`TimeFrom`, `TimeTo`), Unix ms;
    /// `None` for an answer without rows.
    pub span: Option<(i64, i64)>,
    /// The candles, ascending; zero-filled rows left out.
    pub candles: Vec<Candle>,
    /// Rows skipped because the provider filled them with zeros.
    pub zero_filled: u64,
    /// The oldest row is zero-filled (or there are no rows): the provider's data for the coin
    /// starts inside this page, and nothing older is worth asking for.
    pub data_starts: bool,
}

#[derive(Debug, Deserialize)]
struct Series {
    #[serde(rename = "TimeFrom")]
    time_from: Option<i64>,
    #[serde(rename = "TimeTo")]
    time_to: Option<i64>,
    #[serde(rename = "Data")]
    data: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volumefrom: f64,
    volumeto: f64,
}

fn rejected(reason: &'static str, message: String) -> UpstreamError {
    UpstreamError::new(PROVIDER, UpstreamErrorKind::Rejected { reason }, message)
}

fn seconds_to_ms(s: i64, what: &str) -> Result<i64, UpstreamError> {
    s.checked_mul(1000)
        .ok_or_else(|| rejected("bad_time", format!("{what} {s} is out of range")))
}

/// Turns one histo reply for `symbol` into candles of `histo`'s interval, or a typed error.
pub fn parse(
    http: u16,
    body: &[u8],
    symbol: &str,
    histo: Histo,
) -> Result<HistoPage, UpstreamError> {
    let data: Value = cc::data(http, body)?;
    let series: Series = json::decode_value(PROVIDER, "Data", &data)?;
    let interval = histo.interval();
    let step = histo.step();
    let symbol: CompactString = symbol_key(symbol);
    let span = match (series.time_from, series.time_to) {
        (Some(from), Some(to)) => Some((
            seconds_to_ms(from, "TimeFrom")?,
            seconds_to_ms(to, "TimeTo")?,
        )),
        _ => None,
    };
    let mut candles = Vec::with_capacity(series.data.len());
    let mut zero_filled = 0;
    let mut previous: Option<i64> = None;
    for (i, row) in series.data.iter().enumerate() {
        let time = seconds_to_ms(row.time, "time")?;
        let at = |what: &str| format!("{symbol} {interval} row {i} (time {}): {what}", row.time);
        if interval.bucket_start(time) != time || previous.is_some_and(|p| p >= time) {
            return Err(rejected(
                "bad_time",
                at("not an aligned time after the row before"),
            ));
        }
        if let Some((from, to)) = span
            && !(from..=to).contains(&time)
        {
            return Err(rejected("bad_time", at("outside TimeFrom..=TimeTo")));
        }
        previous = Some(time);
        let numbers = [
            row.open,
            row.high,
            row.low,
            row.close,
            row.volumefrom,
            row.volumeto,
        ];
        if numbers.iter().any(|n| !n.is_finite() || *n < 0.0) {
            return Err(rejected(
                "bad_number",
                at("a price or volume is negative or not finite"),
            ));
        }
        if [row.open, row.high, row.low, row.close] == [0.0; 4] {
            zero_filled += 1;
            continue;
        }
        if !(row.low <= row.open.min(row.close) && row.open.max(row.close) <= row.high) {
            return Err(rejected("bad_ohlc", at("open or close outside low..high")));
        }
        candles.push(Candle {
            symbol: symbol.clone(),
            interval,
            time,
            source: Source::CryptoCompare,
            price: Some(Ohlc {
                open_time: time,
                open: row.open,
                high: row.high,
                low: row.low,
                // The provider's close is the bucket's last price: stamped with its last ms.
                close_time: time + step - 1,
                close: row.close,
                market_cap_usd: None,
            }),
            ranked: None,
            volume_from: Some(row.volumefrom),
            volume_to: Some(row.volumeto),
        });
    }
    let span = span.or_else(|| {
        let first = series.data.first()?.time.checked_mul(1000)?;
        let last = series.data.last()?.time.checked_mul(1000)?;
        Some((first, last))
    });
    let data_starts = series
        .data
        .first()
        .is_none_or(|r| [r.open, r.high, r.low, r.close] == [0.0; 4]);
    Ok(HistoPage {
        span,
        candles,
        zero_filled,
        data_starts,
    })
}

/// CryptoCompare's histo client.
#[derive(Clone)]
pub struct HistoClient {
    http: Upstream,
    base_url: String,
    api_key: Option<String>,
}

impl HistoClient {
    /// `http` is the provider's client (named [`PROVIDER`]), `base_url` its root.
    pub fn new(http: Upstream, base_url: &str, api_key: Option<String>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
        }
    }

    /// `limit + 1` buckets of `symbol` against USD ending with the one that holds `to_ts`
    /// (Unix seconds; `None` is now). `limit` is clamped to 1..=[`MAX_LIMIT`]. A body that is
    /// refused is counted in `topcoins_upstream_rejected_total` (and one of the wrong shape in
    /// `topcoins_upstream_shape_errors_total`), as the actors count theirs.
    pub async fn fetch(
        &self,
        symbol: &str,
        histo: Histo,
        to_ts: Option<i64>,
        limit: u32,
    ) -> Result<HistoPage, UpstreamError> {
        let url = format!("{}{}", self.base_url, histo.path());
        let mut query = vec![
            ("fsym", symbol.to_owned()),
            ("tsym", "USD".to_owned()),
            ("limit", limit.clamp(1, MAX_LIMIT).to_string()),
        ];
        if let Some(t) = to_ts {
            query.push(("toTs", t.to_string()));
        }
        let headers = cc::key_headers(self.api_key.as_deref());
        let reply = self.http.get(&url, &query, &headers).await?;
        let metrics = self.http.metrics();
        cc::record_call(metrics, &reply.body);
        let parsed = parse(reply.status, &reply.body, symbol, histo);
        if let Err(e) = &parsed {
            metrics
                .rejected
                .with_label_values(&[PROVIDER, e.reason()])
                .inc();
            if let UpstreamErrorKind::Malformed { path } = &e.kind {
                metrics
                    .shape_errors
                    .with_label_values(&[PROVIDER, &fold_indices(path)])
                    .inc();
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(rows: &str) -> Vec<u8> {
        format!(
            r#"{{"Response":"Success","Type":100,"Data":{{"Aggregated":false,"TimeFrom":1637366400,"TimeTo":1637452800,"Data":[{rows}]}}}}"#
        )
        .into_bytes()
    }

    const ZERO: &str =
        r#"{"time":1637366400,"high":0,"low":0,"open":0,"volumefrom":0,"volumeto":0,"close":0}"#;
    const GOOD: &str =
        r#"{"time":1637452800,"high":3,"low":1,"open":2,"volumefrom":5,"volumeto":10,"close":2.5}"#;

    #[test]
    fn zero_filled_rows_are_skipped_and_counted() {
        let page = parse(200, &body(&format!("{ZERO},{GOOD}")), "btc", Histo::Day).unwrap();
        assert_eq!(page.zero_filled, 1);
        assert!(page.data_starts);
        assert_eq!(page.candles.len(), 1);
        let c = &page.candles[0];
        assert_eq!(
            (c.symbol.as_str(), c.interval, c.time),
            ("BTC", Interval::D1, 1637452800000)
        );
        assert_eq!(c.source, Source::CryptoCompare);
        let p = c.price.unwrap();
        assert_eq!((p.open, p.high, p.low, p.close), (2.0, 3.0, 1.0, 2.5));
        assert_eq!((c.volume_from, c.volume_to), (Some(5.0), Some(10.0)));
        assert_eq!(page.span, Some((1637366400000, 1637452800000)));
    }

    #[test]
    fn one_bad_row_rejects_the_body() {
        let reason = |rows: &str| match parse(200, &body(rows), "BTC", Histo::Day) {
            Err(UpstreamError {
                kind: UpstreamErrorKind::Rejected { reason },
                ..
            }) => reason,
            other => panic!("{other:?}"),
        };
        let negative = GOOD.replace(r#""low":1"#, r#""low":-1"#);
        assert_eq!(reason(&format!("{ZERO},{negative}")), "bad_number");
        let huge = GOOD.replace(r#""volumeto":10"#, r#""volumeto":1e308"#);
        assert!(parse(200, &body(&huge), "BTC", Histo::Day).is_ok());
        let inverted = GOOD.replace(r#""high":3"#, r#""high":0.5"#);
        assert_eq!(reason(&inverted), "bad_ohlc");
        let misaligned = GOOD.replace("1637452800", "1637452801");
        assert_eq!(reason(&misaligned), "bad_time");
        assert_eq!(reason(&format!("{GOOD},{GOOD}")), "bad_time");
        let outside = GOOD.replace("1637452800", "1637539200");
        assert_eq!(reason(&outside), "bad_time");
        let far = GOOD.replace("1637452800", &format!("{}", i64::MAX / 10));
        assert!(parse(200, &body(&far), "BTC", Histo::Day).is_err());
    }

    #[test]
    fn broken_shapes_name_the_path() {
        let e = parse(
            200,
            &body(&GOOD.replace("2.5", "\"2.5\"")),
            "BTC",
            Histo::Hour,
        )
        .unwrap_err();
        assert_eq!(
            e.kind,
            UpstreamErrorKind::Malformed {
                path: "Data.Data[0].close".into()
            }
        );
        let e = parse(200, &body(r#"{"time":1637452800}"#), "BTC", Histo::Hour).unwrap_err();
        assert!(matches!(e.kind, UpstreamErrorKind::Malformed { .. }), "{e}");
        let e = parse(
            200,
            br#"{"Response":"Success","Data":[]}"#,
            "BTC",
            Histo::Hour,
        )
        .unwrap_err();
        assert!(matches!(e.kind, UpstreamErrorKind::Malformed { .. }), "{e}");
        for garbage in [&b""[..], b"{", b"<html>", b"[1,2]", b"null"] {
            assert!(parse(200, garbage, "BTC", Histo::Day).is_err());
        }
    }

    #[test]
    fn an_empty_series_means_the_data_starts_later() {
        let page = parse(
            200,
            br#"{"Response":"Success","Data":{"Data":[]}}"#,
            "BTC",
            Histo::Hour,
        )
        .unwrap();
        assert!(page.data_starts && page.candles.is_empty() && page.span.is_none());
    }
}
