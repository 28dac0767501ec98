//! The backfill's Prometheus metrics. Provider calls themselves are counted by
//! `topcoins_upstream` (`topcoins_upstream_requests_total{provider="cryptocompare"}`, bodies
//! refused in `topcoins_upstream_rejected_total`); these say what the calls brought.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use topcoins_runtime::metrics::{counter, gauge};

#[derive(Clone)]
pub struct BackfillMetrics {
    /// Histo pages asked for, by interval and outcome (`ok` or an error reason).
    pub pages: IntCounterVec,
    /// Candles written, by interval.
    pub candles: IntCounterVec,
    /// Rows the provider filled with zeros (before a coin had data), skipped, by interval.
    pub zero_filled: IntCounterVec,
    /// Rate-limit answers, each followed by a wait.
    pub rate_limited: IntCounterVec,
    /// Coins of the top set whose history is not complete yet, by interval, after a run.
    pub pending: IntGaugeVec,
}

impl BackfillMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            pages: counter(
                registry,
                "topcoins_backfill_pages_total",
                "Histo pages asked for, by interval and outcome",
                &["interval", "outcome"],
            )?,
            candles: counter(
                registry,
                "topcoins_backfill_candles_total",
                "Backfilled candles written, by interval",
                &["interval"],
            )?,
            zero_filled: counter(
                registry,
                "topcoins_backfill_zero_filled_rows_total",
                "Zero-filled provider rows skipped (before a coin had data), by interval",
                &["interval"],
            )?,
            rate_limited: counter(
                registry,
                "topcoins_backfill_rate_limited_total",
                "Rate-limit answers to backfill calls, by interval",
                &["interval"],
            )?,
            pending: gauge(
                registry,
                "topcoins_backfill_pending_coins",
                "Coins of the top set whose backfill is not complete, by interval",
                &["interval"],
            )?,
        })
    }
}
