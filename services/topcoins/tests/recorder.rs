//! The recorder against a real nats-server and real databases: every notice recorded once,
//! catching up after being away (while the actors prune), a SIGKILLed `topcoins recorder`
//! started again, and PostgreSQL stopped for 30 s. In each case the candles stored equal
//! those of an undisturbed run over the same snapshots: the batches applied directly to a
//! store of their own.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus::Registry;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::process::{Child, Command};
use topcoins::shutdown::Shutdown;
use topcoins_bus::{NatsAuth, NatsConfig, SnapshotStore, TraceContext};
use topcoins_history::{
    Batch, Candle, CandleStore, DatabaseUrl, Interval, MAX_LIMIT, Range, SqliteStore, Store,
};
use topcoins_recorder::RecorderConfig;
use topcoins_schemas::{
    HashNotice, Kind, PriceSnapshot, PricedCoin, RankedCoin, RankingSnapshot, Snapshot,
    SnapshotHash,
};
use topcoins_testkit::{NatsServer, Postgres};

const COINS: usize = 12;
/// Steps of the feed, 13 s apart from 23:45 on: across a day's boundary, so every interval has
/// several buckets (and 1d and 4h two).
const STEP: Duration = Duration::from_secs(13);
const START: OffsetDateTime = datetime!(2026-11-30 23:45:00 UTC);

/// One snapshot of the feed, with what an undisturbed recorder makes of it.
struct Step {
    kind: Kind,
    hash: SnapshotHash,
    bytes: Vec<u8>,
    as_of: OffsetDateTime,
    count: usize,
    batch: Batch,
}

fn symbol(c: usize) -> String {
    format!("C{c:02}")
}

/// `n` steps: a price snapshot each, and a ranking snapshot after every fourth.
fn feed(n: usize) -> Vec<Step> {
    feed_of(n, COINS)
}

/// [`feed`] with `coins` coins.
fn feed_of(n: usize, coins_n: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 0..n {
        let as_of = START + STEP * i as u32;
        let ms = topcoins_recorder::unix_ms(as_of);
        let coins: Vec<PricedCoin> = (0..coins_n)
            .map(|c| {
                // A walk that goes up and down, different for every coin.
                let wiggle = ((i * (c + 3)) % 17) as f64 - 8.0;
                PricedCoin {
                    id: (c + 1).to_string().into(),
                    symbol: symbol(c).into(),
                    name: format!("Coin {c}").into(),
                    price_usd: 100.0 * (c + 1) as f64 + wiggle,
                    market_cap_usd: Some(1e9 / (c + 1) as f64 + i as f64),
                }
            })
            .collect();
        let prices = PriceSnapshot {
            source: "test".into(),
            coins,
        };
        let (bytes, hash) = prices.encode();
        steps.push(Step {
            kind: Kind::PRICES,
            hash,
            bytes,
            as_of,
            count: coins_n,
            batch: Batch::from_prices(&prices, ms),
        });
        if i % 4 == 3 {
            let mut order: Vec<usize> = (0..coins_n).collect();
            order.rotate_left(i % coins_n);
            let ranking = RankingSnapshot {
                source: "test".into(),
                coins: order
                    .iter()
                    .map(|&c| RankedCoin {
                        id: symbol(c).into(),
                        symbol: symbol(c).into(),
                        name: format!("Coin {c}").into(),
                        volume_24h_usd: Some(1e6 * (c + i) as f64),
                        price_usd: None,
                    })
                    .collect(),
            };
            let (bytes, hash) = ranking.encode();
            steps.push(Step {
                kind: Kind::RANKING,
                hash,
                bytes,
                as_of: as_of + Duration::from_millis(500),
                count: coins_n,
                batch: Batch::from_ranking(&ranking, ms + 500),
            });
        }
    }
    steps
}

/// Announces steps as an actor does: the snapshot stored, then its notice, fenced on the last.
struct Publisher {
    store: SnapshotStore,
    last: HashMap<Kind, u64>,
    latest: HashMap<Kind, SnapshotHash>,
}

impl Publisher {
    async fn new(url: &str) -> Result<Self> {
        let client = async_nats::connect(url).await?;
        Ok(Self {
            store: SnapshotStore::open(client).await?,
            last: HashMap::new(),
            latest: HashMap::new(),
        })
    }

