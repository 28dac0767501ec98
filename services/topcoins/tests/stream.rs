//! `/v1/stream` with real clients on a real node: events in order, `Last-Event-ID` resumes,
//! a client that stops reading costs no memory, shutdown ends every stream.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{Harness, WAIT, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use topcoins_api::ApiConfig;

const COINS: usize = 400;
const FAST: Duration = Duration::from_millis(20);

/// One event as a client sees it.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    name: String,
    data: String,
}

/// A minimal SSE reader (the format of the WHATWG spec: fields per line, a blank line ends an
/// event, `:` starts a comment).
struct Reader {
    body: reqwest::Response,
    /// Bytes not yet parsed (a chunk may end inside a character).
    raw: Vec<u8>,
    buffer: String,
    comments: usize,
}

impl Reader {
    async fn open(
        url: &str,
        last_event_id: Option<&str>,
    ) -> Result<(Self, reqwest::header::HeaderMap)> {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        let headers = response.headers().clone();
        Ok((
            Self {
                body: response,
                raw: Vec::new(),
                buffer: String::new(),
                comments: 0,
            },
            headers,
        ))
    }

    /// The next event (comments and `id`-only blocks are counted and passed over), or `None`
    /// when the stream ends.
    async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut name, mut data) = (None, String::from("message"), Vec::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if !data.is_empty() {
                    return Ok(Some(Event {
                        id,
                        name,
                        data: data.join("\n"),
                    }));
                }
            }
            match tokio::time::timeout(WAIT, self.body.chunk()).await?? {
                Some(chunk) => {
                    self.raw.extend_from_slice(&chunk);
                    let valid = match std::str::from_utf8(&self.raw) {
                        Ok(_) => self.raw.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(e) => return Err(e.into()),
                    };
                    let text: Vec<u8> = self.raw.drain(..valid).collect();
                    self.buffer.push_str(std::str::from_utf8(&text)?);
                }
                None => return Ok(None),
            }
        }
    }

    /// Events until none has come for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Result<Vec<Event>> {
        let mut seen = Vec::new();
        while let Ok(e) = tokio::time::timeout(quiet, self.next()).await {
            seen.push(e?.context("stream ended")?);
        }
        Ok(seen)
    }

    /// Events until one named `name` (inclusive).
    async fn until(&mut self, name: &str) -> Result<Vec<Event>> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await?.context("stream ended")?;
            let done = e.name == name;
            seen.push(e);
            if done {
                return Ok(seen);
            }
        }
    }
}

fn seq(e: &Event) -> u64 {
    e.id.as_deref()
        .and_then(|id| id.rsplit_once('-'))
        .and_then(|(_, s)| s.parse().ok())
        .expect("every event has an id")
}

/// Moves the market one step and waits until the price actor has announced it.
async fn step(h: &Harness) -> Result<()> {
    let before = h.published("prices");
    h.tick().await?;
    eventually("a prices notice", || async {
        Ok((h.published("prices") > before).then_some(()))
    })
    .await
}

