//! The [`Source`] the generic poller drives for one exchange: the tracked pairs' tickers as
//! one [`TickerSnapshot`] per poll (canonical bytes, blake3, store, hash notice — the path of
//! prices and ranking).
//!
//! Each poll asks only for tracked pairs the exchange lists (its pairs endpoint, read at the
//! first poll and again every `markets_refresh`; a failed refresh keeps the list it had). A
//! tracked pair the exchange does not list, and a pair whose figures the parser rejected, is
//! counted in `topcoins_upstream_rejected_total{provider, reason}` and left out; the others
//! are published. A poll where no tracked pair has a ticker is a failed poll (the last good
//! snapshot stays). The ranks take their samples from the bus, not from here (see
//! [`crate::feed`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use topcoins_poller::Source;
use topcoins_schemas::{Exchange, PairTicker, RanksSnapshot, TickerSnapshot, TickerWindow};
use topcoins_upstream::{UpstreamError, UpstreamErrorKind, UpstreamMetrics};

use crate::client::ExchangeApi;
use crate::markets::Market;
use crate::rank::Samples;
use crate::{Pair, Ticker, Window};

/// How often the pairs endpoint is read by default: the list changes rarely.
pub const MARKETS_REFRESH: Duration = Duration::from_secs(3600);

pub struct TickerSource<A: ExchangeApi> {
    api: Arc<A>,
    /// `TOPCOINS_PAIRS` for this exchange.
    tracked: Arc<Vec<Pair>>,
    /// The pairs on users' watchlists (the tracked-set bucket), read at each poll.
    watched: Option<tokio::sync::watch::Receiver<Vec<String>>>,
    /// Pairs the last poll asked the exchange for.
    asked: usize,
    markets: Option<(Instant, BTreeMap<Pair, Market>)>,
    refresh: Duration,
    metrics: UpstreamMetrics,
}

impl<A: ExchangeApi> TickerSource<A> {
    pub fn new(
        api: Arc<A>,
        tracked: Arc<Vec<Pair>>,
        refresh: Duration,
        metrics: UpstreamMetrics,
    ) -> Self {
        Self {
            api,
            tracked,
            watched: None,
            asked: 0,
            markets: None,
            refresh,
            metrics,
        }
    }

    /// Polls the pairs on users' watchlists too, as `watched` says from poll to poll.
    pub fn with_watched(mut self, watched: tokio::sync::watch::Receiver<Vec<String>>) -> Self {
        self.watched = Some(watched);
        self
    }

    /// The tracked pairs now: `TOPCOINS_PAIRS` and the watched ones, sorted, each once. A
    /// watched entry that is not a pair is skipped (the API validates what it writes).
    pub fn tracked_now(&self) -> Vec<Pair> {
        let mut pairs: std::collections::BTreeSet<Pair> = self.tracked.iter().cloned().collect();
        if let Some(watched) = &self.watched {
            pairs.extend(watched.borrow().iter().filter_map(|p| Pair::parse(p)));
        }
        pairs.into_iter().collect()
    }

