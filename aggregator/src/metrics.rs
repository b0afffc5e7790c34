//! Prometheus metrics of the aggregator and its operations endpoints: `GET /metrics`,
//! `GET /healthz` and `GET /readyz` (partitions are assigned and restored).

use ops::metrics::ConsumerMetrics;
use prometheus::{Histogram, IntCounter, IntCounterVec};

/// The aggregator's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `aggregator_consumer_lag` (records not consumed yet, per partition), the readiness flag
    /// (partitions are assigned and restored) and the registry of every metric here.
    pub consumer: ConsumerMetrics,
    /// Records consumed (not counting the replay of records a restored state already holds).
    pub events_in: IntCounter,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_lettered: IntCounterVec,
    /// Events later than the allowed lateness, sent to the late-events topic.
    pub late: IntCounter,
    /// KPI windows published.
    pub windows_out: IntCounter,
    /// Restored partition states whose watermark lay beyond the clock plus the allowed skew
    /// and was clamped back ([`crate::engine::PartitionState::clamp_watermark`]).
    pub watermarks_clamped: IntCounter,
    /// Daily rows upserted (per-agent rows and roll-ups).
    pub rows_written: IntCounter,
    /// Seconds per checkpoint (deliveries, rows, roll-ups, checkpoint rows, commit).
    pub checkpoint_seconds: Histogram,
}

impl AsRef<ConsumerMetrics> for Metrics {
    fn as_ref(&self) -> &ConsumerMetrics {
        &self.consumer
    }
}

impl Default for Metrics {
    /// Fresh metrics in their own registry.
    fn default() -> Self {
        let r = ops::metrics::Registrar::new();
        Metrics {
            events_in: r.counter("aggregator_events_in_total", "Task-event records consumed"),
            dead_lettered: r.counter_vec(
                "aggregator_dead_lettered_total",
                "Records dead-lettered, by reason",
                &["reason"],
            ),
            late: r.counter(
                "aggregator_late_events_total",
                "Events beyond the allowed lateness",
            ),
            windows_out: r.counter("aggregator_windows_out_total", "KPI windows published"),
            watermarks_clamped: r.counter(
                "aggregator_watermarks_clamped_total",
                "Restored partition watermarks beyond the clock plus the allowed skew, clamped back",
            ),
            rows_written: r.counter("aggregator_daily_rows_written_total", "Daily rows upserted"),
            checkpoint_seconds: r.histogram(
                "aggregator_checkpoint_seconds",
                "Checkpoint duration",
                ops::metrics::exponential_buckets(0.001, 2.0, 14),
            ),
            consumer: r.consumer(
                "aggregator_consumer_lag",
                "Records not consumed yet, per partition",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names and labels the alerts and dashboards use (the readiness flag and the routes
    /// are `ops`'s, tested there).
    #[test]
    fn counters_and_lag_are_exposed_under_their_names() {
        let m = Metrics::default();
        m.dead_lettered.with_label_values(&["invalid_event"]).inc();
        m.consumer.set_lags([("3".to_string(), 42)]);
        let text = String::from_utf8(ops::metrics_text(m.consumer.registry())).unwrap();
        assert!(
            text.contains("aggregator_dead_lettered_total{reason=\"invalid_event\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("aggregator_consumer_lag{partition=\"3\"} 42"),
            "{text}"
        );
    }
}
