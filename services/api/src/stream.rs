//! `GET /v1/stream`: the node's changes as Server-Sent Events.
//!
//! **One writer, many readers.** The [`Hub`] is told when the node's view or its tickers
//! change ([`Hub::changed`]), works out what changed off the request path (a blocking thread
//! for the diff of 10,000 coins), writes each event's bytes once, and hands them out as one
//! [`Batch`] per change through a `tokio::sync::broadcast` ring. A stream with no filter sends
//! a batch's bytes as they are (a reference-counted clone); a filtered one picks its events by
//! index (one lookup per symbol it asked for), never by scanning.
//!
//! **Bounded.** The ring holds [`RING`] batches, shared by every stream; a stream that falls
//! behind by more than that (a client that stops reading) is not waited for: when it next
//! reads it gets a `resync` event and goes on from the newest batch, and the resync is
//! counted. The node holds nothing per stream but its place in the ring.
//!
//! **Resumable.** Every event's `id` is `<epoch>-<seq>` (the epoch is random per process, so
//! an id from another node or an earlier run is never mistaken for one of ours). The last
//! [`REPLAY`] batches are kept for `Last-Event-ID`: a client back within that window gets what
//! it missed, in order, then the live events; from further back, a `resync`. Keep-alive
//! comments every 15 s carry an `id:` line too, so a filtered stream's resume point moves
//! with the ring even when none of its events are in it.
//!
//! **Ends.** [`Hub::close`] (graceful shutdown) ends every stream; the server then finishes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use compact_str::CompactString;
use futures::StreamExt;
use hashbrown::HashMap;
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use topcoins_schemas::api::ErrorBody;

use crate::error::ApiError;
use crate::http::AppState;
use crate::metrics::ApiMetrics;
use crate::render::rfc3339;
use crate::view::View;

/// Batches the broadcast ring holds: how far a stream may fall behind before it is resynced.
/// A stream that stops reading keeps the last this many alive (about 1.3 MB each for 10,000
/// coins), so it is kept small: 16 changes, 16 s of a market moving every second.
pub const RING: usize = 16;
/// Batches kept for `Last-Event-ID`, at most (two minutes of changes a second), and their
/// bytes, at most.
pub const REPLAY: usize = 128;
const REPLAY_BYTES: usize = 32 << 20;
/// A `top` event lists the moves of entries at or above this rank (before or after).
pub const MOVED_RANKS: usize = 500;
/// Symbols or metrics one stream may ask for.
pub const MAX_FILTER: usize = 500;
/// What a client waits before reconnecting (`retry:`), in ms.
const RETRY_MS: u64 = 2000;

const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Top,
    Price,
    Metric,
    Alert,
}

/// One event, written once.
struct Frame {
    seq: u64,
    kind: Kind,
    /// The coin's symbol (upper case), the metric's id, or the alert's user.
    key: CompactString,
    bytes: Bytes,
}

/// The events of one change.
pub struct Batch {
    first: u64,
    last: u64,
    frames: Vec<Frame>,
    /// The `top` and `price` events, in order: what a stream with no filter sends.
    public: Bytes,
    tops: Vec<usize>,
    prices: HashMap<CompactString, usize, foldhash::fast::RandomState>,
    metrics: HashMap<CompactString, usize, foldhash::fast::RandomState>,
    alerts: Vec<usize>,
    /// The `top` event's moves, for streams with `symbols=`.
    moves: Option<TopMoves>,
    bytes: usize,
    /// What streams with the same filter picked from this batch, by the filter's key: a
    /// thousand dashboards asking for the same coins make one selection, not a thousand.
    picks: Mutex<Vec<(u64, Option<Bytes>)>>,
}

/// Selections a batch keeps, at most (distinct filters beyond these select for themselves).
const PICKS_KEPT: usize = 64;

/// An event to publish: its kind, key, SSE event name and JSON data.
struct Event {
    kind: Kind,
    key: CompactString,
    data: Vec<u8>,
    /// A `top` event's moves.
    moves: Option<Moves>,
}

/// Every move of a `top` event (not only the first ranks' that its data lists), so that a
/// stream with `symbols=` gets the moves of its own coins, at any rank, and nothing else: a
/// dashboard following 100 coins is not sent the reshuffle of the other 9,900.
struct Moves {
    /// The event's data before its `moved` list: `{"prices_hash":…,"count":n` (no `}`).
    head: Vec<u8>,
    /// Each move's JSON, one after another, in the event's order.
    json: Vec<u8>,
    /// Where each move's JSON ends in `json`.
    ends: Vec<u32>,
    /// A move's index by its coin's upper-case symbol.
    by_symbol: HashMap<CompactString, u32, foldhash::fast::RandomState>,
}

impl Moves {
    fn get(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.json[start..self.ends[i] as usize]
    }

