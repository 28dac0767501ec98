//! Prometheus metrics of an API node, registered into the node's own registry (two nodes in
//! one test process keep separate counts).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use topcoins_runtime::metrics::{counter, register};

use crate::http::{CANDLES_ROUTE, METRIC_ROUTE};

#[derive(Clone)]
pub struct ApiMetrics {
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// The series of `GET /` that nearly every request ends in, counted per thread; and
    /// those of the candles and metric routes, whose answers (cached, or made ahead) are
    /// served as fast.
    top: TopSeries,
    candles: TopSeries,
    metric: TopSeries,
    /// Hash notices received, by kind.
    pub notices_received: IntCounterVec,
    /// Messages on topcoins subjects dropped as unusable, by reason.
    pub notices_rejected: IntCounterVec,
    /// Snapshots fetched from the store, by kind: once per distinct hash not pushed.
    pub snapshot_fetches: IntCounterVec,
    /// Snapshots taken from the bytes pushed as the actor stored them, by kind.
    pub snapshots_pushed: IntCounterVec,
    pub snapshot_fetch_errors: IntCounterVec,
    pub hash_mismatches: IntCounterVec,
    /// Lookups in the snapshot and merge caches.
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub merges: IntCounter,
    pub snapshot_age_seconds: prometheus::GaugeVec,
    pub stale: IntGauge,
    pub coins_served: IntGauge,
    /// Queries sent to the history database (candle pages, symbol checks, reference prices).
    pub history_reads: IntCounter,
    /// History queries that failed, by reason (`unavailable`, `database`).
    pub history_errors: IntCounterVec,
    /// Requests that presented a key, by outcome (`ok`, `invalid`, `unknown`, `limited`,
    /// `forbidden`).
    pub auth: IntCounterVec,
    /// `/v1/stream`: streams open now, opened in all, events written, resyncs by reason, and
    /// alert messages off NATS that were not JSON objects.
    pub streams_open: IntGauge,
    pub streams_opened: IntCounter,
    pub stream_events: IntCounter,
    pub stream_resyncs: IntCounterVec,
    pub stream_bad_messages: IntCounter,
}

