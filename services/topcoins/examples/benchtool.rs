//! Measurements the `bench/` scripts cannot make precisely from a shell.
//!
//! - `benchtool propagation <nats-url> <rounds> <node-url>...`: for each round, store a changed
//!   price snapshot, then publish its notice as the price actor would, and time until every
//!   node serves the new ETag (conditional GETs, polled in turn every 250 µs). Baseline in the
//!   same run: a bare NATS publish → subscribe.
//! - `benchtool first-ok <url> <command> [args...]`: start the command and time until `url`
//!   answers 200 (`{addr}` in the command stands for the URL's host:port); prints the child's
//!   pid and the time in ms, and leaves the child running.
//! - `benchtool ranks <metrics> <samples> <rounds>`: times the ranks actor's work for
//!   `metrics` tracked metrics (7 per pair, on two exchanges) holding `samples` samples each:
//!   `Samples::ranks` (every metric's standard deviation over its window, ranked within its
//!   kind), then the ranks snapshot made and encoded (canonical bytes and blake3), as
//!   `RankSource` does each interval.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use time::OffsetDateTime;
use topcoins_bus::{NatsConfig, SnapshotStore, connect, subjects};
use topcoins_schemas::{HashNotice, Kind, PriceSnapshot, Snapshot};

/// The allocator the `topcoins` binary uses, so `fetch` times what a node does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 0.99);
    println!(
        "{name}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        ms.len(),
        percentile(&ms, 0.5),
        p99,
        ms[ms.len() - 1]
    );
    p99
}

/// Between two turns of polls. The moment a node is seen to change is at most this plus one
/// turn of requests after it did. `std::thread::sleep`: tokio's timer counts whole milliseconds,
/// so its 250 µs sleep lasts 1-2 ms.
const POLL_PAUSE: Duration = Duration::from_micros(250);

/// A kept-alive HTTP/1.1 connection to one node, asking for one path. Written by hand to keep
/// the client's own cost per poll (and so its timing error) small.
struct Poller {
    reader: BufReader<TcpStream>,
    request_head: String,
}

impl Poller {
    fn connect(base: &str, path: &str) -> Result<Self> {
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            request_head: format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n"),
        })
    }

    /// One GET, conditional on `etag` if given: the ETag of a 200, or `None` for a 304.
    fn poll(&mut self, etag: Option<&str>) -> Result<Option<String>> {
        let mut request = self.request_head.clone();
        if let Some(etag) = etag {
            request.push_str(&format!("If-None-Match: {etag}\r\n"));
        }
        request.push_str("\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut tag) = (0u64, None);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("the node closed the connection");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                } else if name.eq_ignore_ascii_case("etag") {
                    tag = Some(value.trim().to_owned());
                }
            }
        }
        std::io::copy(&mut (&mut self.reader).take(length), &mut std::io::sink())?;
        match status {
            200 => Ok(Some(tag.context("a 200 without an etag")?)),
            304 => Ok(None),
            other => bail!("status {other}"),
        }
    }
}

async fn open(nats_url: &str) -> Result<(async_nats::Client, SnapshotStore)> {
    let config = NatsConfig {
        url: nats_url.to_owned(),
        name: "benchtool".into(),
        ..Default::default()
    };
    let (client, _) = connect(&config).await?;
    client.flush().await?;
    let store = SnapshotStore::open(client.clone()).await?;
    Ok((client, store))
}