    async fn publish(&mut self, step: &Step) -> Result<()> {
        self.store
            .put_kind(step.kind, step.hash, &step.bytes)
            .await?;
        let notice = HashNotice {
            hash: step.hash,
            as_of: step.as_of,
            count: step.count as u64,
            source: "test".into(),
            follows: Some(self.last.get(&step.kind).copied().unwrap_or(0)),
        };
        let sequence = self
            .store
            .announce(step.kind, &notice, &TraceContext::new())
            .await?;
        self.last.insert(step.kind, sequence);
        self.latest.insert(step.kind, step.hash);
        Ok(())
    }

    /// What the actors' prune step does after each cycle, with no retention at all: every
    /// snapshot but the current ones goes, unless the recorder still needs it.
    async fn prune_everything_old(&self) -> Result<usize> {
        let keep: Vec<SnapshotHash> = self.latest.values().copied().collect();
        Ok(self.store.prune(&keep, Duration::ZERO).await?)
    }
}

/// Every candle with a price a store holds for the feed's coins, in key order.
async fn dump(store: &impl CandleStore) -> Result<Vec<Candle>> {
    dump_of(store, COINS).await
}

/// [`dump`] for a feed of `coins` coins.
async fn dump_of(store: &impl CandleStore, coins: usize) -> Result<Vec<Candle>> {
    let mut all = Vec::new();
    for c in 0..coins {
        for interval in Interval::ALL {
            let page = store
                .range(&Range {
                    symbol: symbol(c),
                    interval,
                    from: 0,
                    to: i64::MAX,
                    limit: MAX_LIMIT,
                    cursor: None,
                })
                .await?;
            assert!(page.next_cursor.is_none(), "more candles than one page");
            all.extend(page.candles);
        }
    }
    Ok(all)
}

/// The candles of an undisturbed run over `steps`: each batch applied once, directly.
async fn reference(steps: &[Step]) -> Result<(tempfile::TempDir, SqliteStore)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("reference.db")).await?;
    store.migrate().await?;
    for step in steps {
        store.apply(step.batch.clone()).await?;
    }
    Ok((dir, store))
}

/// Waits until `store` holds exactly `expected`; on timeout, says how they differ.
async fn wait_for_equal(
    what: &str,
    store: &impl CandleStore,
    expected: &[Candle],
    within: Duration,
) -> Result<()> {
    wait_for_equal_of(what, store, expected, within, COINS).await
}