impl ApiMetrics {
    /// Counts and times one HTTP request.
    pub fn observe_request(&self, route: &str, status: &str, seconds: f64) {
        let sharded = match route {
            "/" => Some(&self.top),
            CANDLES_ROUTE => Some(&self.candles),
            METRIC_ROUTE => Some(&self.metric),
            _ => None,
        };
        let counted = if let Some(series) = sharded {
            series.with(|top| {
                top.seconds.observe(seconds);
                match status {
                    "200" => top.ok.inc(),
                    "304" => top.not_modified.inc(),
                    _ => return false,
                }
                true
            })
        } else {
            self.http_seconds
                .with_label_values(&[route])
                .observe(seconds);
            false
        };
        if !counted {
            self.http_requests.with_label_values(&[route, status]).inc();
        }
    }

    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ];
        let http_requests = IntCounterVec::new(
            Opts::new(
                "topcoins_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "topcoins_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(buckets),
            &["route"],
        )?;
        let top = TopSeries::new(&http_requests, &http_seconds, "/");
        let candles = TopSeries::new(&http_requests, &http_seconds, CANDLES_ROUTE);
        let metric = TopSeries::new(&http_requests, &http_seconds, METRIC_ROUTE);
        registry.register(Box::new(HttpCollector {
            requests: http_requests.clone(),
            seconds: http_seconds.clone(),
            sharded: [top.clone(), candles.clone(), metric.clone()],
        }))?;
        let metrics = Self {
            top,
            candles,
            metric,
            http_requests,
            http_seconds,
            notices_received: counter(
                registry,
                "topcoins_api_notices_received_total",
                "Hash notices received by kind",
                &["kind"],
            )?,
            notices_rejected: counter(
                registry,
                "topcoins_api_notices_rejected_total",
                "Bus messages dropped as unusable, by reason",
                &["reason"],
            )?,
            snapshot_fetches: counter(
                registry,
                "topcoins_api_snapshot_fetches_total",
                "Snapshots fetched from the store by kind",
                &["kind"],
            )?,
            snapshots_pushed: counter(
                registry,
                "topcoins_api_snapshots_pushed_total",
                "Snapshots taken from the bytes pushed as they were stored (no fetch), by kind",
                &["kind"],
            )?,
            snapshot_fetch_errors: counter(
                registry,
                "topcoins_api_snapshot_fetch_errors_total",
                "Snapshot fetches that failed, by kind and reason",
                &["kind", "reason"],
            )?,
            hash_mismatches: counter(
                registry,
                "topcoins_api_hash_mismatches_total",
                "Fetched snapshots whose bytes did not match their hash",
                &["kind"],
            )?,
            cache_hits: counter(
                registry,
                "topcoins_api_cache_hits_total",
                "Cache lookups that hit, by cache",
                &["cache"],
            )?,
            cache_misses: counter(
                registry,
                "topcoins_api_cache_misses_total",
                "Cache lookups that missed, by cache",
                &["cache"],
            )?,
            merges: register(
                registry,
                IntCounter::new(
                    "topcoins_api_merges_total",
                    "Merges of a ranking and a price snapshot",
                )?,
            )?,
            snapshot_age_seconds: register(
                registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "topcoins_api_snapshot_age_seconds",
                        "Age of the snapshot being served, by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            stale: register(
                registry,
                IntGauge::new(
                    "topcoins_api_stale",
                    "1 when the node serves data it cannot confirm is current",
                )?,
            )?,
            coins_served: register(
                registry,
                IntGauge::new(
                    "topcoins_api_coins",
                    "Entries in the merged list being served",
                )?,
            )?,
            streams_open: register(
                registry,
                IntGauge::new(
                    "topcoins_api_streams_open",
                    "Streams of /v1/stream open now",
                )?,
            )?,
            streams_opened: register(
                registry,
                IntCounter::new(
                    "topcoins_api_streams_opened_total",
                    "Streams of /v1/stream opened",
                )?,
            )?,
            stream_events: register(
                registry,
                IntCounter::new(
                    "topcoins_api_stream_events_total",
                    "Events written for /v1/stream (once each, however many streams send them)",
                )?,
            )?,
            stream_resyncs: counter(
                registry,
                "topcoins_api_stream_resyncs_total",
                "resync events sent, by reason (lagged: the client fell behind the ring; \
                 replay_window: its Last-Event-ID was too old or not ours)",
                &["reason"],
            )?,
            stream_bad_messages: register(
                registry,
                IntCounter::new(
                    "topcoins_api_stream_bad_messages_total",
                    "Alert messages for the stream dropped as not JSON objects",
                )?,
            )?,
            history_reads: register(
                registry,
                IntCounter::new(
                    "topcoins_api_history_reads_total",
                    "Queries sent to the history database",
                )?,
            )?,
            history_errors: counter(
                registry,
                "topcoins_api_history_errors_total",
                "History database queries that failed, by reason",
                &["reason"],
            )?,
            auth: counter(
                registry,
                "topcoins_api_auth_total",
                "Requests to key routes, by outcome of the key check",
                &["outcome"],
            )?,
        };
        for outcome in ["ok", "invalid", "unknown", "limited", "forbidden"] {
            metrics.auth.with_label_values(&[outcome]);
        }
        for reason in ["unavailable", "database"] {
            metrics.history_errors.with_label_values(&[reason]);
        }
        for reason in [
            "too_large",
            "malformed",
            "unknown_subject",
            "unregistered",
            "bad_revocation",
        ] {
            metrics.notices_rejected.with_label_values(&[reason]);
        }
        for cache in ["merge", "candles"] {
            metrics.cache_hits.with_label_values(&[cache]);
            metrics.cache_misses.with_label_values(&[cache]);
        }
        Ok(metrics)
    }

    /// Starts the series of each kind the node takes in at zero, so rates and "never
    /// happened" are visible at once.
    pub fn init_kinds(&self, kinds: &[topcoins_schemas::Kind]) {
        for kind in kinds {
            let kind = kind.as_str();
            self.notices_received.with_label_values(&[kind]);
            self.snapshot_fetches.with_label_values(&[kind]);
            self.snapshots_pushed.with_label_values(&[kind]);
            self.hash_mismatches.with_label_values(&[kind]);
            let cache = snapshot_cache_label(kind);
            self.cache_hits.with_label_values(&[&cache]);
            self.cache_misses.with_label_values(&[&cache]);
        }
    }
}