async fn propagation(nats_url: &str, rounds: usize, nodes: &[String]) -> Result<()> {
    topcoins_upstream::init_tls();
    let (client, store) = open(nats_url).await?;
    let latest = store
        .latest(Kind::PRICES)
        .await?
        .context("no prices notice yet: run the actors first")?;
    let mut follows = latest.sequence;
    let latest = latest.notice;
    let mut snapshot = PriceSnapshot::decode(&store.fetch(latest.hash).await?)?;
    let mut pollers = nodes
        .iter()
        .map(|n| Poller::connect(n, "/?limit=200"))
        .collect::<Result<Vec<_>>>()?;

    // Baseline: NATS publish → subscribe of a notice-sized message, same connection setup.
    let mut sub = client.subscribe(subjects::BENCH_BASELINE).await?;
    client.flush().await?;
    let mut base = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t0 = Instant::now();
        client
            .publish(subjects::BENCH_BASELINE, latest.to_bytes().into())
            .await?;
        client.flush().await?;
        sub.next().await.context("baseline message")?;
        base.push(t0.elapsed().as_secs_f64() * 1e3);
    }

    let mut times = Vec::with_capacity(rounds);
    let mut from_put = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let before = pollers
            .iter_mut()
            .map(|p| p.poll(None)?.context("a 200 with an etag"))
            .collect::<Result<Vec<String>>>()?;
        snapshot.coins[0].price_usd *= 1.0 + 1e-6 * (round as f64 + 1.0);
        let snapshot = PriceSnapshot::new(snapshot.source.clone(), snapshot.coins.clone())?;
        let (bytes, hash) = snapshot.encode();
        // As an actor does: store (which also pushes the bytes to the nodes), then announce.
        let put_at = Instant::now();
        store.put_kind(Kind::PRICES, hash, &bytes).await?;
        let notice = HashNotice {
            hash,
            as_of: OffsetDateTime::now_utc(),
            count: snapshot.len() as u64,
            source: snapshot.source.clone(),
            follows: Some(follows),
        };
        let t0 = Instant::now();
        follows = store
            .announce(Kind::PRICES, &notice, &topcoins_bus::TraceContext::new())
            .await?;
        // One thread asks the nodes in turn, each with `If-None-Match: <its old ETag>` over a
        // kept-alive connection (a 304 while unchanged), and notes the moment each one first
        // answers 200 with a new ETag. A round's time is that of the last node.
        let last = tokio::task::block_in_place(|| -> Result<Duration> {
            let mut changed: Vec<Option<Duration>> = vec![None; pollers.len()];
            while changed.iter().any(Option::is_none) {
                for (i, poller) in pollers.iter_mut().enumerate() {
                    if changed[i].is_none() && poller.poll(Some(&before[i]))?.is_some() {
                        changed[i] = Some(t0.elapsed());
                    }
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    bail!("nodes did not change within 10 s");
                }
                if changed.iter().any(Option::is_none) {
                    // A client that polls without pause would take a whole core from the nodes
                    // it is timing (there are two here); the pause bounds the error it adds.
                    std::thread::sleep(POLL_PAUSE);
                }
            }
            Ok(changed.into_iter().flatten().max().unwrap_or_default())
        })?;
        times.push(last.as_secs_f64() * 1e3);
        from_put.push((last + (t0 - put_at)).as_secs_f64() * 1e3);
    }
    let base_p99 = summary("nats publish->subscribe (baseline)", base);
    let p99 = summary(
        &format!(
            "notice -> all {} nodes serve the new ETag ({}-coin snapshots of {} bytes)",
            nodes.len(),
            snapshot.len(),
            snapshot.canonical_bytes().len()
        ),
        times,
    );
    summary(
        "the same from the start of the store put (bytes pushed + notice)",
        from_put,
    );
    println!(
        "propagation p99 = {:.1} x baseline p99; target p99 <= 5 ms: {}",
        p99 / base_p99,
        if p99 <= 5.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// How long the parts of taking in a snapshot take: fetch from the store, decode, merge+render.
async fn fetch_times(nats_url: &str, rounds: usize) -> Result<()> {
    let (_client, store) = open(nats_url).await?;
    let prices = store
        .latest(Kind::PRICES)
        .await?
        .context("no prices notice")?
        .notice;
    let ranking = store
        .latest(Kind::RANKING)
        .await?
        .context("no ranking notice")?
        .notice;
    let ranking = std::sync::Arc::new(topcoins_api::merge::Ranked::new(std::sync::Arc::new(
        topcoins_schemas::RankingSnapshot::decode(&store.fetch(ranking.hash).await?)?,
    )));
    let (mut fetch, mut decode, mut merge) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let bytes = store.fetch(prices.hash).await?;
        fetch.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let snapshot = PriceSnapshot::decode(&bytes)?;
        decode.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let prepared = topcoins_api::render::TopList::new(topcoins_api::merge::merge(
            &ranking,
            std::sync::Arc::new(snapshot),
            &Default::default(),
        ));
        merge.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(prepared);
    }
    summary("snapshot fetch (direct get)", fetch);
    summary("decode + validate", decode);
    summary("merge + render", merge);
    Ok(())
}

async fn first_ok(url: &str, command: &[String]) -> Result<()> {
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    // `{addr}` in the command stands for the host:port of `url`.
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| a.replace("{addr}", addr))
        .collect();
    let child = std::process::Command::new(&command[0])
        .args(&args)
        .spawn()
        .context("spawn")?;
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("no 200 from {url} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("{} {:.1}", child.id(), t0.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

fn ranks(metrics: usize, samples: usize, rounds: usize) -> Result<()> {
    use topcoins_exchanges::rank::Samples;
    use topcoins_schemas::{MetricKind, RanksSnapshot};
    let now = 1_764_547_200_000_i64 + 24 * 3600 * 1000;
    let minute = 60_000_i64;
    let mut all = Samples::default();
    let built = Instant::now();
    let mut n = 0;
    'pairs: for p in 0.. {
        let (exchange, pair) = if p % 2 == 0 {
            ("kraken", format!("c{p}-usd"))
        } else {
            ("binance", format!("c{p}-usdt"))
        };
        for kind in MetricKind::ALL {
            if n == metrics {
                break 'pairs;
            }
            n += 1;
            let base = 100.0 + p as f64;
            for i in 0..samples {
                // A deterministic walk: every metric a different deviation.
                let v = base * (1.0 + 0.01 * ((i * (p % 13 + 1)) as f64 / 97.0).sin());
                let t = now - (samples - i) as i64 * minute + 1;
                all.record((exchange, pair.as_str().into(), kind), t, v);
            }
        }
    }
    println!(
        "{metrics} metrics x {samples} samples built in {:.0} ms",
        built.elapsed().as_secs_f64() * 1e3
    );
    let (mut compute, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t0 = Instant::now();
        let ranked = all.ranks(now);
        let t1 = Instant::now();
        let list = topcoins_exchanges::rank::ranked_metrics(ranked);
        let snapshot = RanksSnapshot::new(list).context("a valid ranks snapshot")?;
        let (bytes, _hash) = snapshot.encode();
        std::hint::black_box(bytes);
        compute.push((t1 - t0).as_secs_f64() * 1e3);
        whole.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    summary("Samples::ranks", compute);
    summary("ranks + snapshot + encode", whole);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    topcoins_upstream::init_tls();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("propagation") if args.len() >= 4 => {
            propagation(&args[1], args[2].parse()?, &args[3..]).await
        }
        Some("first-ok") if args.len() >= 3 => first_ok(&args[1], &args[2..]).await,
        Some("fetch") if args.len() == 3 => fetch_times(&args[1], args[2].parse()?).await,
        Some("ranks") if args.len() == 4 => {
            ranks(args[1].parse()?, args[2].parse()?, args[3].parse()?)
        }
        _ => bail!(
            "usage: benchtool propagation <nats-url> <rounds> <node-url>... | benchtool first-ok <url> <command> [args...] | benchtool ranks <metrics> <samples> <rounds>"
        ),
    }
}
