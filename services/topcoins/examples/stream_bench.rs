//! The live stream under load, for `bench/stream.sh`: opens N streams of `/v1/stream` on one
//! API node and times, for each prices notice the price actor announces, how long after the
//! notice arrived here (a NATS subscriber in this process, so one clock) its `top` event
//! reached each stream. Prints the percentiles over every (notice, stream) pair, the events
//! and bytes the streams took in, and how many never arrived.
//!
//! Usage: `stream_bench <api-url> <nats-url> <streams> <notices> <query> [hold-seconds]`
//! (`query` is the stream's query string, e.g. `symbols=BTC,ETH`, or `-` for none). After the
//! notices it keeps the streams open `hold-seconds` more (the serving benchmark runs then),
//! printing `ready` on stderr once every stream is open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topcoins_schemas::{HashNotice, Kind};

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// Reads one stream until `stop`, noting when each new `prices_hash` of a `top` event came.
async fn read_stream(
    addr: String,
    path: String,
    arrivals: Arrivals,
    totals: Arc<Mutex<(u64, u64)>>,
    opened: tokio::sync::mpsc::Sender<()>,
) -> Result<()> {
    let mut socket = tokio::net::TcpStream::connect(&addr).await?;
    socket.set_nodelay(true)?;
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let blank_line = memchr::memmem::Finder::new(b"\n\n");
    let top = memchr::memmem::Finder::new(b"event: top\n");
    let hash_key = memchr::memmem::Finder::new(b"\"prices_hash\":\"");
    let mut buffer: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let mut last_hash = String::new();
    let mut head_done = false;
    let (mut events, mut bytes) = (0u64, 0u64);
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let now = Instant::now();
        bytes += n as u64;
        buffer.extend_from_slice(&chunk[..n]);
        if !head_done {
            if let Some(end) = memchr::memmem::find(&buffer, b"\r\n\r\n") {
                if !buffer.starts_with(b"HTTP/1.1 200") {
                    bail!("{}", String::from_utf8_lossy(&buffer[..end]));
                }
                buffer.drain(..end + 4);
                head_done = true;
                let _ = opened.send(()).await;
            } else {
                continue;
            }
        }
        // Events end with a blank line; chunked framing adds size lines, which the search for
        // `prices_hash` does not mind. One pass over what arrived, one drain after it: the
        // client must cost little next to the node it measures (both share the two cores).
        let mut at = 0;
        while let Some(len) = blank_line.find(&buffer[at..]) {
            let block = &buffer[at..at + len];
            events += 1;
            // `id: <epoch>-<n>\nevent: top\ndata: {"prices_hash":"…` (after a chunk's size
            // line): the event's name and the hash are near its start.
            let head = &block[..block.len().min(160)];
            if top.find(head).is_some()
                && let Some(start) = hash_key.find(head).map(|i| i + 15)
                && let Some(hash) = block.get(start..start + 64)
                && hash != last_hash.as_bytes()
            {
                let hash = String::from_utf8_lossy(hash).into_owned();
                arrivals
                    .lock()
                    .expect("not poisoned")
                    .entry(hash.clone())
                    .or_default()
                    .push(now);
                last_hash = hash;
            }
            at += len + 2;
        }
        buffer.drain(..at);
        let mut t = totals.lock().expect("not poisoned");
        t.0 += std::mem::take(&mut events);
        t.1 += std::mem::take(&mut bytes);
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: stream_bench <api-url> <nats-url> <streams> <notices> <query|-> [hold-seconds]";
    anyhow::ensure!(args.len() >= 5, "{usage}");
    let addr = args[0]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let streams: usize = args[2].parse().context(usage)?;
    let notices: usize = args[3].parse().context(usage)?;
    let path = match args[4].as_str() {
        "-" => "/v1/stream".to_owned(),
        q => format!("/v1/stream?{q}"),
    };
    let hold = Duration::from_secs(args.get(5).map_or(Ok(0), |s| s.parse())?);

    let nats = async_nats::connect(&args[1]).await?;
    let mut hashes = nats
        .subscribe(topcoins_bus::subjects::hash_subject(Kind::PRICES))
        .await?;
    nats.flush().await?;

    let arrivals: Arrivals = Arc::default();
    let totals = Arc::new(Mutex::new((0u64, 0u64)));
    let (opened_tx, mut opened) = tokio::sync::mpsc::channel(streams.max(1));
    let mut readers = Vec::with_capacity(streams);
    for _ in 0..streams {
        readers.push(tokio::spawn(read_stream(
            addr.clone(),
            path.clone(),
            arrivals.clone(),
            totals.clone(),
            opened_tx.clone(),
        )));
    }
    for _ in 0..streams {
        tokio::time::timeout(Duration::from_secs(30), opened.recv())
            .await
            .context("streams did not open within 30 s")?;
    }
    eprintln!("ready: {streams} streams open");

    // Notices as they arrive here; the first one is only a start (a stream may have opened
    // just after it).
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(notices);
    while sent.len() < notices + 1 {
        let message = tokio::time::timeout(Duration::from_secs(30), hashes.next())
            .await
            .context("no prices notice for 30 s")?
            .context("subscription ended")?;
        let at = Instant::now();
        let notice: HashNotice = serde_json::from_slice(&message.payload)?;
        sent.push((notice.hash.to_string(), at));
    }
    // Let the last one arrive everywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (events, bytes) = *totals.lock().expect("not poisoned");
    let arrivals = arrivals.lock().expect("not poisoned").clone();
    let mut latencies = Vec::new();
    let mut missing = 0usize;
    for (hash, at) in sent.iter().skip(1) {
        let got = arrivals.get(hash).map_or(&[][..], Vec::as_slice);
        missing += streams.saturating_sub(got.len());
        latencies.extend(
            got.iter()
                .map(|t| t.saturating_duration_since(*at).as_secs_f64() * 1000.0),
        );
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "streams {streams} notices {notices} deliveries {} missing {missing} p50_ms {:.2} p90_ms {:.2} p99_ms {:.2} max_ms {:.2} events {events} bytes {bytes}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    tokio::time::sleep(hold).await;
    for r in readers {
        r.abort();
    }
    Ok(())
}