/// The `cache` label of a kind's snapshot cache: `prices_snapshot`.
pub fn snapshot_cache_label(kind: &str) -> String {
    format!("{kind}_snapshot")
}

/// The `GET /` series, counted per thread and added into the shared series whenever the
/// registry is gathered, so a scrape is exact. Counting straight into the shared series had
/// both worker threads write the same atomics on every request: under `wrk`, 5-7 % of the
/// requests per second of `GET /?format=csv` (bench/serve.sh, with and without).
#[derive(Clone)]
struct TopSeries {
    shards: Arc<[Shard]>,
}

/// One thread's counts, on a cache line of its own.
#[repr(align(128))]
struct Shard(Mutex<TopLocal>);

struct TopLocal {
    seconds: LocalHistogram,
    ok: LocalIntCounter,
    not_modified: LocalIntCounter,
}

/// More shards than a node has worker threads: two threads rarely share one, and when they
/// do the counts are still right.
const SHARDS: usize = 16;

impl TopSeries {
    fn new(requests: &IntCounterVec, seconds: &HistogramVec, route: &str) -> Self {
        let seconds = seconds.with_label_values(&[route]);
        let ok = requests.with_label_values(&[route, "200"]);
        let not_modified = requests.with_label_values(&[route, "304"]);
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(Mutex::new(TopLocal {
                    seconds: seconds.local(),
                    ok: ok.local(),
                    not_modified: not_modified.local(),
                }))
            })
            .collect();
        Self { shards }
    }

    /// Runs `f` on this thread's shard.
    fn with<R>(&self, f: impl FnOnce(&mut TopLocal) -> R) -> R {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let shard = &self.shards[THREAD.with(|i| *i) % self.shards.len()];
        f(&mut shard.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn flush(&self) {
        for shard in self.shards.iter() {
            let top = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            top.seconds.flush();
            top.ok.flush();
            top.not_modified.flush();
        }
    }
}

/// The two HTTP metric families, registered as one collector that adds in the per-thread
/// counts first.
struct HttpCollector {
    requests: IntCounterVec,
    seconds: HistogramVec,
    sharded: [TopSeries; 3],
}

impl Collector for HttpCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut desc = self.requests.desc();
        desc.extend(self.seconds.desc());
        desc
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for series in &self.sharded {
            series.flush();
        }
        let mut families = self.requests.collect();
        families.extend(self.seconds.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests counted per thread land in the labelled series a scrape shows.
    #[test]
    fn requests_land_in_their_labelled_series() {
        let registry = Registry::new();
        let m = ApiMetrics::register(&registry).unwrap();
        for (route, status) in [("/", "200"), ("/", "200"), ("/", "304"), ("/", "400")] {
            m.observe_request(route, status, 0.001);
        }
        m.observe_request("unmatched", "404", 0.002);
        m.observe_request(CANDLES_ROUTE, "200", 0.002);
        m.observe_request(CANDLES_ROUTE, "400", 0.002);
        // From another thread too, as the node's worker threads count.
        let other = m.clone();
        std::thread::spawn(move || other.observe_request("/", "200", 0.003))
            .join()
            .unwrap();
        // What a scrape sees: gathering adds in what the threads hold.
        registry.gather();
        let count = |route, status| m.http_requests.with_label_values(&[route, status]).get();
        assert_eq!(count("/", "200"), 3);
        assert_eq!(count("/", "304"), 1);
        assert_eq!(count("/", "400"), 1);
        assert_eq!(count("unmatched", "404"), 1);
        assert_eq!(count(CANDLES_ROUTE, "200"), 1);
        assert_eq!(count(CANDLES_ROUTE, "400"), 1);
        let seconds = |route| {
            m.http_seconds
                .with_label_values(&[route])
                .get_sample_count()
        };
        assert_eq!((seconds("/"), seconds("unmatched")), (5, 1));
        assert_eq!(seconds(CANDLES_ROUTE), 2);
    }
}
