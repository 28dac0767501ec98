//! The alerts process's metrics (the operators' alert rules in
//! `deploy/prometheus/alerts.yml` read them).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Registry};
use topcoins_runtime::metrics::{counter, register};

/// Seconds one evaluation (one snapshot's values against every rule) takes.
const EVALUATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

#[derive(Clone)]
pub struct AlertsMetrics {
    /// Delivery attempts, by channel kind and outcome (`delivered`, `retry`, `failed`,
    /// `disabled`).
    pub deliveries: IntCounterVec,
    /// Messages in the outbox awaiting delivery.
    pub pending: IntGauge,
    /// Alerts committed, by kind (`fired`, `resolved`, `test`).
    pub fired: IntCounterVec,
    /// Seconds one evaluation took.
    pub evaluation: Histogram,
    /// Rules being evaluated.
    pub rules: IntGauge,
    /// Bus messages and snapshots that could not be used, by reason.
    pub rejected: IntCounterVec,
    /// Failed database operations, by operation.
    pub db_errors: IntCounterVec,
}

impl AlertsMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            deliveries: counter(
                registry,
                "topcoins_alert_deliveries_total",
                "Alert delivery attempts, by channel and outcome",
                &["channel", "outcome"],
            )?,
            pending: register(
                registry,
                IntGauge::new(
                    "topcoins_alert_outbox_pending",
                    "Alert messages awaiting delivery",
                )?,
            )?,
            fired: counter(
                registry,
                "topcoins_alerts_fired_total",
                "Alerts committed to the outbox, by kind",
                &["kind"],
            )?,
            evaluation: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "topcoins_alert_evaluation_seconds",
                        "Seconds one evaluation of a snapshot's values against the rules took",
                    )
                    .buckets(EVALUATION_BUCKETS.to_vec()),
                )?,
            )?,
            rules: register(
                registry,
                IntGauge::new("topcoins_alert_rules", "Alert rules being evaluated")?,
            )?,
            rejected: counter(
                registry,
                "topcoins_alert_rejected_total",
                "Notices or snapshots the alerts process could not use, by reason",
                &["reason"],
            )?,
            db_errors: counter(
                registry,
                "topcoins_alert_db_errors_total",
                "Failed database operations of the alerts process, by operation",
                &["operation"],
            )?,
        })
    }
}
