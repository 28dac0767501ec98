//! [`Backfill`]: brings the history of the top coins into a [`CandleStore`], within a call
//! budget, remembering in the store what it fetched.
//!
//! **Per coin and interval** (a *series*) the store keeps one [`BackfillProgress`]: the span
//! of buckets `oldest..=newest` the provider was asked about, whether nothing older is worth
//! asking for (`complete`), and when the newest end was fetched. A run does, for each series
//! of the top `coins` symbols, days before hours, in rank order:
//! 1. **no record**: one page backwards from now (`toTs` = now, `limit` = the depth, 2000):
//!    the newest 2001 buckets, a coin's whole history when it is younger;
//! 2. **a record older than `refresh`**: pages *forwards* from its newest bucket to now (the
//!    newest bucket was still open when fetched, so it is asked again), so that the span
//!    stays contiguous whichever page is the last to succeed;
//! 3. **not complete**: pages backwards from the oldest bucket, `toTs` one bucket before it,
//!    until the depth below the newest bucket is reached or the provider's data starts (a
//!    page whose oldest row is zero-filled).
//!
//! Each page's candles are written first, then the record: a crash between costs the page
//! again, never a hole. A coin that newly enters the top set has no record and is backfilled
//! at its turn; one that leaves keeps its record (and candles) for when it comes back.
//!
//! **Budget.** Calls are spaced by [`Pacing::spacing`]. A rate-limit answer (HTTP 429 after
//! the HTTP client's own retries, or CryptoCompare's `Type` 99 inside HTTP 200) waits
//! [`Pacing::backoff`], doubling up to [`Pacing::backoff_max`], and asks again;
//! [`Pacing::max_rate_limited`] of them in a row end the run (the rest is for the next run).
//! An auth error, or several transient failures in a row, end the run too: every other call
//! would fail the same way. A series whose body is refused (a provider error such as an
//! unknown symbol, a broken body) is skipped, and not asked again by this process for
//! [`Limits::retry_failed`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use tokio::time::Instant;
use topcoins_history::{BackfillProgress, CandleStore, Interval, symbol_key};
use topcoins_upstream::{UpstreamError, UpstreamErrorKind};

use crate::client::{Histo, HistoClient, HistoPage, MAX_LIMIT};
use crate::metrics::BackfillMetrics;

/// Against the real provider: 2 calls a second at most (120 a minute, far below the free
/// plan's per-second and per-minute caps), and a year of daily candles for the top 100 coins
/// within the first minute (days go first).
pub const DEFAULT_SPACING: Duration = Duration::from_millis(500);
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_RATE_LIMITED: u32 = 5;
/// Buckets of history wanted per interval: the provider's largest page, one call.
pub const DEFAULT_DEPTH: u32 = 2000;
/// How often a series' newest end is fetched again: once a day, 2 calls per coin a day.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_RETRY_FAILED: Duration = Duration::from_secs(6 * 3600);
/// Transient failures (no connection, timeouts, 5xx, each already retried by the HTTP client)
/// in a row that end a run.
const MAX_TRANSIENT_IN_A_ROW: u32 = 3;

/// How calls are spread out.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Least time between the starts of two calls.
    pub spacing: Duration,
    /// First wait after a rate-limit answer; doubles each time.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Rate-limit answers in a row that end a run.
    pub max_rate_limited: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            spacing: DEFAULT_SPACING,
            backoff: DEFAULT_BACKOFF,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_rate_limited: DEFAULT_MAX_RATE_LIMITED,
        }
    }
}

/// How much history, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Buckets wanted below the newest one, per interval (days, hours).
    pub depth_days: u32,
    pub depth_hours: u32,
    /// Buckets asked per call (the provider's `limit`, at most 2000).
    pub page: u32,
    /// A series' newest end is fetched again when its last fetch is older than this.
    pub refresh: Duration,
    /// A series whose body was refused is not asked again for this long.
    pub retry_failed: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth_days: DEFAULT_DEPTH,
            depth_hours: DEFAULT_DEPTH,
            page: MAX_LIMIT,
            refresh: DEFAULT_REFRESH,
            retry_failed: DEFAULT_RETRY_FAILED,
        }
    }
}

impl Limits {
    fn depth(&self, histo: Histo) -> i64 {
        i64::from(match histo {
            Histo::Day => self.depth_days,
            Histo::Hour => self.depth_hours,
        })
    }
}

