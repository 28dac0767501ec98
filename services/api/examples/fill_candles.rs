//! Fills a history database for `bench/candles.sh`: `coins` coins (`C000`, `C001`, …, the
//! first one `BTC`) sampled every `step` seconds for `days` days ending at the last UTC
//! midnight, so every range the benchmark asks for is in the past. Written in batches of a
//! few thousand samples through `CandleStore::apply`, as the recorder writes.
//!
//! Usage: `fill_candles <database-url> <coins> <days> <step-seconds>`

use std::time::{SystemTime, UNIX_EPOCH};

use topcoins_history::{Batch, CandleStore, DatabaseUrl, Interval, Observation, Sample, Store};

const SAMPLES_PER_BATCH: usize = 5_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: fill_candles <database-url> <coins> <days> <step-seconds>";
    let mut args = std::env::args().skip(1);
    let url: DatabaseUrl = args.next().ok_or(usage)?.parse()?;
    let coins: usize = args.next().ok_or(usage)?.parse()?;
    let days: i64 = args.next().ok_or(usage)?.parse()?;
    let step: i64 = args.next().ok_or(usage)?.parse::<i64>()? * 1000;
    let store = Store::open(&url).await?;
    store.migrate().await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let end = Interval::D1.bucket_start(now);
    let start = end - days * 86_400_000;
    let symbols: Vec<String> = (0..coins)
        .map(|i| {
            if i == 0 {
                "BTC".to_owned()
            } else {
                format!("C{i:03}")
            }
        })
        .collect();
    const DAY_MS: i64 = 86_400_000;
    let mut batch = Vec::with_capacity(SAMPLES_PER_BATCH);
    let mut written = 0usize;
    let mut t = start;
    let mut rolled = start;
    while t < end {
        for (i, symbol) in symbols.iter().enumerate() {
            // A slow wave per coin: candles with distinct opens, highs, lows and closes.
            let phase = (t / step + i as i64 * 7) % 97;
            batch.push(Sample {
                symbol: symbol.as_str().into(),
                time: t,
                observation: Observation::Price {
                    price_usd: 100.0 + i as f64 + phase as f64 / 10.0,
                    market_cap_usd: Some(1e9),
                },
            });
            if batch.len() == SAMPLES_PER_BATCH {
                store.apply(Batch::from_samples(&batch)).await?;
                written += batch.len();
                batch.clear();
                // Rolled up as the recorder does (here once a day of samples), so the
                // coarser intervals are stored rows, not all read from the minutes.
                if t - rolled >= DAY_MS {
                    store.rollup(t).await?;
                    rolled = t;
                }
            }
        }
        t += step;
    }
    store.apply(Batch::from_samples(&batch)).await?;
    store.rollup(end).await?;
    written += batch.len();
    println!("{written} samples of {coins} coins from {start} to {end}");
    Ok(())
}