    fn provider() -> &'static str {
        <A::Exchange as Exchange>::ID
    }

    fn reject(&self, reason: &str, n: usize) {
        if n > 0 {
            self.metrics
                .rejected
                .with_label_values(&[Self::provider(), reason])
                .inc_by(n as u64);
        }
    }

    /// The exchange's markets, read again when the list is older than `refresh`.
    async fn markets(&mut self) -> Result<&BTreeMap<Pair, Market>, UpstreamError> {
        let stale = self
            .markets
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= self.refresh);
        if stale {
            match self.api.markets().await {
                Ok(list) => {
                    let map = list.into_iter().map(|m| (m.pair.clone(), m)).collect();
                    self.markets = Some((Instant::now(), map));
                }
                Err(e) if self.markets.is_some() => {
                    tracing::warn!(provider = Self::provider(), error = %e, "pairs list not refreshed; the one held stays");
                    if let Some((at, _)) = &mut self.markets {
                        // Try again after a tenth of the refresh, not at every poll.
                        *at = Instant::now() - self.refresh + self.refresh / 10;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(&self.markets.as_ref().expect("set above").1)
    }
}

fn window(w: Window) -> TickerWindow {
    match w {
        Window::Rolling24h => TickerWindow::Rolling24h,
        Window::UtcDay => TickerWindow::UtcDay,
    }
}

/// A parsed ticker as the snapshot holds it.
pub fn pair_ticker(t: &Ticker) -> PairTicker {
    PairTicker {
        pair: t.pair.as_str().into(),
        price: t.price,
        high: t.high_24h,
        low: t.low_24h,
        change_pct: t.change_pct,
        change_abs: t.change_abs,
        volume: t.volume,
        volume_quote: t.volume_quote,
        window: window(t.window),
        change_window: window(t.change_window),
    }
}

impl<A: ExchangeApi> Source for TickerSource<A> {
    type Snapshot = TickerSnapshot<A::Exchange>;

    fn provider(&self) -> &'static str {
        Self::provider()
    }

    /// Held back only when the exchange answered for less than half of the pairs asked: a
    /// smaller snapshot because users stopped watching pairs is the new truth at once.
    fn shrank(&self, _previous: &Self::Snapshot, current: &Self::Snapshot) -> bool {
        current.tickers.len() * 2 < self.asked
    }

    async fn fetch(&mut self) -> Result<Self::Snapshot, UpstreamError> {
        let tracked = self.tracked_now();
        let markets = self.markets().await?;
        let mut asked = Vec::with_capacity(tracked.len());
        let mut unlisted = Vec::new();
        for pair in tracked.iter() {
            match markets.get(pair) {
                Some(m) => asked.push(m.clone()),
                None => unlisted.push(pair.as_str()),
            }
        }
        if !unlisted.is_empty() {
            tracing::warn!(provider = Self::provider(), pairs = ?unlisted, "tracked pairs the exchange does not list are not polled");
        }
        self.reject("unknown_pair", unlisted.len());
        self.asked = asked.len();
        if asked.is_empty() {
            return Err(UpstreamError::new(
                Self::provider(),
                UpstreamErrorKind::Rejected {
                    reason: "no_tracked_pair",
                },
                "no tracked pair is listed by the exchange",
            ));
        }
        let parsed = self.api.tickers(&asked).await?;
        for r in &parsed.rejected {
            tracing::warn!(provider = Self::provider(), key = %r.key, reason = r.reason, detail = %r.detail, "pair rejected");
            self.reject(r.reason, 1);
        }
        let wanted: std::collections::BTreeSet<&Pair> = asked.iter().map(|m| &m.pair).collect();
        let mut tickers: BTreeMap<&str, PairTicker> = BTreeMap::new();
        for t in &parsed.tickers {
            if wanted.contains(&t.pair) {
                tickers.insert(t.pair.as_str(), pair_ticker(t));
            }
        }
        if tickers.is_empty() {
            return Err(UpstreamError::new(
                Self::provider(),
                UpstreamErrorKind::Rejected {
                    reason: "no_ticker",
                },
                "no tracked pair came back with a usable ticker",
            ));
        }
        TickerSnapshot::new(tickers.into_values().collect())
            .map_err(|e| UpstreamError::rejected(Self::provider(), &e))
    }
}

/// The [`Source`] of one exchange's list of tradable pairs, polled every
/// `TOPCOINS_MARKETS_REFRESH`: what API nodes list on `GET /v1/exchanges`. (The ticker source
/// reads the same endpoint for itself, so each list is read twice an interval at most.)
pub struct MarketsSource<A: ExchangeApi> {
    api: Arc<A>,
}

impl<A: ExchangeApi> MarketsSource<A> {
    pub fn new(api: Arc<A>) -> Self {
        Self { api }
    }
}

impl<A: ExchangeApi> Source for MarketsSource<A> {
    type Snapshot = topcoins_schemas::MarketsSnapshot<A::Exchange>;

    fn provider(&self) -> &'static str {
        <A::Exchange as Exchange>::ID
    }

    async fn fetch(&mut self) -> Result<Self::Snapshot, UpstreamError> {
        let markets = self.api.markets().await?;
        let pairs = markets.iter().map(|m| m.pair.as_str().into()).collect();
        topcoins_schemas::MarketsSnapshot::new(pairs)
            .map_err(|e| UpstreamError::rejected(<A::Exchange as Exchange>::ID, &e))
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The [`Source`] of the ranks: every tracked metric's rank from the samples every exchange's
/// polls record, recomputed each interval (the shortest exchange interval: new values
/// arrive no faster) and announced when it changed. Served from memory by API nodes.
pub struct RankSource {
    samples: Arc<Mutex<Samples>>,
}

impl RankSource {
    pub fn new(samples: Arc<Mutex<Samples>>) -> Self {
        Self { samples }
    }
}

impl Source for RankSource {
    type Snapshot = RanksSnapshot;

    fn provider(&self) -> &'static str {
        "ranks"
    }

    async fn fetch(&mut self) -> Result<RanksSnapshot, UpstreamError> {
        let ranks =
            crate::rank::ranked_metrics(self.samples.lock().expect("not poisoned").ranks(now_ms()));
        if ranks.is_empty() {
            return Err(UpstreamError::new(
                "ranks",
                UpstreamErrorKind::Rejected {
                    reason: "no_samples",
                },
                "no poll has recorded a value yet",
            ));
        }
        RanksSnapshot::new(ranks).map_err(|e| UpstreamError::rejected("ranks", &e))
    }
}
