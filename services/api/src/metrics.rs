//! Prometheus metrics of an API node, registered into the node's own registry (two nodes in
//! one test process keep separate counts).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Clone)]
pub struct ApiMetrics {
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// The series of `GET /` that nearly every request ends in, resolved once: looking a
    /// series up by its labels on every request cost more than the rest of the bookkeeping.
    top_seconds: prometheus::Histogram,
    top_ok: IntCounter,
    top_not_modified: IntCounter,
    /// Hash notices received, by kind.
    pub notices_received: IntCounterVec,
    /// Messages on topcoins subjects dropped as unusable, by reason.
    pub notices_rejected: IntCounterVec,
    /// Snapshots fetched from the store, by kind: once per distinct hash.
    pub snapshot_fetches: IntCounterVec,
    pub snapshot_fetch_errors: IntCounterVec,
    pub hash_mismatches: IntCounterVec,
    /// Lookups in the snapshot and merge caches.
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub merges: IntCounter,
    pub snapshot_age_seconds: prometheus::GaugeVec,
    pub stale: IntGauge,
    pub coins_served: IntGauge,
}

impl ApiMetrics {
    /// Counts and times one HTTP request.
    pub fn observe_request(&self, route: &str, status: &str, seconds: f64) {
        match (route, status) {
            ("/", "200") => self.top_ok.inc(),
            ("/", "304") => self.top_not_modified.inc(),
            _ => self.http_requests.with_label_values(&[route, status]).inc(),
        }
        if route == "/" {
            self.top_seconds.observe(seconds);
        } else {
            self.http_seconds
                .with_label_values(&[route])
                .observe(seconds);
        }
    }

    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            c: C,
        ) -> prometheus::Result<C> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ];
        let http_requests = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "topcoins_http_requests_total",
                    "HTTP requests by route and status",
                ),
                &["route", "status"],
            )?,
        )?;
        let http_seconds = reg(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "topcoins_http_request_duration_seconds",
                    "HTTP request latency by route",
                )
                .buckets(buckets),
                &["route"],
            )?,
        )?;
        let metrics = Self {
            top_seconds: http_seconds.with_label_values(&["/"]),
            top_ok: http_requests.with_label_values(&["/", "200"]),
            top_not_modified: http_requests.with_label_values(&["/", "304"]),
            http_requests,
            http_seconds,
            notices_received: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_notices_received_total",
                        "Hash notices received by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            notices_rejected: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_notices_rejected_total",
                        "Bus messages dropped as unusable, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            snapshot_fetches: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_snapshot_fetches_total",
                        "Snapshots fetched from the store by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            snapshot_fetch_errors: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_snapshot_fetch_errors_total",
                        "Snapshot fetches that failed, by kind and reason",
                    ),
                    &["kind", "reason"],
                )?,
            )?,
            hash_mismatches: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_hash_mismatches_total",
                        "Fetched snapshots whose bytes did not match their hash",
                    ),
                    &["kind"],
                )?,
            )?,
            cache_hits: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_cache_hits_total",
                        "Cache lookups that hit, by cache",
                    ),
                    &["cache"],
                )?,
            )?,
            cache_misses: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "topcoins_api_cache_misses_total",
                        "Cache lookups that missed, by cache",
                    ),
                    &["cache"],
                )?,
            )?,
            merges: reg(
                registry,
                IntCounter::new(
                    "topcoins_api_merges_total",
                    "Merges of a ranking and a price snapshot",
                )?,
            )?,
            snapshot_age_seconds: reg(
                registry,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "topcoins_api_snapshot_age_seconds",
                        "Age of the snapshot being served, by kind",
                    ),
                    &["kind"],
                )?,
            )?,
            stale: reg(
                registry,
                IntGauge::new(
                    "topcoins_api_stale",
                    "1 when the node serves data it cannot confirm is current",
                )?,
            )?,
            coins_served: reg(
                registry,
                IntGauge::new(
                    "topcoins_api_coins",
                    "Entries in the merged list being served",
                )?,
            )?,
        };
        // Known label values start at zero, so rates and "never happened" are visible at once.
        for kind in ["prices", "ranking"] {
            metrics.notices_received.with_label_values(&[kind]);
            metrics.snapshot_fetches.with_label_values(&[kind]);
            metrics.hash_mismatches.with_label_values(&[kind]);
        }
        for reason in ["too_large", "malformed", "unknown_subject"] {
            metrics.notices_rejected.with_label_values(&[reason]);
        }
        for cache in ["prices_snapshot", "ranking_snapshot", "merge"] {
            metrics.cache_hits.with_label_values(&[cache]);
            metrics.cache_misses.with_label_values(&[cache]);
        }
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series resolved once are the labelled ones a scrape shows, not copies beside them.
    #[test]
    fn requests_land_in_their_labelled_series() {
        let m = ApiMetrics::register(&Registry::new()).unwrap();
        for (route, status) in [("/", "200"), ("/", "200"), ("/", "304"), ("/", "400")] {
            m.observe_request(route, status, 0.001);
        }
        m.observe_request("unmatched", "404", 0.002);
        let count = |route, status| m.http_requests.with_label_values(&[route, status]).get();
        assert_eq!(count("/", "200"), 2);
        assert_eq!(count("/", "304"), 1);
        assert_eq!(count("/", "400"), 1);
        assert_eq!(count("unmatched", "404"), 1);
        let seconds = |route| {
            m.http_seconds
                .with_label_values(&[route])
                .get_sample_count()
        };
        assert_eq!((seconds("/"), seconds("unmatched")), (4, 1));
    }
}