    /// The event's data listing the moves `listed` (indexes, in order) and counting the rest.
    fn data(&self, listed: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 48 + listed.len() * 48);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b",\"moved\":[");
        for (n, &i) in listed.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.get(i));
        }
        let beyond = self.ends.len() - listed.len();
        let _ = std::io::Write::write_fmt(&mut out, format_args!("],\"moved_beyond\":{beyond}}}"));
        out
    }

    fn size(&self) -> usize {
        self.head.len() + self.json.len() + self.ends.len() * 4 + self.by_symbol.len() * 32
    }
}

/// A batch's `top` moves, with the event's `id:` and `event:` lines before them.
struct TopMoves {
    seq: u64,
    /// `id: …\nevent: top\ndata: `.
    lines: Vec<u8>,
    moves: Moves,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Top => "top",
            Kind::Price => "price",
            Kind::Metric => "metric",
            Kind::Alert => "alert",
        }
    }
}

/// Where a client wants to start.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// From now.
    Live,
    /// Just after this event.
    After(u64),
    /// From an id this node cannot replay from: resync first.
    Lost,
}

/// The node's stream of changes; see the module docs.
pub struct Hub {
    epoch: String,
    tx: broadcast::Sender<Arc<Batch>>,
    /// The last batches (for `Last-Event-ID`), and the last sequence number given out. Taken
    /// by the writer for each batch and by each new stream once.
    replay: Mutex<(VecDeque<Arc<Batch>>, usize)>,
    seq: AtomicU64,
    changed: Arc<Notify>,
    closing: watch::Sender<bool>,
    keepalive: Duration,
    metrics: ApiMetrics,
}

impl Hub {
    pub fn new(metrics: ApiMetrics, keepalive: Duration) -> Arc<Self> {
        let (tx, _) = broadcast::channel(RING);
        let (closing, _) = watch::channel(false);
        Arc::new(Self {
            epoch: format!("{:08x}", rand::random::<u32>()),
            tx,
            replay: Mutex::new((VecDeque::with_capacity(REPLAY), 0)),
            seq: AtomicU64::new(0),
            changed: Arc::new(Notify::new()),
            closing,
            keepalive: keepalive.max(Duration::from_millis(10)),
            metrics,
        })
    }