/// Why a run ended before its work was done.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("shutdown")]
    Shutdown,
    #[error("rate limited {0} times in a row")]
    RateLimited(u32),
    /// The key is refused, or the provider is unreachable.
    #[error("upstream: {0}")]
    Upstream(UpstreamError),
    #[error("store: {0}")]
    Store(#[from] topcoins_history::Error),
}

/// A series that failed in a run, and why.
#[derive(Debug)]
pub struct Failure {
    pub symbol: CompactString,
    pub interval: Interval,
    pub error: UpstreamError,
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Histo calls made (answered or not).
    pub calls: u64,
    pub candles: u64,
    pub zero_filled: u64,
    /// Series of the top set with a complete, fresh record after the run.
    pub up_to_date: usize,
    /// Series of the top set still to do (failed, skipped, or cut off by `stopped`).
    pub pending: usize,
    pub failures: Vec<Failure>,
    /// Why the run ended early, if it did.
    pub stopped: Option<Stop>,
}

/// The backfill of the top coins. Cheap to keep; one [`Backfill::run`] at a time.
pub struct Backfill {
    client: HistoClient,
    coins: usize,
    pacing: Pacing,
    limits: Limits,
    metrics: BackfillMetrics,
    /// When the last call started, for the spacing across runs.
    last_call: Mutex<Option<Instant>>,
    /// Series whose body was refused, and when.
    failed: Mutex<HashMap<(CompactString, Histo), Instant>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What ends one series early: the run stops, or only this series fails.
enum SeriesError {
    Stop(Stop),
    Failed(UpstreamError),
}

impl From<Stop> for SeriesError {
    fn from(s: Stop) -> Self {
        SeriesError::Stop(s)
    }
}

impl From<topcoins_history::Error> for SeriesError {
    fn from(e: topcoins_history::Error) -> Self {
        SeriesError::Stop(Stop::Store(e))
    }
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

impl Backfill {
    /// Backfills the top `coins` (0: none) with `client`, paced by `pacing`, with the
    /// default [`Limits`].
    pub fn new(
        client: HistoClient,
        coins: usize,
        pacing: Pacing,
        metrics: BackfillMetrics,
    ) -> Self {
        Self {
            client,
            coins,
            pacing,
            limits: Limits::default(),
            metrics,
            last_call: Mutex::new(None),
            failed: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self.limits.page = self.limits.page.clamp(1, MAX_LIMIT);
        self
    }

    pub fn coins(&self) -> usize {
        self.coins
    }

    /// Does what is missing for the first `coins` distinct symbols of `top` (in rank order)
    /// and returns; nothing to do costs no call. Ends early, saying why in
    /// [`Report::stopped`], when `shutdown` completes, the store fails, or the provider
    /// refuses (see the module docs); what was written stays written.
    pub async fn run<S: AsRef<str>>(
        &self,
        store: &impl CandleStore,
        top: &[S],
        shutdown: impl Future<Output = ()> + Send,
    ) -> Report {
        let mut shutdown: Shutdown<'_> = pin!(shutdown);
        let mut report = Report::default();
        let mut wanted: Vec<CompactString> = Vec::with_capacity(self.coins);
        for s in top {
            if wanted.len() >= self.coins {
                break;
            }
            let key = symbol_key(s.as_ref().trim());
            if !key.is_empty() && !wanted.contains(&key) {
                wanted.push(key);
            }
        }
        let mut records: HashMap<(CompactString, Interval), BackfillProgress> =
            match store.backfill_progress().await {
                Ok(all) => all
                    .into_iter()
                    .map(|p| ((p.symbol.clone(), p.interval), p))
                    .collect(),
                Err(e) => {
                    report.pending = wanted.len() * Histo::ALL.len();
                    report.stopped = Some(Stop::Store(e));
                    return report;
                }
            };
        let mut transient_in_a_row = 0;
        'run: for histo in Histo::ALL {
            for symbol in &wanted {
                if self.recently_failed(symbol, histo) {
                    continue;
                }
                let key = (symbol.clone(), histo.interval());
                let record = records.remove(&key);
                let outcome = self
                    .series(store, symbol, histo, record, &mut report, &mut shutdown)
                    .await;
                match outcome {
                    Ok(p) => {
                        transient_in_a_row = 0;
                        records.insert(key, p);
                    }
                    Err((p, SeriesError::Stop(stop))) => {
                        records.extend(p.map(|p| (key, p)));
                        report.stopped = Some(stop);
                        break 'run;
                    }
                    Err((p, SeriesError::Failed(error))) => {
                        records.extend(p.map(|p| (key, p)));
                        tracing::warn!(%symbol, interval = %histo.interval(), %error, "backfill of a coin failed");
                        if error.is_transient() {
                            transient_in_a_row += 1;
                            if transient_in_a_row >= MAX_TRANSIENT_IN_A_ROW {
                                report.stopped = Some(Stop::Upstream(error));
                                break 'run;
                            }
                        } else {
                            transient_in_a_row = 0;
                            self.lock_failed()
                                .insert((symbol.clone(), histo), Instant::now());
                        }
                        report.failures.push(Failure {
                            symbol: symbol.clone(),
                            interval: histo.interval(),
                            error,
                        });
                    }
                }
            }
        }
        let now = now_ms();
        for histo in Histo::ALL {
            let interval = histo.interval();
            let done = wanted
                .iter()
                .filter(|s| {
                    records
                        .get(&((*s).clone(), interval))
                        .is_some_and(|p| p.complete && !self.due(p, now))
                })
                .count();
            report.up_to_date += done;
            report.pending += wanted.len() - done;
            self.metrics
                .pending
                .with_label_values(&[interval.as_str()])
                .set((wanted.len() - done) as i64);
        }
        tracing::info!(
            coins = wanted.len(),
            calls = report.calls,
            candles = report.candles,
            zero_filled = report.zero_filled,
            up_to_date = report.up_to_date,
            pending = report.pending,
            stopped = report.stopped.as_ref().map(tracing::field::display),
            "backfill run done"
        );
        report
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashMap<(CompactString, Histo), Instant>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recently_failed(&self, symbol: &CompactString, histo: Histo) -> bool {
        let mut failed = self.lock_failed();
        match failed.get(&(symbol.clone(), histo)) {
            Some(at) if at.elapsed() < self.limits.retry_failed => true,
            Some(_) => {
                failed.remove(&(symbol.clone(), histo));
                false
            }
            None => false,
        }
    }

    fn due(&self, p: &BackfillProgress, now: i64) -> bool {
        now.saturating_sub(p.fetched_at) >= millis(self.limits.refresh)
    }

    /// Brings one series up to date. On an error, hands back the record as far as it got.
    async fn series(
        &self,
        store: &impl CandleStore,
        symbol: &CompactString,
        histo: Histo,
        record: Option<BackfillProgress>,
        report: &mut Report,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<BackfillProgress, (Option<BackfillProgress>, SeriesError)> {
        let step = histo.step();
        let depth = self.limits.depth(histo);
        let page_limit = i64::from(self.limits.page);
        let mut record = record;
        let mut p = match record.take() {
            Some(p) => p,
            None => {
                // 1. The newest page, backwards from now.
                let now = now_ms();
                let page = self
                    .page(symbol, histo, None, depth.min(page_limit), report, shutdown)
                    .await
                    .map_err(|e| (None, e))?;
                let newest = histo.interval().bucket_start(now);
                let (oldest, newest) = page.span.unwrap_or((newest, newest));
                let p = BackfillProgress {
                    symbol: symbol.clone(),
                    interval: histo.interval(),
                    oldest,
                    newest,
                    complete: page.data_starts || newest - oldest >= depth * step,
                    fetched_at: now,
                };
                self.write(store, page, &p, report)
                    .await
                    .map_err(|e| (None, e))?;
                p
            }
        };
        // 2. The newest end again, forwards, when it is due.
        let now = now_ms();
        if self.due(&p, now) {
            let now_bucket = histo.interval().bucket_start(now);
            while p.newest < now_bucket {
                let to = now_bucket.min(p.newest + page_limit * step);
                let limit = (to - p.newest) / step;
                let page = self
                    .page(symbol, histo, Some(to / 1000), limit, report, shutdown)
                    .await
                    .map_err(|e| (Some(p.clone()), e))?;
                let mut next = p.clone();
                next.newest = page.span.map_or(p.newest, |(_, t)| t.max(p.newest));
                // Up to now, or the provider has nothing newer yet (then again at the next
                // refresh, not at every run).
                let done = next.newest >= now_bucket || next.newest == p.newest;
                if done {
                    next.fetched_at = now;
                }
                self.write(store, page, &next, report)
                    .await
                    .map_err(|e| (Some(p.clone()), e))?;
                p = next;
                if done {
                    break;
                }
            }
            if p.newest >= now_bucket && p.fetched_at < now {
                // The newest bucket itself, still open: asked again.
                let page = self
                    .page(symbol, histo, Some(now / 1000), 1, report, shutdown)
                    .await
                    .map_err(|e| (Some(p.clone()), e))?;
                let mut next = p.clone();
                next.fetched_at = now;
                self.write(store, page, &next, report)
                    .await
                    .map_err(|e| (Some(p.clone()), e))?;
                p = next;
            }
        }
        // 3. The older end, backwards, until the depth or the provider's first data.
        while !p.complete {
            let target = p.newest - depth * step;
            let cursor = p.oldest - step;
            if cursor < target {
                p.complete = true;
                store
                    .record_backfill_progress(p.clone())
                    .await
                    .map_err(|e| (Some(p.clone()), e.into()))?;
                break;
            }
            let limit = ((cursor - target) / step).clamp(1, page_limit);
            let page = self
                .page(symbol, histo, Some(cursor / 1000), limit, report, shutdown)
                .await
                .map_err(|e| (Some(p.clone()), e))?;
            let mut next = p.clone();
            match page.span {
                Some((from, _)) if from < p.oldest => next.oldest = from,
                // Nothing older came back: the provider's data starts here.
                _ => next.complete = true,
            }
            next.complete |= page.data_starts || next.oldest <= target;
            self.write(store, page, &next, report)
                .await
                .map_err(|e| (Some(p.clone()), e))?;
            p = next;
        }
        Ok(p)
    }

    /// Candles first, then the record that covers them.
    async fn write(
        &self,
        store: &impl CandleStore,
        page: HistoPage,
        progress: &BackfillProgress,
        report: &mut Report,
    ) -> Result<(), SeriesError> {
        let interval = progress.interval.as_str();
        let n = page.candles.len() as u64;
        if n > 0 {
            store.upsert_backfilled(page.candles).await?;
        }
        store.record_backfill_progress(progress.clone()).await?;
        report.candles += n;
        report.zero_filled += page.zero_filled;
        self.metrics
            .candles
            .with_label_values(&[interval])
            .inc_by(n);
        self.metrics
            .zero_filled
            .with_label_values(&[interval])
            .inc_by(page.zero_filled);
        Ok(())
    }

    /// One page, paced, with the waits a rate limit asks for.
    async fn page(
        &self,
        symbol: &str,
        histo: Histo,
        to_ts: Option<i64>,
        limit: i64,
        report: &mut Report,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<HistoPage, SeriesError> {
        let interval = histo.interval().as_str();
        let limit = u32::try_from(limit.clamp(1, i64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT);
        let mut backoff = self.pacing.backoff;
        let mut limited = 0;
        loop {
            self.pace(shutdown).await?;
            report.calls += 1;
            let fetched = tokio::select! {
                biased;
                () = shutdown.as_mut() => return Err(Stop::Shutdown.into()),
                r = self.client.fetch(symbol, histo, to_ts, limit) => r,
            };
            let error = match fetched {
                Ok(page) => {
                    self.metrics
                        .pages
                        .with_label_values(&[interval, "ok"])
                        .inc();
                    return Ok(page);
                }
                Err(e) => e,
            };
            self.metrics
                .pages
                .with_label_values(&[interval, error.reason()])
                .inc();
            match error.kind {
                UpstreamErrorKind::RateLimited { retry_after } => {
                    limited += 1;
                    self.metrics
                        .rate_limited
                        .with_label_values(&[interval])
                        .inc();
                    if limited >= self.pacing.max_rate_limited {
                        return Err(Stop::RateLimited(limited).into());
                    }
                    let wait = retry_after.unwrap_or(backoff).min(self.pacing.backoff_max);
                    tracing::warn!(%symbol, interval, wait = ?wait, limited, "backfill rate limited, waiting");
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Err(Stop::Shutdown.into()),
                        () = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(self.pacing.backoff_max);
                }
                UpstreamErrorKind::Auth => return Err(Stop::Upstream(error).into()),
                _ => return Err(SeriesError::Failed(error)),
            }
        }
    }

    /// Waits until `spacing` after the last call's start.
    async fn pace(&self, shutdown: &mut Shutdown<'_>) -> Result<(), Stop> {
        let start = {
            let mut last = self.last_call.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = last.map_or(now, |l| (l + self.pacing.spacing).max(now));
            *last = Some(start);
            start
        };
        tokio::select! {
            biased;
            () = shutdown.as_mut() => Err(Stop::Shutdown),
            () = tokio::time::sleep_until(start) => Ok(()),
        }
    }
}
