//! A page of candles as the API serves it: the open bucket brought up to the latest prices
//! notice ([`overlay`]), and the bytes of the JSON and CSV bodies ([`body`]).
//!
//! **What `volume` is.** A backfilled candle has the provider's volumes for its bucket; a
//! recorded one has only what the ranking snapshots say, a rolling 24 h volume. So `volume`
//! is, in USD: for a backfilled candle, the provider's `volumeto` (USD traded in the bucket);
//! for a recorded one, the coin's 24 h volume at the bucket's last ranking sample (`null`
//! when none fell in it). The OpenAPI description says the same.

use bytes::{BufMut, BytesMut};
use topcoins_history::{Candle, Cursor, Interval, Observation, Page, Sample, Source};
use topcoins_schemas::api::{CandleRow, CandlesMeta, CandlesResponse};

use crate::query::Format;

pub const CSV_HEADER: &str = "Time,Open,High,Low,Close,Volume\n";

/// The USD volume a candle is served with (see the module docs).
pub fn volume(c: &Candle) -> Option<f64> {
    match c.source {
        Source::Recorded => c.ranked.and_then(|r| r.volume_24h_usd),
        Source::CryptoCompare => c.volume_to,
    }
}

/// A price the node holds now: what the latest prices notice said of one coin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current {
    /// The notice's `as_of`, Unix ms: the time the recorder stamps its sample with.
    pub time: i64,
    pub price_usd: f64,
    pub market_cap_usd: Option<f64>,
}

/// Brings a page up to `current`, the sample the recorder is about to write (or has just):
/// merged into the page's last candle when that is the sample's bucket, or a candle of its
/// own after it. Only the last page of a range (no `next_cursor`) and only a bucket inside
/// `lower..to` take it; a page already `limit` long instead gets a cursor to a next page,
/// which will hold the new candle. The merge is the store's own ([`Candle::merge`]), so the
/// candle served equals the one the recorder commits for the same samples.
pub fn overlay(
    page: &mut Page,
    symbol: &str,
    interval: Interval,
    (lower, to): (i64, i64),
    limit: usize,
    current: Current,
) {
    if page.next_cursor.is_some() {
        return;
    }
    let bucket = interval.bucket_start(current.time);
    if bucket < lower || bucket >= to {
        return;
    }
    let sample = Sample {
        symbol: topcoins_history::symbol_key(symbol),
        time: current.time,
        observation: Observation::Price {
            price_usd: current.price_usd,
            market_cap_usd: current.market_cap_usd,
        },
    };
    let candle = Candle::of_sample(&sample, interval);
    let full = page.candles.len() >= limit;
    match page.candles.last_mut() {
        Some(last) if last.time == bucket => last.merge(&candle),
        // The record is ahead of this node (it has a later notice's sample): nothing to add.
        Some(last) if last.time > bucket => {}
        Some(last) if full => page.next_cursor = Some(Cursor(last.time)),
        _ => page.candles.push(candle),
    }
}