    /// What the node's bus side notifies when its view or tickers change.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Ends every stream (graceful shutdown), now and for streams opened later.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Writes `events` as one batch and hands it to every stream.
    fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut replay = self.replay.lock().expect("not poisoned");
        let first = self.last_seq() + 1;
        let mut batch = Batch {
            first,
            last: first + events.len() as u64 - 1,
            frames: Vec::with_capacity(events.len()),
            public: Bytes::new(),
            tops: Vec::new(),
            prices: HashMap::default(),
            metrics: HashMap::default(),
            alerts: Vec::new(),
            moves: None,
            bytes: 0,
            picks: Mutex::new(Vec::new()),
        };
        // Every event of the batch in one buffer; each frame is a slice of it.
        let mut all = BytesMut::with_capacity(events.iter().map(|e| e.data.len() + 48).sum());
        let mut spans = Vec::with_capacity(events.len());
        let mut public = true;
        for (i, event) in events.iter().enumerate() {
            let seq = first + i as u64;
            let start = all.len();
            let _ = write!(
                Writer(&mut all),
                "id: {}-{seq}\nevent: {}\ndata: ",
                self.epoch,
                event.kind.name()
            );
            // JSON written by serde has no raw newline, so it is one `data:` line.
            all.put_slice(&event.data);
            all.put_slice(b"\n\n");
            spans.push(start..all.len());
            public &= matches!(event.kind, Kind::Top | Kind::Price);
        }
        let all = all.freeze();
        batch.bytes = all.len();
        for (i, (event, span)) in events.into_iter().zip(spans).enumerate() {
            match event.kind {
                Kind::Top => {
                    batch.tops.push(i);
                    if let Some(moves) = event.moves {
                        // The frame's `id:`, `event:` and `data: ` lines.
                        let lines = span.len() - event.data.len() - 2;
                        let lines = all[span.start..span.start + lines].to_vec();
                        batch.bytes += lines.len() + moves.size();
                        batch.moves = Some(TopMoves {
                            seq: first + i as u64,
                            lines,
                            moves,
                        });
                    }
                }
                Kind::Price => {
                    batch.prices.insert(event.key.clone(), i);
                }
                Kind::Metric => {
                    batch.metrics.insert(event.key.clone(), i);
                }
                Kind::Alert => batch.alerts.push(i),
            }
            batch.frames.push(Frame {
                seq: first + i as u64,
                kind: event.kind,
                key: event.key,
                bytes: all.slice(span),
            });
        }
        // A change of the view is `top` and `price` events only: the whole batch is what a
        // stream with no filter sends. Metric and alert batches are picked from.
        if public {
            batch.public = all;
        }
        let batch = Arc::new(batch);
        let (ring, bytes) = &mut *replay;
        *bytes += batch.bytes;
        ring.push_back(batch.clone());
        while ring.len() > REPLAY || (*bytes > REPLAY_BYTES && ring.len() > 1) {
            if let Some(old) = ring.pop_front() {
                *bytes -= old.bytes;
            }
        }
        self.seq.store(batch.last, Ordering::Release);
        self.metrics.stream_events.inc_by(batch.frames.len() as u64);
        // No receiver is not an error: nobody is listening.
        let _ = self.tx.send(batch);
    }

    /// A receiver for a new stream, and the batches to replay first.
    fn subscribe(
        &self,
        resume: Resume,
    ) -> (
        broadcast::Receiver<Arc<Batch>>,
        Vec<Arc<Batch>>,
        Resume,
        u64,
    ) {
        let replay = self.replay.lock().expect("not poisoned");
        let rx = self.tx.subscribe();
        let last = self.last_seq();
        let resume = match resume {
            Resume::After(seq) if seq > last => Resume::Lost,
            Resume::After(seq) => {
                let oldest = replay.0.front().map_or(last + 1, |b| b.first);
                if seq + 1 >= oldest {
                    Resume::After(seq)
                } else {
                    Resume::Lost
                }
            }
            other => other,
        };
        let batches = match resume {
            Resume::After(seq) => replay.0.iter().filter(|b| b.last > seq).cloned().collect(),
            _ => Vec::new(),
        };
        (rx, batches, resume, last)
    }

    /// A new receiver from the newest batch on, and the last number before it (taken together
    /// under the writer's lock: nothing falls between them).
    fn restart(&self) -> (broadcast::Receiver<Arc<Batch>>, u64) {
        let _replay = self.replay.lock().expect("not poisoned");
        (self.tx.subscribe(), self.last_seq())
    }

    fn parse_id(&self, id: &str) -> Resume {
        match id.trim().split_once('-') {
            Some((epoch, seq)) if epoch == self.epoch => {
                seq.parse().map_or(Resume::Lost, Resume::After)
            }
            _ => Resume::Lost,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    fn resync(&self, reason: &str, seq: u64) -> Bytes {
        Bytes::from(format!(
            "id: {}\nevent: resync\ndata: {{\"reason\":\"{reason}\"}}\n\n",
            self.id(seq)
        ))
    }
}

/// `fmt::Write` into a `BytesMut`.
struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// What one stream asked for.
#[derive(Debug, Default)]
struct Filter {
    /// Upper-case symbols; `None`: every coin.
    symbols: Option<Vec<CompactString>>,
    metrics: Vec<CompactString>,
    user: Option<String>,
    /// Names `symbols` and `metrics` (sorted, without repeats): streams with equal keys pick
    /// the same events from a batch without alerts.
    key: u64,
}

impl Filter {
    /// Sets [`Filter::key`] from the symbols and metrics.
    fn keyed(mut self) -> Self {
        use std::hash::BuildHasher;
        let mut symbols: Option<Vec<&str>> = self
            .symbols
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect());
        if let Some(s) = symbols.as_mut() {
            s.sort_unstable();
            s.dedup();
        }
        let mut metrics: Vec<&str> = self.metrics.iter().map(|m| m.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        self.key = foldhash::fast::FixedState::with_seed(0x7c0).hash_one((symbols, metrics));
        self
    }

    /// This stream's events of `batch` after `after`, or `None`.
    fn select(&self, batch: &Batch, after: u64) -> Option<Bytes> {
        // A batch of `top` and `price` events only (a view's change): with no symbol filter,
        // all of it, as it is (metric and alert filters pick nothing there).
        if self.symbols.is_none() && after < batch.first && !batch.public.is_empty() {
            return Some(batch.public.clone());
        }
        // The whole batch, no alerts in it: what another stream with this filter picked.
        let shared = after < batch.first && batch.alerts.is_empty();
        if shared {
            let picks = batch.picks.lock().expect("not poisoned");
            if let Some((_, picked)) = picks.iter().find(|(k, _)| *k == self.key) {
                return picked.clone();
            }
        }
        let picked = self.pick(batch, after);
        if shared {
            let mut picks = batch.picks.lock().expect("not poisoned");
            if picks.len() < PICKS_KEPT && !picks.iter().any(|(k, _)| *k == self.key) {
                picks.push((self.key, picked.clone()));
            }
        }
        picked
    }

    fn pick(&self, batch: &Batch, after: u64) -> Option<Bytes> {
        let mut picked: Vec<usize> = batch.tops.clone();
        match &self.symbols {
            None => picked.extend(batch.prices.values().copied()),
            Some(symbols) => picked.extend(symbols.iter().filter_map(|s| batch.prices.get(s))),
        }
        picked.extend(self.metrics.iter().filter_map(|m| batch.metrics.get(m)));
        if let Some(user) = &self.user {
            picked.extend(
                batch
                    .alerts
                    .iter()
                    .filter(|&&i| batch.frames[i].key == user.as_str()),
            );
        }
        picked.sort_unstable();
        // `symbols=btc,BTC` names one coin twice.
        picked.dedup();
        let mut out = BytesMut::new();
        for i in picked {
            let frame = &batch.frames[i];
            if frame.seq <= after {
                continue;
            }
            debug_assert!(frame.kind != Kind::Alert || self.user.is_some());
            match (&self.symbols, &batch.moves) {
                // The `top` event with this stream's coins' moves.
                (Some(symbols), Some(top)) if top.seq == frame.seq => {
                    let mut listed: Vec<u32> = symbols
                        .iter()
                        .filter_map(|s| top.moves.by_symbol.get(s).copied())
                        .collect();
                    listed.sort_unstable();
                    listed.dedup();
                    out.put_slice(&top.lines);
                    out.put_slice(&top.moves.data(&listed));
                    out.put_slice(b"\n\n");
                }
                _ => out.put_slice(&frame.bytes),
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }
}

/// Counts an open stream for as long as it lives.
struct Open(ApiMetrics);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams_open.dec();
    }
}

/// One stream's state.
struct Client {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Batch>>,
    filter: Filter,
    /// The last sequence number this stream has passed (sent or filtered out).
    after: u64,
    /// What to send before the live events: the preamble (and a resync), then the batches
    /// to replay, each selected when its turn comes (not all at once).
    pending: VecDeque<Bytes>,
    replay: VecDeque<Arc<Batch>>,
    keepalive: tokio::time::Interval,
    closing: watch::Receiver<bool>,
    _open: Open,
}

impl Client {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop_front() {
            return Some(b);
        }
        while let Some(batch) = self.replay.pop_front() {
            let out = self.filter.select(&batch, self.after);
            self.after = self.after.max(batch.last);
            if out.is_some() {
                return out;
            }
        }
        loop {
            tokio::select! {
                biased;
                _ = self.closing.wait_for(|c| *c) => return None,
                received = self.rx.recv() => match received {
                    Ok(batch) => {
                        let out = self.filter.select(&batch, self.after);
                        self.after = self.after.max(batch.last);
                        if out.is_some() {
                            return out;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Behind by more than the ring: start again from the newest batch.
                        (self.rx, self.after) = self.hub.restart();
                        self.hub.metrics.stream_resyncs.with_label_values(&["lagged"]).inc();
                        return Some(self.hub.resync("lagged", self.after));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.keepalive.tick() => {
                    return Some(Bytes::from(format!(": keep-alive\nid: {}\n\n", self.hub.id(self.after))));
                }
            }
        }
    }
}

/// The query of `/v1/stream`.
fn parse_filter(raw: Option<&str>) -> Result<Filter, ApiError> {
    let mut filter = Filter::default();
    let (mut seen_symbols, mut seen_metrics) = (false, false);
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let list = || -> Result<Vec<CompactString>, ApiError> {
            let items: Vec<CompactString> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(CompactString::from)
                .collect();
            if items.len() > MAX_FILTER {
                return Err(ApiError::bad_request(
                    "invalid_filter",
                    format!("`{key}` names at most {MAX_FILTER} items"),
                ));
            }
            if let Some(long) = items.iter().find(|s| s.len() > 128) {
                return Err(ApiError::bad_request(
                    "invalid_filter",
                    format!(
                        "`{key}` item {:?}… is longer than 128 bytes",
                        long.chars().take(16).collect::<String>()
                    ),
                ));
            }
            Ok(items)
        };
        match &*key {
            "symbols" => {
                if std::mem::replace(&mut seen_symbols, true) {
                    return Err(ApiError::bad_request(
                        "duplicate_parameter",
                        "symbols is given more than once",
                    ));
                }
                filter.symbols = Some(list()?.iter().map(|s| s.to_uppercase()).collect());
            }
            "metrics" => {
                if std::mem::replace(&mut seen_metrics, true) {
                    return Err(ApiError::bad_request(
                        "duplicate_parameter",
                        "metrics is given more than once",
                    ));
                }
                let metrics = list()?;
                if let Some(bad) = metrics
                    .iter()
                    .find(|m| crate::http::metrics_api::MetricId::parse(m).is_none())
                {
                    return Err(ApiError::bad_request(
                        "invalid_metric_id",
                        format!("{bad:?} is not a metric id (exchange:pair:metric)"),
                    ));
                }
                filter.metrics = metrics;
            }
            _ => {}
        }
    }
    Ok(filter.keyed())
}

#[utoipa::path(
    get,
    path = "/v1/stream",
    operation_id = "stream",
    summary = "The node's changes as Server-Sent Events",
    description = "`text/event-stream`. Events: `top` when the top list changes (its hashes, \
        times, count, the entries whose rank `moved` within the first 500 ranks, and \
        `moved_beyond`, how many moves are not listed; with `symbols`, `moved` lists the \
        moves of those coins at any rank and `moved_beyond` counts the others); `price`, one per coin whose price \
        changed (`symbol`, `rank`, `price_usd`, `change_24h_pct`, `as_of`); `metric`, the \
        `GET /v1/metrics/{id}` body of each metric named in `metrics` that changed; `alert`, \
        the caller's alerts (with an API key); `resync` when events were missed (the client \
        fell behind, or `Last-Event-ID` is older than the replay window): fetch the current \
        state again. Every event has an `id`; send the last one as `Last-Event-ID` to resume. \
        A `: keep-alive` comment (with an `id:` line) comes every 15 s.",
    params(
        ("symbols" = Option<String>, Query,
            description = "Comma-separated symbols: `price` events, and the `top` events' `moved` entries, of these coins only (at most 500)"),
        ("metrics" = Option<String>, Query,
            description = "Comma-separated metric ids whose `metric` events to send (at most 500)"),
        ("Last-Event-ID" = Option<String>, Header, nullable = false,
            description = "The id of the last event seen: resume after it"),
    ),
    responses(
        (status = 200, description = "The stream: one event after another", content_type = "text/event-stream", body = StreamEvent,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("x-accel-buffering" = String, description = "`no`: proxies must not buffer it"),
            )),
        (status = 400, description = "`invalid_filter`, `invalid_metric_id` or `duplicate_parameter`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: an `Authorization` header with no valid key",
            body = ErrorBody),
        (status = 414, description = "`uri_too_long`: a query string over 2 KiB", body = ErrorBody),
        (status = 503, description = "`unavailable`: the node is shutting down, or a key \
            could not be checked", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(crate) async fn stream(State(app): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if parts
        .uri
        .query()
        .is_some_and(|q| q.len() > crate::http::MAX_QUERY_BYTES)
    {
        return crate::http::coins_too_long().into_response();
    }
    let mut filter = match parse_filter(parts.uri.query()) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
    {
        match crate::http::caller_of(&app, &parts).await {
            Ok(user_id) => filter.user = Some(user_id),
            Err(refused) => return refused,
        }
    }
    let hub = &app.stream;
    if *hub.closing.borrow() {
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "the node is shutting down".into(),
        }
        .into_response();
    }
    let resume = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map_or(Resume::Live, |id| hub.parse_id(id));
    let (rx, replay, resume, last) = hub.subscribe(resume);
    let mut pending = VecDeque::with_capacity(2);
    let after = match resume {
        Resume::After(seq) => seq,
        _ => last,
    };
    pending.push_back(Bytes::from(format!(
        ": topcoins stream\nretry: {RETRY_MS}\nid: {}\n\n",
        hub.id(after)
    )));
    if resume == Resume::Lost {
        hub.metrics
            .stream_resyncs
            .with_label_values(&["replay_window"])
            .inc();
        pending.push_back(hub.resync("replay_window", last));
    }
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + hub.keepalive, hub.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    hub.metrics.streams_open.inc();
    hub.metrics.streams_opened.inc();
    let client = Client {
        hub: hub.clone(),
        rx,
        filter,
        after,
        pending,
        replay: replay.into(),
        keepalive,
        closing: hub.closing.subscribe(),
        _open: Open(hub.metrics.clone()),
    };
    let body = futures::stream::unfold(client, |mut c| async move {
        let next = c.next().await?;
        Some((Ok::<_, std::convert::Infallible>(next), c))
    })
    .boxed();
    let mut response = Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCEL_BUFFERING, HeaderValue::from_static("no"));
    response
}

/// One Server-Sent Event of `/v1/stream`, as a client's parser gives it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct StreamEvent {
    /// `<epoch>-<n>`: send the last one seen as `Last-Event-ID` to resume after it.
    id: Option<String>,
    /// `top`, `price`, `metric`, `alert` or `resync`.
    event: Option<String>,
    /// The event's JSON (see the operation's description).
    data: String,
    /// How long to wait before reconnecting, in ms.
    retry: Option<u64>,
}