fn config() -> ApiConfig {
    ApiConfig {
        stream_keepalive: Duration::from_millis(300),
        ..ApiConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_order_filtered_and_resumed() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api_with(config()).await?;
    let _price = h.start_price(FAST);
    let _ranking = h.start_ranking(FAST);
    h.ready(&node, "/").await?;

    let (mut all, headers) = Reader::open(&node.url("/v1/stream"), None).await?;
    let h_ = &headers;
    assert_eq!(h_["content-type"], "text/event-stream");
    assert_eq!(h_["cache-control"], "no-cache");
    assert_eq!(h_["x-accel-buffering"], "no");
    assert!(!h_.contains_key("content-encoding"));
    let (mut btc, _) = Reader::open(&node.url("/v1/stream?symbols=btc,ETH"), None).await?;

    // Each step is a prices change (and often a ranking one): a `top` event, then prices.
    let mut seen = Vec::new();
    for _ in 0..5 {
        step(&h).await?;
        seen.extend(all.drain(Duration::from_millis(400)).await?);
    }
    assert!(seen.iter().filter(|e| e.name == "top").count() >= 5);
    assert_eq!(seen[0].name, "top");
    let seqs: Vec<u64> = seen.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {seqs:?}"
    );
    let prices: Vec<&Event> = seen.iter().filter(|e| e.name == "price").collect();
    assert!(
        prices.len() > COINS,
        "a step moves most prices: {}",
        prices.len()
    );
    // The last price event of a coin is the price `/v1/coins/{symbol}` gives now.
    let last_btc = prices
        .iter()
        .rev()
        .find(|e| e.data.contains("\"symbol\":\"BTC\""))
        .context("a BTC price event")?;
    let event: serde_json::Value = serde_json::from_str(&last_btc.data)?;
    let coin: serde_json::Value = h.get(&node.url("/v1/coins/BTC")).await?.json().await?;
    // (Its rank may have moved since, by a ranking change: a `top` event's `moved`.)
    assert_eq!(event["price_usd"], coin["price_usd"]);

    // The filtered stream: only BTC and ETH prices, with the `top` events, each listing the
    // moves of BTC and ETH only (those of the unfiltered event with the same id), and counting
    // the others.
    let mut names = std::collections::HashSet::new();
    let mut tops = 0;
    for e in btc.drain(Duration::from_millis(400)).await? {
        let v: serde_json::Value = serde_json::from_str(&e.data)?;
        if e.name == "price" {
            names.insert(v["symbol"].as_str().unwrap().to_owned());
        } else if e.name == "top" {
            let twin = seen
                .iter()
                .find(|a| a.id == e.id)
                .context("the same top event")?;
            let full: serde_json::Value = serde_json::from_str(&twin.data)?;
            let moves = full["moved"].as_array().unwrap();
            let ours: Vec<&serde_json::Value> = moves
                .iter()
                .filter(|m| matches!(m["symbol"].as_str(), Some("BTC" | "ETH")))
                .collect();
            assert_eq!(
                v["moved"].as_array().unwrap().iter().collect::<Vec<_>>(),
                ours
            );
            let total = moves.len() as u64 + full["moved_beyond"].as_u64().unwrap();
            assert_eq!(v["moved_beyond"].as_u64(), Some(total - ours.len() as u64));
            assert_eq!(v["prices_hash"], full["prices_hash"]);
            tops += 1;
        }
    }
    assert!(names.iter().all(|s| s == "BTC" || s == "ETH"), "{names:?}");
    assert!(tops >= 5, "{tops} top events");

    // Resume: from the id of an event in the middle, a new stream replays exactly what came
    // after it, then goes on live.
    let from = seen.len() / 2;
    let (mut resumed, _) = Reader::open(&node.url("/v1/stream"), seen[from].id.as_deref()).await?;
    for expected in &seen[from + 1..] {
        let got = resumed.next().await?.context("resumed stream ended")?;
        assert_eq!(&got, expected);
    }
    // An id from elsewhere (another node, an earlier run): a resync, then live events.
    let (mut lost, _) = Reader::open(&node.url("/v1/stream"), Some("00000000-5")).await?;
    let first = lost.next().await?.context("stream ended")?;
    assert_eq!(first.name, "resync");
    assert!(first.data.contains("replay_window"));

    // Keep-alive comments while nothing changes.
    let comments = all.comments;
    tokio::time::sleep(Duration::from_millis(800)).await;
    step(&h).await?;
    all.until("top").await?;
    assert!(all.comments > comments, "keep-alive comments arrive");

    // Bad input: JSON errors.
    for (query, status) in [
        ("symbols=a&symbols=b", 400),
        (&*format!("symbols={}", vec!["X"; 501].join(",")), 400),
    ] {
        let r = h.get(&node.url(&format!("/v1/stream?{query}"))).await?;
        assert_eq!(r.status(), status, "{query}");
        let body: serde_json::Value = r.json().await?;
        assert!(body["error"]["code"].is_string());
    }
    let r = h
        .http
        .get(node.url("/v1/stream"))
        .header("authorization", "Bearer tck_0000")
        .send()
        .await?;
    assert!(matches!(r.status().as_u16(), 401 | 503), "{}", r.status());
    Ok(())
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_costs_no_memory_and_shutdown_ends_streams() -> Result<()> {
    let h = Harness::start(COINS).await?;
    let node = h.start_api_with(config()).await?;
    let _price = h.start_price(FAST);
    let _ranking = h.start_ranking(FAST);
    h.ready(&node, "/").await?;

    // A client that sends its request, reads the headers, and then reads nothing more.
    let mut stalled = tokio::net::TcpStream::connect(node.addr).await?;
    stalled
        .write_all(b"GET /v1/stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut head = [0u8; 256];
    let n = stalled.read(&mut head).await?;
    assert!(std::str::from_utf8(&head[..n])?.starts_with("HTTP/1.1 200"));
    eventually("the stream to be counted", || async {
        Ok((node.metric("topcoins_api_streams_open", &[]) >= 1.0).then_some(()))
    })
    .await?;

    // Fill the replay window (and the socket's buffers), then measure; then twice the ring's
    // worth of changes again.
    let ring = topcoins_api::stream::RING;
    for _ in 0..topcoins_api::stream::REPLAY + 8 {
        step(&h).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss();
    for _ in 0..2 * ring {
        step(&h).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 8 << 20,
        "{} changes with a stalled client grew memory by {} KiB",
        2 * ring,
        grown >> 10
    );

    // When it reads again it is told it fell behind.
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&text).contains("event: resync") {
        let mut chunk = vec![0u8; 1 << 16];
        let n = tokio::time::timeout_at(deadline, stalled.read(&mut chunk)).await??;
        anyhow::ensure!(n > 0, "stream ended before a resync");
        text.extend_from_slice(&chunk[..n]);
        // Keep only the tail: what is being looked for is short.
        if text.len() > 1 << 20 {
            text.drain(..text.len() - 4096);
        }
    }
    assert!(node.metric("topcoins_api_stream_resyncs_total", &[("reason", "lagged")]) >= 1.0);

    // Shutdown: every stream that is read ends at once (not by a timeout), and the node stops
    // within its grace period although the stalled client is still connected.
    let (mut open, _) = Reader::open(&node.url("/v1/stream"), None).await?;
    let stopping = tokio::spawn(async move {
        let started = std::time::Instant::now();
        node.component.stop().await;
        started.elapsed()
    });
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match open.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .context("the stream did not end within 3 s of shutdown")?;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ended cleanly: {ended:?}"
    );
    let took = stopping.await?;
    assert!(
        took <= topcoins_api::http::SHUTDOWN_GRACE + Duration::from_secs(2),
        "stopped in {took:?}"
    );
    drop(stalled);
    Ok(())
}