/// The body of a page, in `format`.
pub fn body(page: &Page, symbol: &str, interval: Interval, format: Format) -> Vec<u8> {
    match format {
        Format::Json => {
            let response = CandlesResponse {
                data: page
                    .candles
                    .iter()
                    .filter_map(|c| {
                        let p = c.price?;
                        Some(CandleRow {
                            time: c.time,
                            open: p.open,
                            high: p.high,
                            low: p.low,
                            close: p.close,
                            volume: volume(c),
                        })
                    })
                    .collect(),
                meta: CandlesMeta {
                    symbol: topcoins_history::symbol_key(symbol).into_string(),
                    interval: interval.as_str().to_owned(),
                    next_cursor: page.next_cursor.map(|c| c.to_string()),
                },
            };
            serde_json::to_vec(&response).expect("a response serialises")
        }
        Format::Csv => {
            let mut out = BytesMut::with_capacity(CSV_HEADER.len() + page.candles.len() * 64);
            out.put_slice(CSV_HEADER.as_bytes());
            let number = |out: &mut BytesMut, v: f64| {
                out.put_slice(serde_json::to_string(&v).expect("finite").as_bytes())
            };
            for c in &page.candles {
                let Some(p) = c.price else { continue };
                out.put_slice(c.time.to_string().as_bytes());
                for v in [p.open, p.high, p.low, p.close] {
                    out.put_u8(b',');
                    number(&mut out, v);
                }
                out.put_u8(b',');
                if let Some(v) = volume(c) {
                    number(&mut out, v);
                }
                out.put_u8(b'\n');
            }
            out.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use topcoins_history::{Batch, Ohlc};

    use super::*;

    const T: i64 = 1_764_547_200_000;
    const M5: i64 = 300_000;

    fn recorded(time: i64, prices: &[f64]) -> Candle {
        let samples: Vec<Sample> = prices
            .iter()
            .enumerate()
            .map(|(i, p)| Sample {
                symbol: "BTC".into(),
                time: time + i as i64 * 1000,
                observation: Observation::Price {
                    price_usd: *p,
                    market_cap_usd: None,
                },
            })
            .collect();
        Batch::from_samples(&samples)
            .every_interval()
            .into_iter()
            .find(|c| c.interval == Interval::M5)
            .unwrap()
    }

    fn page(candles: Vec<Candle>) -> Page {
        Page {
            candles,
            next_cursor: None,
        }
    }

    fn now(time: i64, price_usd: f64) -> Current {
        Current {
            time,
            price_usd,
            market_cap_usd: None,
        }
    }

    fn ohlc(c: &Candle) -> (f64, f64, f64, f64) {
        let p = c.price.unwrap();
        (p.open, p.high, p.low, p.close)
    }

    #[test]
    fn the_open_bucket_takes_the_latest_price() {
        let range = (T, T + 3 * M5);
        // Merged into the last candle when it is the sample's bucket.
        let mut p = page(vec![recorded(T, &[10.0]), recorded(T + M5, &[11.0, 12.0])]);
        overlay(
            &mut p,
            "btc",
            Interval::M5,
            range,
            10,
            now(T + M5 + 60_000, 15.0),
        );
        assert_eq!(p.candles.len(), 2);
        assert_eq!(ohlc(&p.candles[1]), (11.0, 15.0, 11.0, 15.0));
        // A candle of its own when the record has none for the bucket yet.
        let mut p = page(vec![recorded(T, &[10.0])]);
        overlay(
            &mut p,
            "btc",
            Interval::M5,
            range,
            10,
            now(T + 2 * M5 + 1, 9.0),
        );
        assert_eq!(p.candles.len(), 2);
        assert_eq!(p.candles[1].time, T + 2 * M5);
        assert_eq!(ohlc(&p.candles[1]), (9.0, 9.0, 9.0, 9.0));
        // Nothing outside the range, on a page that is not the last, or behind the record.
        for (mut p, current) in [
            (page(vec![recorded(T, &[10.0])]), now(T + 3 * M5, 1.0)),
            (page(vec![recorded(T, &[10.0])]), now(T - 1, 1.0)),
            (
                Page {
                    candles: vec![recorded(T, &[10.0])],
                    next_cursor: Some(Cursor(T)),
                },
                now(T + M5, 1.0),
            ),
            (page(vec![recorded(T + M5, &[10.0])]), now(T, 1.0)),
        ] {
            let before = p.clone();
            overlay(&mut p, "BTC", Interval::M5, range, 10, current);
            assert_eq!(p, before);
        }
        // A full page points to the next one, which will hold the new candle.
        let mut p = page(vec![recorded(T, &[10.0])]);
        overlay(&mut p, "BTC", Interval::M5, range, 1, now(T + M5, 1.0));
        assert_eq!((p.candles.len(), p.next_cursor), (1, Some(Cursor(T))));
    }

    #[test]
    fn a_recorded_sample_replaces_a_backfilled_candle() {
        let mut backfilled = recorded(T, &[10.0]);
        backfilled.source = Source::CryptoCompare;
        backfilled.price = Some(Ohlc {
            open: 1.0,
            high: 30.0,
            ..backfilled.price.unwrap()
        });
        backfilled.volume_to = Some(5.0);
        assert_eq!(volume(&backfilled), Some(5.0));
        let mut p = page(vec![backfilled]);
        overlay(
            &mut p,
            "BTC",
            Interval::M5,
            (T, T + M5),
            10,
            now(T + 10, 7.0),
        );
        assert_eq!(p.candles[0].source, Source::Recorded);
        assert_eq!(ohlc(&p.candles[0]), (7.0, 7.0, 7.0, 7.0));
    }

    #[test]
    fn bodies() {
        let mut c = recorded(T, &[1.0, 2.5, 0.5, 2.0]);
        c.ranked = Some(topcoins_history::Ranked {
            time: T,
            rank: 1,
            volume_24h_usd: Some(1e9),
        });
        let p = Page {
            candles: vec![c, recorded(T + M5, &[3.0])],
            next_cursor: Some(Cursor(T + M5)),
        };
        let csv = String::from_utf8(body(&p, "btc", Interval::M5, Format::Csv)).unwrap();
        assert_eq!(
            csv,
            format!(
                "{CSV_HEADER}{T},1.0,2.5,0.5,2.0,1000000000.0\n{},3.0,3.0,3.0,3.0,\n",
                T + M5
            )
        );
        let json: CandlesResponse =
            serde_json::from_slice(&body(&p, "btc", Interval::M5, Format::Json)).unwrap();
        assert_eq!(json.meta.symbol, "BTC");
        assert_eq!(json.meta.interval, "5m");
        assert_eq!(json.meta.next_cursor, Some((T + M5).to_string()));
        assert_eq!(json.data[0].volume, Some(1e9));
        assert_eq!(json.data[1].volume, None);
        assert_eq!((json.data[0].low, json.data[0].high), (0.5, 2.5));
    }
}