/// The `top` event's data before its `moved` list and `moved_beyond` count (see [`Moves`]).
#[derive(Serialize)]
struct TopHead {
    prices_hash: String,
    ranking_hash: String,
    prices_as_of: String,
    ranking_as_of: String,
    count: usize,
}

#[derive(Serialize)]
struct Moved<'a> {
    symbol: &'a str,
    rank: Option<u32>,
    previous_rank: Option<u32>,
}

/// The `price` event's data.
#[derive(Serialize)]
struct PriceEvent<'a> {
    symbol: &'a str,
    rank: u32,
    price_usd: Option<f64>,
    change_24h_pct: Option<f64>,
    as_of: &'a str,
}

/// The events between two views: a `top` event, and a `price` event per coin whose price or
/// change moved (none for the first view: there is nothing to compare with).
fn diff(old: Option<&View>, new: &View) -> Vec<Event> {
    let n = new.list.count();
    let as_of = rfc3339(new.prices.as_of);
    let mut previous: HashMap<&str, (u32, Option<f64>, Option<f64>), foldhash::fast::RandomState> =
        HashMap::default();
    if let Some(old) = old {
        previous.reserve(old.list.count());
        for e in old.list.merged().entries(old.list.count()) {
            previous.insert(e.symbol, (e.rank, e.price_usd, e.change_24h_pct));
        }
    }
    let mut moved = Vec::new();
    let mut prices = Vec::new();
    for e in new.list.merged().entries(n) {
        let before = previous.remove(e.symbol);
        if old.is_some() && before.map(|b| b.0) != Some(e.rank) {
            moved.push(Moved {
                symbol: e.symbol,
                rank: Some(e.rank),
                previous_rank: before.map(|b| b.0),
            });
        }
        // A coin whose price changed, or that entered the list (its price is news too).
        let changed = match before {
            Some((_, price, change)) => price != e.price_usd || change != e.change_24h_pct,
            None => old.is_some(),
        };
        if changed {
            let data = serde_json::to_vec(&PriceEvent {
                symbol: e.symbol,
                rank: e.rank,
                price_usd: e.price_usd,
                change_24h_pct: e.change_24h_pct,
                as_of: &as_of,
            })
            .expect("an event serialises");
            prices.push(Event {
                kind: Kind::Price,
                key: e.symbol.to_uppercase().into(),
                data,
                moves: None,
            });
        }
    }
    let mut left: Vec<Moved> = previous
        .iter()
        .map(|(symbol, (rank, _, _))| Moved {
            symbol,
            rank: None,
            previous_rank: Some(*rank),
        })
        .collect();
    left.sort_by_key(|m| m.previous_rank);
    moved.extend(left);
    let mut events = Vec::with_capacity(prices.len() + 1);
    events.push(top_event(
        &TopHead {
            prices_hash: new.prices.hash.to_string(),
            ranking_hash: new.ranking.hash.to_string(),
            prices_as_of: as_of.clone(),
            ranking_as_of: rfc3339(new.ranking.as_of),
            count: n,
        },
        &moved,
    ));
    events.extend(prices);
    events
}

