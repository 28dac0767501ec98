//! Ingest benchmark: one N-coin price snapshot into all six intervals, on SQLite and on a real
//! PostgreSQL (started here with `topcoins-testkit`, durable settings: fsync on), as the
//! recorder writes it (`Batch::from_prices` then one `CandleStore::apply`: the `1m` rows,
//! the coarser intervals answering at once through the read overlay), and the roll-up that
//! writes the coarser rows. Also the database bytes per coin per day, measured from a run of
//! one-minute snapshots rolled up every five minutes.
//!
//! `cargo run --release -p topcoins-recorder --example ingest -- [coins] [rounds]`
//! (defaults 10000 and 30); `bench/ingest.sh` runs it and records the output.
//!
//! Printed per backend: the time to build the batch, the first apply (every row new: plain
//! inserts, the same-run baseline) and the later applies (every row merged with the one there,
//! as in a running recorder), then half an hour of one-minute polls with a roll-up every five
//! minutes (each poll's apply, each roll-up), and snapshots of a minute already rolled up
//! (written into all six intervals: the cost of every snapshot without the roll-up), as
//! p50 / p99 / max in ms.

use std::time::{Duration, Instant};

use topcoins_history::{Batch, CandleStore, DatabaseUrl, Store};
use topcoins_schemas::{PriceSnapshot, PricedCoin};

fn snapshot(coins: usize, round: usize) -> PriceSnapshot {
    PriceSnapshot {
        source: "bench".into(),
        coins: (0..coins)
            .map(|c| PricedCoin {
                id: c.to_string().into(),
                symbol: format!("C{c}").into(),
                name: format!("Coin {c}").into(),
                price_usd: 1.0 + c as f64 + ((round * 7 + c) % 13) as f64 * 0.01,
                market_cap_usd: Some(1e6 + (c * 1000 + round) as f64),
            })
            .collect(),
    }
}

fn quantiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let q = |p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        q(0.5),
        q(0.99),
        q(1.0),
        v.len()
    )
}

/// One minute apart, from a fixed midnight: a `1m` bucket each.
const T0: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

async fn ingest(name: &str, store: &Store, coins: usize, rounds: usize) -> anyhow::Result<()> {
    store.migrate().await?;
    let mut build = Vec::new();
    let mut first = Vec::new();
    let mut merged = Vec::new();
    for round in 0..rounds {
        let snap = snapshot(coins, round);
        // Every round in the same minute: each apply merges into the rows of the first.
        let as_of = T0 + 30_000 + round as i64;
        let started = Instant::now();
        let batch = Batch::from_prices(&snap, as_of);
        build.push(started.elapsed());
        let rows = batch.len();
        let started = Instant::now();
        store.apply(batch).await?;
        let took = started.elapsed();
        if round == 0 {
            first.push(took);
            println!("{name}: {coins} coins, {rows} 1m candle rows per snapshot");
        } else {
            merged.push(took);
        }
    }
    println!("{name}: build batch  {}", quantiles(build));
    println!(
        "{name}: first apply  {} (all rows new: the insert baseline)",
        quantiles(first)
    );
    println!("{name}: merge apply  {}", quantiles(merged));

    // One-minute polls for half an hour (after `INGEST_HISTORY_MINUTES` more of them, not
    // measured: how deep each coin's history already is), rolled up every five minutes as
    // the recorder does by default: each poll makes new 1m rows; each roll-up merges five
    // minutes into the coarser intervals.
    let history: i64 = std::env::var("INGEST_HISTORY_MINUTES")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0);
    for minute in 1..=history {
        let snap = snapshot(coins, minute as usize);
        store
            .apply(Batch::from_prices(&snap, T0 + minute * 60_000 + 30_000))
            .await?;
        if minute % 5 == 0 {
            store.rollup(T0 + (minute + 1) * 60_000).await?;
        }
    }
    if history > 0 {
        println!("{name}: after {history} minutes of history");
    }
    let mut polls = Vec::new();
    let mut rollups = Vec::new();
    let mut rolled_rows = 0;
    for minute in history + 1..=history + 30 {
        let snap = snapshot(coins, minute as usize);
        let batch = Batch::from_prices(&snap, T0 + minute * 60_000 + 30_000);
        let started = Instant::now();
        store.apply(batch).await?;
        polls.push(started.elapsed());
        if minute % 5 == 0 {
            let started = Instant::now();
            let done = store.rollup(T0 + (minute + 1) * 60_000).await?;
            rollups.push(started.elapsed());
            rolled_rows = done.rows;
        }
    }
    println!("{name}: new-minute apply  {}", quantiles(polls));
    println!(
        "{name}: roll-up of 5 minutes  {} ({rolled_rows} coarser rows each)",
        quantiles(rollups)
    );
    // A snapshot of a minute already rolled up (a late one) is written into all six
    // intervals, which is what every snapshot cost before the roll-up.
    let mut late = Vec::new();
    for round in 0..rounds.min(10) {
        let snap = snapshot(coins, 100 + round);
        let batch = Batch::from_prices(&snap, T0 + 60_000 + 40_000 + round as i64);
        let started = Instant::now();
        store.apply(batch).await?;
        late.push(started.elapsed());
    }
    println!(
        "{name}: late apply, all six intervals  {} (each snapshot's cost without the roll-up)",
        quantiles(late)
    );
    Ok(())
}

