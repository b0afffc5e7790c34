//! Prometheus metrics of the alerter (served with `/healthz` and `/readyz` by `ops`).

use ops::metrics::ConsumerMetrics;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

/// The alerter's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `alerter_consumer_lag` (records not consumed yet, per partition), the readiness flag
    /// (partitions are assigned and restored) and the registry holding them all.
    pub consumer: ConsumerMetrics,
    /// Verdicts consumed (not counting the replay of records a restored state already holds).
    pub verdicts_in: IntCounter,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_lettered: IntCounterVec,
    /// Alerts open now, over the owned partitions.
    pub alerts_open: IntGauge,
    /// Alerts opened.
    pub alerts_opened: IntCounter,
    /// Alerts resolved.
    pub alerts_resolved: IntCounter,
    /// Requests a receiver accepted, by receiver.
    pub sent: IntCounterVec,
    /// Attempts that failed and were retried (network error, timeout, 408, 429, 5xx), by receiver.
    pub retried: IntCounterVec,
    /// Notifications a receiver refused (other 4xx), dropped after logging, by receiver.
    pub failed: IntCounterVec,
    /// Wall time from a verdict's scoring to its alert's first delivery to a receiver.
    pub delivery_delay_seconds: Histogram,
    /// Seconds per checkpoint (deliveries, checkpoint rows, commit).
    pub checkpoint_seconds: Histogram,
    /// Unix time of the last checkpoint saved.
    pub last_checkpoint_timestamp: IntGauge,
}

impl Default for Metrics {
    /// Fresh metrics in their own registry.
    fn default() -> Self {
        let r = ops::metrics::Registrar::new();
        let by_receiver = |name: &str, help: &str| r.counter_vec(name, help, &["receiver"]);
        Metrics {
            verdicts_in: r.counter("alerter_verdicts_in_total", "Anomaly verdicts consumed"),
            dead_lettered: r.counter_vec(
                "alerter_dead_lettered_total",
                "Records dead-lettered, by reason",
                &["reason"],
            ),
            alerts_open: r.gauge("alerter_alerts_open", "Alerts open now"),
            alerts_opened: r.counter("alerter_alerts_opened_total", "Alerts opened"),
            alerts_resolved: r.counter("alerter_alerts_resolved_total", "Alerts resolved"),
            sent: by_receiver("alerter_notifications_sent_total", "Requests a receiver accepted"),
            retried: by_receiver(
                "alerter_notifications_retried_total",
                "Failed attempts retried (network, timeout, 408, 429, 5xx)",
            ),
            failed: by_receiver(
                "alerter_notifications_failed_total",
                "Notifications refused by a receiver (4xx), not retried",
            ),
            delivery_delay_seconds: r.histogram(
                "alerter_delivery_delay_seconds",
                "From a verdict's scoring to its alert's delivery",
                ops::metrics::exponential_buckets(0.01, 2.0, 14),
            ),
            checkpoint_seconds: r.histogram(
                "alerter_checkpoint_seconds",
                "Checkpoint duration",
                ops::metrics::exponential_buckets(0.001, 2.0, 14),
            ),
            last_checkpoint_timestamp: r.gauge(
                "alerter_last_checkpoint_timestamp_seconds",
                "Unix time of the last checkpoint saved",
            ),
            consumer: r.consumer("alerter_consumer_lag", "Records not consumed yet, per partition"),
        }
    }
}

impl AsRef<ConsumerMetrics> for Metrics {
    fn as_ref(&self) -> &ConsumerMetrics {
        &self.consumer
    }
}