/// The `top` event: its data lists the moves within the first [`MOVED_RANKS`] ranks (before
/// or after), and it keeps every move for streams with `symbols=`.
fn top_event(head: &TopHead, moved: &[Moved]) -> Event {
    let mut head = serde_json::to_vec(head).expect("an event serialises");
    head.pop(); // its `}`: the moves follow
    let mut moves = Moves {
        head,
        json: Vec::with_capacity(moved.len() * 48),
        ends: Vec::with_capacity(moved.len()),
        by_symbol: HashMap::with_capacity_and_hasher(moved.len(), Default::default()),
    };
    // The rest of a reshuffle of thousands of coins is counted, not listed: every stream
    // would carry it on every ranking change.
    let listed = |r: Option<u32>| r.is_some_and(|r| r as usize <= MOVED_RANKS);
    let mut first_ranks = Vec::new();
    for (i, m) in moved.iter().enumerate() {
        serde_json::to_writer(&mut moves.json, m).expect("an event serialises");
        moves.ends.push(moves.json.len() as u32);
        moves
            .by_symbol
            .insert(m.symbol.to_uppercase().into(), i as u32);
        if listed(m.rank) || listed(m.previous_rank) {
            first_ranks.push(i as u32);
        }
    }
    Event {
        kind: Kind::Top,
        key: CompactString::default(),
        data: moves.data(&first_ranks),
        moves: Some(moves),
    }
}