/// Bytes per coin per day: `minutes` one-minute snapshots of `coins` coins into an empty
/// database, its size measured before and after, scaled to a day.
async fn footprint(
    name: &str,
    store: &Store,
    coins: usize,
    minutes: usize,
    size: impl AsyncFn() -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    store.migrate().await?;
    let before = size().await?;
    for m in 0..minutes {
        let snap = snapshot(coins, m);
        store
            .apply(Batch::from_prices(&snap, T0 + m as i64 * 60_000))
            .await?;
        if m % 5 == 4 {
            store.rollup(T0 + (m as i64 + 1) * 60_000).await?;
        }
    }
    store.rollup(T0 + minutes as i64 * 60_000).await?;
    let after = size().await?;
    let per_coin_minute = (after - before) as f64 / (coins * minutes) as f64;
    println!(
        "{name}: {} bytes for {coins} coins x {minutes} one-minute snapshots: {:.0} bytes per coin \
         per day of one-minute polls (all six intervals, before retention)",
        after - before,
        per_coin_minute * 1440.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let coins: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rounds: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(30);
    // Which parts to run: `sqlite`, `postgresql`, `footprint` (default all), comma-separated.
    let parts = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "sqlite,postgresql,footprint".into());
    let run = |part: &str| parts.split(',').any(|p| p == part);
    let dir = tempfile::tempdir()?;

    if run("sqlite") {
        let path = dir.path().join("ingest.db");
        let sqlite = Store::open(&DatabaseUrl::Sqlite(path.clone())).await?;
        ingest("sqlite", &sqlite, coins, rounds).await?;
    }
    if run("postgresql") {
        let pg = topcoins_testkit::Postgres::start_durable().await?;
        let postgres = Store::open(&pg.url().parse()?).await?;
        ingest("postgresql", &postgres, coins, rounds).await?;
    }
    if !run("footprint") {
        return Ok(());
    }

    // Footprint: 1000 coins for two hours of one-minute snapshots, in fresh databases.
    let (fcoins, minutes) = (1000, 120);
    let path = dir.path().join("footprint.db");
    let sqlite = Store::open(&DatabaseUrl::Sqlite(path.clone())).await?;
    let file = path.clone();
    footprint("sqlite", &sqlite, fcoins, minutes, async || {
        // The main file after a checkpoint (the WAL folded in).
        let conn = rusqlite::Connection::open(&file)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(std::fs::metadata(&file)?.len())
    })
    .await?;
    let pg2 = topcoins_testkit::Postgres::start_durable().await?;
    let url = pg2.url();
    let postgres = Store::open(&url.parse()?).await?;
    footprint("postgresql", &postgres, fcoins, minutes, async || {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute("VACUUM candles").await?;
        let row = client
            .query_one("SELECT pg_total_relation_size('candles')", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    })
    .await?;
    Ok(())
}
