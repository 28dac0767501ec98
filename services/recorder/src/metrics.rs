//! The recorder's metrics.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use topcoins_runtime::metrics::{counter, gauge, histogram};

/// Seconds from a notice's `as_of` to its candles committed: up to a day of catching up.
const LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86400.0,
];
/// Seconds one database write takes.
const WRITE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone)]
pub struct RecorderMetrics {
    /// Notices taken, by kind and outcome (`recorded`, `ignored` for a kind that makes no
    /// candles, `missing_snapshot`, `bad_snapshot`, `bad_notice`).
    pub notices: IntCounterVec,
    /// Notices delivered again (after a crash or a lapsed ack timer), by kind.
    pub redelivered: IntCounterVec,
    /// Candle rows written, by kind of snapshot.
    pub candles: IntCounterVec,
    /// Seconds from a notice's `as_of` to its commit, by kind.
    pub lag: HistogramVec,
    /// Seconds one write (a snapshot's candles, or a group's) took, by backend.
    pub write: HistogramVec,
    /// Failed database operations, by operation (`apply`, `prune`, `open`).
    pub db_errors: IntCounterVec,
    /// Candle rows deleted by retention, by interval.
    pub pruned: IntCounterVec,
    /// 1 while the last database write succeeded, by backend.
    pub db_up: IntGaugeVec,
    /// Seconds one roll-up of `1m` rows into the coarser intervals took, by backend.
    pub rollup: HistogramVec,
    /// Coarser candle rows merged into by roll-ups.
    pub rolled_up: prometheus::IntCounter,
}

impl RecorderMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            notices: counter(
                registry,
                "topcoins_recorder_notices_total",
                "Notices the recorder took, by kind and outcome",
                &["kind", "outcome"],
            )?,
            redelivered: counter(
                registry,
                "topcoins_recorder_redelivered_total",
                "Notices delivered to the recorder again (crash or lapsed ack timer), by kind",
                &["kind"],
            )?,
            candles: counter(
                registry,
                "topcoins_recorder_candles_written_total",
                "Candle rows written, by kind of snapshot",
                &["kind"],
            )?,
            lag: histogram(
                registry,
                "topcoins_recorder_lag_seconds",
                "Seconds from a notice's as_of to its candles committed",
                &["kind"],
                LAG_BUCKETS,
            )?,
            write: histogram(
                registry,
                "topcoins_recorder_write_seconds",
                "Seconds one write (the candles of one snapshot, or of a group of waiting notices) took, by backend",
                &["backend"],
                WRITE_BUCKETS,
            )?,
            db_errors: counter(
                registry,
                "topcoins_recorder_db_errors_total",
                "Failed database operations of the recorder, by operation",
                &["operation"],
            )?,
            pruned: counter(
                registry,
                "topcoins_recorder_pruned_total",
                "Candle rows deleted by retention, by interval",
                &["interval"],
            )?,
            db_up: gauge(
                registry,
                "topcoins_recorder_db_up",
                "1 while the recorder's last database write succeeded",
                &["backend"],
            )?,
            rollup: histogram(
                registry,
                "topcoins_recorder_rollup_seconds",
                "Seconds one roll-up of 1m candles into the coarser intervals took, by backend",
                &["backend"],
                WRITE_BUCKETS,
            )?,
            rolled_up: topcoins_runtime::metrics::register(
                registry,
                prometheus::IntCounter::new(
                    "topcoins_recorder_rolled_up_total",
                    "Coarser candle rows the roll-ups merged 1m candles into",
                )?,
            )?,
        };
        // Errors are exported from the start, at 0: a dashboard and an alert see "none yet".
        for operation in ["apply", "prune", "open", "rollup"] {
            metrics.db_errors.with_label_values(&[operation]);
        }
        Ok(metrics)
    }
}