/// Follows the node's changes and publishes them, until the hub closes.
pub async fn run(
    hub: Arc<Hub>,
    view: Arc<ArcSwapOption<View>>,
    tickers: crate::tickers::Tickers,
    bodies: Arc<crate::http::metrics_api::MetricBodies>,
) {
    let mut closing = hub.closing.subscribe();
    let mut last_view: Option<Arc<View>> = None;
    let mut last_metrics: Option<crate::http::metrics_api::Etags> = None;
    let mut stamp: Option<crate::tickers::Stamp> = None;
    loop {
        tokio::select! {
            _ = closing.wait_for(|c| *c) => return,
            _ = hub.changed.notified() => {}
        }
        let current = view.load_full();
        if let Some(new) = current
            && !last_view.as_ref().is_some_and(|old| Arc::ptr_eq(old, &new))
        {
            let old = last_view.replace(new.clone());
            let events = tokio::task::spawn_blocking(move || diff(old.as_deref(), &new))
                .await
                .unwrap_or_default();
            hub.publish(events);
        }
        if !stamp.as_ref().is_some_and(|s| tickers.is_current(s)) {
            let (t, b) = (tickers.clone(), bodies.clone());
            let previous = last_metrics.take();
            let built = tokio::task::spawn_blocking(move || b.build_now(&t, previous.as_ref()))
                .await
                .ok();
            if let Some((new_stamp, etags, changed)) = built {
                stamp = Some(new_stamp);
                last_metrics = Some(etags);
                hub.publish(
                    changed
                        .into_iter()
                        .map(|(id, data)| Event {
                            kind: Kind::Metric,
                            key: id,
                            data: data.to_vec(),
                            moves: None,
                        })
                        .collect(),
                );
            }
        }
    }
}

