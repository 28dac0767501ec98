//! Recorder lag benchmark: a publisher announces an N-coin price snapshot every second (every
//! price moved), as the price actor does, and a recorder records them; the lag of a notice is
//! from its announcement to the recorder's acknowledgement, which comes after the commit. The
//! acknowledgement is seen from outside, by polling the durable consumer's ack floor every
//! 10 ms (so figures are ±10 ms).
//!
//! `cargo run --release -p topcoins-recorder --example lag -- [sqlite|postgresql] [coins] [seconds]`
//! (defaults sqlite 10000 60). It starts its own nats-server (`NATS_SERVER_BIN`) and, for
//! PostgreSQL, a durable private cluster (`topcoins-testkit`). `bench/recorder.sh` runs both.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use prometheus::Registry;
use time::OffsetDateTime;
use topcoins_bus::{NatsAuth, NatsConfig, SnapshotStore, TraceContext};
use topcoins_history::DatabaseUrl;
use topcoins_schemas::{HashNotice, Kind, PriceSnapshot, PricedCoin, Snapshot};

fn snapshot(coins: usize, round: usize) -> PriceSnapshot {
    PriceSnapshot {
        source: "bench".into(),
        coins: (0..coins)
            .map(|c| PricedCoin {
                id: c.to_string().into(),
                symbol: format!("C{c}").into(),
                name: format!("Coin {c}").into(),
                price_usd: 1.0
                    + c as f64
                    + ((round * 7 + c) % 13) as f64 * 0.01
                    + round as f64 * 1e-6,
                market_cap_usd: Some(1e6 + (c * 1000 + round) as f64),
            })
            .collect(),
    }
}

fn quantiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
        q(0.5),
        q(0.99),
        q(1.0),
        v.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "sqlite".into());
    let coins: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let seconds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(60);

    let nats = topcoins_testkit::NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let _pg;
    let database = match backend.as_str() {
        "sqlite" => DatabaseUrl::Sqlite(dir.path().join("lag.db")),
        "postgresql" => {
            let pg = topcoins_testkit::Postgres::start_durable().await?;
            let url = pg.url().parse()?;
            _pg = pg;
            url
        }
        other => anyhow::bail!("unknown backend {other:?}: sqlite or postgresql"),
    };
    let client = async_nats::connect(nats.url()).await?;
    let store = SnapshotStore::open(client.clone()).await?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The roll-up's period from the environment as `topcoins recorder` reads it (the bench
    // sets one minute, so a run of a few minutes holds several roll-ups).
    let mut config = topcoins_recorder::RecorderConfig::default();
    if let Ok(every) = std::env::var("TOPCOINS_ROLLUP_EVERY") {
        config.rollup_every = humantime::parse_duration(&every)?;
    }
    println!(
        "{backend}: roll-up every {:?} of recorded time",
        config.rollup_every
    );
    let registry = Registry::new();
    let recorder = tokio::spawn(topcoins_recorder::run(
        config,
        database,
        NatsConfig {
            url: nats.url().to_owned(),
            name: "topcoins-recorder".into(),
            auth: NatsAuth::default(),
            stream_replicas: 1,
        },
        registry.clone(),
        None,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));

    let js = jetstream::new(client.clone());
    // The consumer exists once the recorder is consuming.
    let record = loop {
        if let Ok(stream) = js.get_stream(topcoins_bus::subjects::RECORD_STREAM).await
            && stream
                .consumer_info(topcoins_bus::subjects::RECORDER_CONSUMER)
                .await
                .is_ok()
        {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Watches the ack floor: when each sequence was acknowledged.
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0u64);
    let watcher = {
        let record = record.clone();
        tokio::spawn(async move {
            let mut seen = Vec::<(u64, Instant)>::new();
            loop {
                if let Ok(info) = record
                    .consumer_info(topcoins_bus::subjects::RECORDER_CONSUMER)
                    .await
                {
                    let floor = info.ack_floor.stream_sequence;
                    if seen.last().is_none_or(|(s, _)| *s < floor) {
                        seen.push((floor, Instant::now()));
                        acked_tx.send_replace(floor);
                    }
                }
                if acked_tx.is_closed() {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut published = Vec::new();
    let mut publish_ms = Vec::new();
    let mut follows = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for round in 0..seconds {
        tick.tick().await;
        let (bytes, hash) = snapshot(coins, round).encode();
        let started = Instant::now();
        store.put_kind(Kind::PRICES, hash, &bytes).await?;
        let notice = HashNotice {
            hash,
            as_of: OffsetDateTime::now_utc(),
            count: coins as u64,
            source: "bench".into(),
            follows: Some(follows),
        };
        follows = store
            .announce(Kind::PRICES, &notice, &TraceContext::new())
            .await?;
        publish_ms.push(started.elapsed().as_secs_f64() * 1e3);
        published.push((follows, started));
    }
    // Wait for the last one.
    let last = follows;
    let mut acked = acked_rx;
    tokio::time::timeout(Duration::from_secs(120), acked.wait_for(|a| *a >= last)).await??;
    drop(acked);
    let seen = watcher.await?;
    let mut lags = Vec::new();
    for (sequence, at) in &published {
        let (_, when) = seen
            .iter()
            .find(|(s, _)| s >= sequence)
            .expect("every notice acknowledged");
        lags.push(when.duration_since(*at).as_secs_f64() * 1e3);
    }
    // The first few seconds include the recorder's start; they are reported, not dropped.
    println!("{backend}: {coins} coins, one snapshot a second for {seconds} s");
    println!(
        "{backend}: store + announce (publisher)  {}",
        quantiles(publish_ms)
    );
    println!(
        "{backend}: recorder lag (announce to ack) {}",
        quantiles(lags)
    );
    // The roll-ups that ran meanwhile, from the recorder's own histogram.
    for family in registry.gather() {
        if family.name() == "topcoins_recorder_rollup_seconds" {
            for m in family.get_metric() {
                let h = m.get_histogram();
                let n = h.get_sample_count();
                println!(
                    "{backend}: roll-ups during the run: {n}, mean {:.0} ms",
                    if n > 0 {
                        h.get_sample_sum() / n as f64 * 1e3
                    } else {
                        0.0
                    }
                );
            }
        }
    }
    let _ = stop.send(true);
    let _ = recorder.await;
    Ok(())
}