/// [`wait_for_equal`] for a feed of `coins` coins.
async fn wait_for_equal_of(
    what: &str,
    store: &impl CandleStore,
    expected: &[Candle],
    within: Duration,
    coins: usize,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = match dump_of(store, coins).await {
            Ok(got) => got,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if got == expected {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let missing = expected.iter().filter(|c| !got.contains(c)).count();
            let extra = got.iter().filter(|c| !expected.contains(c)).count();
            let first = expected.iter().find(|c| !got.contains(c));
            bail!(
                "{what}: {} candles stored, {} expected; {missing} expected ones missing or different, \
                 {extra} not expected; first missing: {first:?}",
                got.len(),
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn nats_config(url: &str) -> NatsConfig {
    NatsConfig {
        url: url.to_owned(),
        name: "topcoins-recorder".into(),
        auth: NatsAuth::default(),
        stream_replicas: 1,
    }
}

/// A recorder in this process, with its own shutdown and registry.
struct InProcess {
    shutdown: Shutdown,
    registry: Registry,
    task: tokio::task::JoinHandle<()>,
}

fn start_in_process(nats: &str, database: DatabaseUrl) -> InProcess {
    let shutdown = Shutdown::new();
    let registry = Registry::new();
    let config = RecorderConfig {
        ack_wait: Duration::from_secs(2),
        ..RecorderConfig::default()
    };
    let run = topcoins_recorder::run(
        config,
        database,
        nats_config(nats),
        registry.clone(),
        None,
        shutdown.wait(),
    );
    let task = tokio::spawn(async move {
        run.await.expect("recorder runs");
    });
    InProcess {
        shutdown,
        registry,
        task,
    }
}

impl InProcess {
    async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(common::WAIT, self.task).await;
    }
}

#[tokio::test]
async fn every_notice_is_recorded_once_as_an_undisturbed_run_would() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("history.db");
    let steps = feed(40);
    let (_ref_dir, expected) = reference(&steps).await?;
    let expected = dump(&expected).await?;
    // Every interval has more than one bucket, and rank and volume are there.
    assert!(expected.len() > COINS * 6, "{} candles", expected.len());
    assert!(expected.iter().any(|c| c.ranked.is_some()));

    let recorder = start_in_process(nats.url(), DatabaseUrl::Sqlite(path.clone()));
    let mut publisher = Publisher::new(nats.url()).await?;
    // A first notice before the consumer exists is where a new recorder starts (the last of
    // its kind); wait until it is in so that nothing is published before the consumer.
    publisher.publish(&steps[0]).await?;
    let store = open_sqlite(&path).await?;
    common::eventually("the first notice recorded", || async {
        Ok((common::metric(
            &recorder.registry,
            "topcoins_recorder_notices_total",
            &[("outcome", "recorded")],
        ) >= 1.0)
            .then_some(()))
    })
    .await?;
    for step in &steps[1..] {
        publisher.publish(step).await?;
    }
    wait_for_equal("recorded", &store, &expected, common::WAIT).await?;
    // Each notice recorded once: counted after its ack, so waited for; a notice handed out
    // again (a lapsed ack timer on a busy machine) is recorded again, harmlessly, and counted
    // as redelivered.
    let registry = &recorder.registry;
    let once = || {
        common::metric(
            registry,
            "topcoins_recorder_notices_total",
            &[("outcome", "recorded")],
        ) - common::metric(registry, "topcoins_recorder_redelivered_total", &[])
    };
    common::eventually("every notice counted", || async {
        Ok((once() >= steps.len() as f64).then_some(()))
    })
    .await?;
    assert_eq!(once(), steps.len() as f64, "each notice recorded once");
    recorder.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_recorder_that_was_away_catches_up_while_the_actors_prune() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("history.db");
    let steps = feed(36);
    let (_ref_dir, expected) = reference(&steps).await?;
    let expected = dump(&expected).await?;
    let (first, rest) = steps.split_at(12);
    let (_prefix_dir, prefix) = reference(first).await?;
    let prefix = dump(&prefix).await?;

    let mut publisher = Publisher::new(nats.url()).await?;
    publisher.publish(&first[0]).await?;
    let recorder = start_in_process(nats.url(), DatabaseUrl::Sqlite(path.clone()));
    let store = open_sqlite(&path).await?;
    common::eventually("the first notice recorded", || async {
        Ok((common::metric(
            &recorder.registry,
            "topcoins_recorder_notices_total",
            &[("outcome", "recorded")],
        ) >= 1.0)
            .then_some(()))
    })
    .await?;
    for step in &first[1..] {
        publisher.publish(step).await?;
    }
    wait_for_equal("before going away", &store, &prefix, common::WAIT).await?;
    recorder.stop().await;

    // Away: the rest is announced, and after each announcement the actors prune with no
    // retention at all. What the recorder has not taken must survive.
    // The first of them is stored well before its notice (an announcement that failed and
    // was retried a cycle later): it is spared by its hash, not by its age.
    publisher
        .store
        .put_kind(rest[0].kind, rest[0].hash, &rest[0].bytes)
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for step in rest {
        publisher.publish(step).await?;
        publisher.prune_everything_old().await?;
    }
    let floor = publisher.store.recorder_floor().await?;
    assert!(
        floor.is_some(),
        "the recorder is behind, and the store knows it"
    );

    let recorder = start_in_process(nats.url(), DatabaseUrl::Sqlite(path.clone()));
    wait_for_equal("after catching up", &store, &expected, common::WAIT).await?;
    assert_eq!(
        common::metric(
            &recorder.registry,
            "topcoins_recorder_notices_total",
            &[("outcome", "missing_snapshot")]
        ),
        0.0
    );
    recorder.stop().await;
    // Caught up, nothing is spared any more: the same prune now deletes the old snapshots
    // (so the survival above was the recorder's doing, not a prune that deletes nothing).
    common::eventually("the floor to clear", || async {
        Ok(publisher
            .store
            .recorder_floor()
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    assert!(publisher.prune_everything_old().await? > 0);
    Ok(())
}

/// `topcoins recorder`, the real binary.
fn spawn_recorder(nats: &str, database: &str) -> Result<(Child, common::Logs)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_topcoins"));
    command
        .arg("recorder")
        .env("NATS_URL", nats)
        .env("TOPCOINS_DATABASE_URL", database)
        .env("TOPCOINS_RECORDER_ACK_WAIT", "2s")
        .env("TOPCOINS_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null());
    common::Logs::spawn(&mut command)
}

/// Opens the file the recorder writes, retrying while the recorder creates and migrates it
/// (SQLite answers "locked" to a second opener meanwhile).
async fn open_sqlite(path: &std::path::Path) -> Result<SqliteStore> {
    common::eventually("the history file to open", || async {
        Ok(SqliteStore::open(path).await.ok())
    })
    .await
}

/// Waits until `store` has at least one candle (the recorder is under way).
async fn wait_for_progress(store: &impl CandleStore) -> Result<()> {
    common::eventually("the recorder to write", || async {
        Ok((!dump(store).await?.is_empty()).then_some(()))
    })
    .await
}

#[tokio::test]
async fn a_killed_recorder_started_again_leaves_no_gap_and_no_duplicate() -> Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("history.db");
    let url = format!("sqlite://{}", path.display());
    // Snapshots big enough that a write takes a while, published faster than they are
    // written: the kill lands with a group in hand, written or not, acknowledged or not.
    const KILL_COINS: usize = 1500;
    let steps = feed_of(60, KILL_COINS);
    let (_ref_dir, expected) = reference(&steps).await?;
    let expected = dump_of(&expected, KILL_COINS).await?;

    let mut publisher = Publisher::new(nats.url()).await?;
    publisher.publish(&steps[0]).await?;
    let (mut child, mut logs) = spawn_recorder(nats.url(), &url)?;
    logs.event("recorder: consuming notices").await?;
    let store = open_sqlite(&path).await?;
    wait_for_progress(&store).await?;
    // Killed in the middle of a run: notices keep coming while it is dead.
    // A burst, then the kill: the recorder is working through a backlog, a group in hand.
    for (i, step) in steps[1..].iter().enumerate() {
        publisher.publish(step).await?;
        if i == 25 {
            child.kill().await.context("SIGKILL")?;
        }
    }
    let (_child, mut logs) = spawn_recorder(nats.url(), &url)?;
    logs.event("recorder: consuming notices").await?;
    wait_for_equal_of(
        "after the restart",
        &store,
        &expected,
        Duration::from_secs(60),
        KILL_COINS,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn postgresql_stopped_for_30_seconds_leaves_no_gap_and_no_duplicate() -> Result<()> {
    let nats = NatsServer::start().await?;
    let mut pg = Postgres::start().await?;
    let url = pg.url();
    let steps = feed(50);
    let (_ref_dir, expected) = reference(&steps).await?;
    let expected = dump(&expected).await?;

    let mut publisher = Publisher::new(nats.url()).await?;
    publisher.publish(&steps[0]).await?;
    let (_child, mut logs) = spawn_recorder(nats.url(), &url)?;
    logs.event("recorder: consuming notices").await?;
    let store = Store::open(&url.parse()?).await?;
    wait_for_progress(&store).await?;
    let (before, during) = steps[1..].split_at(10);
    for step in before {
        publisher.publish(step).await?;
    }
    pg.stop().await;
    let stopped = tokio::time::Instant::now();
    // Notices keep coming for the 30 s the database is away.
    let gap = Duration::from_secs(30) / during.len() as u32;
    for step in during {
        publisher.publish(step).await?;
        tokio::time::sleep(gap).await;
    }
    tokio::time::sleep_until(stopped + Duration::from_secs(30)).await;
    pg.start_again().await?;
    wait_for_equal(
        "after the database came back",
        &store,
        &expected,
        Duration::from_secs(60),
    )
    .await?;
    let text = logs.text();
    assert!(
        text.contains("database write failed"),
        "the recorder saw the database go away"
    );
    Ok(())
}