/// Takes the users' alerts off NATS into the hub, until it closes.
pub async fn follow_alerts(hub: Arc<Hub>, nats: topcoins_bus::NatsConfig) {
    let mut nats = nats;
    nats.name = format!("{}-stream", nats.name);
    let mut closing = hub.closing.subscribe();
    let (client, _link) = match topcoins_bus::connect(&nats).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "stream: NATS unavailable; no alert events");
            return;
        }
    };
    let mut backoff =
        topcoins_runtime::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut subscription = loop {
        match client
            .subscribe(topcoins_bus::subjects::STREAM_ALERTS_ALL)
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(error = %e, "stream: waiting for NATS");
                tokio::select! {
                    _ = closing.wait_for(|c| *c) => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    };
    loop {
        let message = tokio::select! {
            _ = closing.wait_for(|c| *c) => break,
            m = subscription.next() => match m { Some(m) => m, None => break },
        };
        let Some(user) = message
            .subject
            .as_str()
            .strip_prefix(topcoins_bus::subjects::STREAM_ALERTS_PREFIX)
            .and_then(|s| s.strip_prefix('.'))
        else {
            continue;
        };
        // Only well-formed JSON objects become events: the data line must stay one line.
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&message.payload)
        {
            Ok(object) => hub.publish(vec![Event {
                kind: Kind::Alert,
                key: user.into(),
                data: serde_json::to_vec(&object).expect("a JSON object serialises"),
                moves: None,
            }]),
            Err(_) => hub.metrics.stream_bad_messages.inc(),
        }
    }
    topcoins_bus::close(&client).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        let registry = prometheus::Registry::new();
        Hub::new(
            ApiMetrics::register(&registry).unwrap(),
            Duration::from_secs(15),
        )
    }

    fn price(symbol: &str) -> Event {
        Event {
            kind: Kind::Price,
            key: symbol.into(),
            data: format!("{{\"symbol\":\"{symbol}\"}}").into_bytes(),
            moves: None,
        }
    }

    fn top() -> Event {
        Event {
            kind: Kind::Top,
            key: CompactString::default(),
            data: b"{}".to_vec(),
            moves: None,
        }
    }

    fn text(b: &Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn filters_pick_by_symbol_and_user_in_order() {
        let hub = hub();
        hub.publish(vec![top(), price("BTC"), price("ETH"), price("SOL")]);
        hub.publish(vec![Event {
            kind: Kind::Alert,
            key: "usr_a".into(),
            data: b"{\"id\":\"alr_1\"}".to_vec(),
            moves: None,
        }]);
        let ring = hub.replay.lock().unwrap().0.clone();
        let all = Filter::default().keyed();
        let body = text(&all.select(&ring[0], 0).unwrap());
        let ids: Vec<&str> = body.lines().filter(|l| l.starts_with("id: ")).collect();
        assert_eq!(ids.len(), 4);
        assert!(ids[3].ends_with("-4"), "{ids:?}");
        // Alerts are for their user only.
        assert!(all.select(&ring[1], 4).is_none());
        let mine = Filter {
            user: Some("usr_a".into()),
            ..Default::default()
        }
        .keyed();
        assert!(text(&mine.select(&ring[1], 4).unwrap()).contains("alr_1"));
        let theirs = Filter {
            user: Some("usr_b".into()),
            ..Default::default()
        }
        .keyed();
        assert!(theirs.select(&ring[1], 4).is_none());
        // Symbols: in the batch's order, whatever the filter's.
        let some = Filter {
            symbols: Some(vec!["SOL".into(), "BTC".into()]),
            ..Default::default()
        }
        .keyed();
        let body = text(&some.select(&ring[0], 0).unwrap());
        let (btc, sol) = (body.find("BTC").unwrap(), body.find("SOL").unwrap());
        assert!(btc < sol && !body.contains("ETH") && body.contains("event: top"));
        // A symbol named twice is sent once.
        let twice = Filter {
            symbols: Some(vec!["BTC".into(), "BTC".into()]),
            ..Default::default()
        }
        .keyed();
        assert_eq!(
            text(&twice.select(&ring[0], 0).unwrap())
                .matches("BTC")
                .count(),
            1
        );
        // Streams with the same filter share one selection (the same bytes).
        let again = Filter {
            symbols: Some(vec!["BTC".into(), "SOL".into()]),
            ..Default::default()
        }
        .keyed();
        let (a, b) = (
            some.select(&ring[0], 0).unwrap(),
            again.select(&ring[0], 0).unwrap(),
        );
        assert_eq!(a.as_ptr(), b.as_ptr());
        // Resuming inside a batch: only what comes after.
        let body = text(&all.select(&ring[0], 2).unwrap());
        assert!(!body.contains("BTC") && body.contains("ETH") && body.contains("SOL"));
    }

    #[test]
    fn a_filtered_stream_gets_the_moves_of_its_own_coins() {
        let head = TopHead {
            prices_hash: "p".into(),
            ranking_hash: "r".into(),
            prices_as_of: "t".into(),
            ranking_as_of: "t".into(),
            count: 1000,
        };
        // BTC and ETH swap at the top; DOGE moves far down, past the first ranks; a newcomer.
        let moved = [
            Moved {
                symbol: "eth",
                rank: Some(1),
                previous_rank: Some(2),
            },
            Moved {
                symbol: "btc",
                rank: Some(2),
                previous_rank: Some(1),
            },
            Moved {
                symbol: "doge",
                rank: Some(MOVED_RANKS as u32 + 7),
                previous_rank: Some(MOVED_RANKS as u32 + 9),
            },
            Moved {
                symbol: "new",
                rank: Some(900),
                previous_rank: None,
            },
        ];
        let hub = hub();
        hub.publish(vec![top_event(&head, &moved), price("BTC")]);
        let batch = hub.replay.lock().unwrap().0[0].clone();
        let data = |f: &Filter| -> serde_json::Value {
            let body = text(&f.select(&batch, 0).unwrap());
            let line = body
                .lines()
                .find(|l| l.starts_with("data: {\"prices_hash"))
                .unwrap();
            serde_json::from_str(&line[6..]).unwrap()
        };
        let symbols = |v: &serde_json::Value| -> Vec<String> {
            v["moved"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["symbol"].as_str().unwrap().to_owned())
                .collect()
        };
        // No filter: the first ranks' moves; the others counted.
        let all = data(&Filter::default().keyed());
        assert_eq!(symbols(&all), ["eth", "btc"]);
        assert_eq!(
            (all["moved_beyond"].as_u64(), all["count"].as_u64()),
            (Some(2), Some(1000))
        );
        // `symbols=`: its coins' moves at any rank, in the event's order; the rest counted.
        let f = Filter {
            symbols: Some(vec!["NEW".into(), "BTC".into(), "BTC".into(), "XRP".into()]),
            ..Default::default()
        }
        .keyed();
        let mine = data(&f);
        assert_eq!(symbols(&mine), ["btc", "new"]);
        assert_eq!(mine["moved_beyond"].as_u64(), Some(2));
        assert_eq!(mine["moved"][1]["previous_rank"], serde_json::Value::Null);
        assert_eq!(
            (mine["prices_hash"].as_str(), mine["count"].as_u64()),
            (Some("p"), Some(1000))
        );
        // The same id as the unfiltered event's.
        let id = |f: &Filter| {
            text(&f.select(&batch, 0).unwrap())
                .lines()
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(id(&f), id(&Filter::default().keyed()));
        // No coins (`symbols=` empty): no moves, all counted.
        let none = data(
            &Filter {
                symbols: Some(vec![]),
                ..Default::default()
            }
            .keyed(),
        );
        assert_eq!(
            (symbols(&none).len(), none["moved_beyond"].as_u64()),
            (0, Some(4))
        );
    }

    #[test]
    fn resume_within_the_window_and_resync_outside_it() {
        let hub = hub();
        for _ in 0..(REPLAY + 10) {
            hub.publish(vec![price("BTC")]);
        }
        let last = hub.last_seq();
        assert_eq!(last, (REPLAY + 10) as u64);
        let id = |seq: u64| format!("{}-{seq}", hub.epoch);
        let (_, replay, resume, _) = hub.subscribe(hub.parse_id(&id(last - 3)));
        assert_eq!(resume, Resume::After(last - 3));
        assert_eq!(replay.len(), 3);
        let (_, replay, resume, _) = hub.subscribe(hub.parse_id(&id(3)));
        assert_eq!((resume, replay.len()), (Resume::Lost, 0));
        for other in ["0badc0de-5".to_owned(), "nonsense".into(), id(last + 1)] {
            assert_eq!(
                hub.subscribe(hub.parse_id(&other)).2,
                Resume::Lost,
                "{other}"
            );
        }
        let (_, replay, resume, _) = hub.subscribe(hub.parse_id(&id(last)));
        assert_eq!((resume, replay.len()), (Resume::After(last), 0));
    }

    #[test]
    fn filters_parse_and_refuse_bad_input() {
        let f = parse_filter(Some("symbols=btc,%20eth,,BTC&metrics=kraken:btc-usd:price")).unwrap();
        assert_eq!(
            f.symbols.unwrap(),
            vec![CompactString::from("BTC"), "ETH".into(), "BTC".into()]
        );
        assert_eq!(f.metrics, vec![CompactString::from("kraken:btc-usd:price")]);
        assert!(parse_filter(Some("metrics=kraken:XBT-USD:last")).is_err());
        // Over-long items are refused with a message that does not split a character.
        let wide = "%C3%91".repeat(70);
        assert!(parse_filter(Some(&format!("symbols={wide}"))).is_err());
        assert!(parse_filter(Some("symbols=a&symbols=b")).is_err());
        let many = (0..=MAX_FILTER)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_filter(Some(&format!("symbols={many}"))).is_err());
        assert!(parse_filter(Some(&format!("metrics={}", "x".repeat(200)))).is_err());
        assert!(parse_filter(None).unwrap().symbols.is_none());
    }
}
