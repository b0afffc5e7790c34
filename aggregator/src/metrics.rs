//! Prometheus metrics of the aggregator and its operations endpoints: `GET /metrics`,
//! `GET /healthz` and `GET /readyz` (partitions are assigned and restored).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec, Registry};

/// The aggregator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
    /// Records between the partition's high watermark and the next offset to consume.
    pub lag: IntGaugeVec,
    /// Partitions are assigned and restored.
    pub ready: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Self {
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
            lag: r.lag_gauge(
                "aggregator_consumer_lag",
                "Records not consumed yet, per partition",
            ),
            ready: Arc::new(AtomicBool::new(false)),
            registry: r.registry().clone(),
        }
    }

    /// The registry every metric is in (served by [`ops::serve_on`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn counters_are_exposed_and_readiness_follows_the_flag() {
        let m = Metrics::new();
        let r = ops::routes(m.registry().clone(), m.ready.clone());
        assert_eq!(
            warp::test::request().path("/readyz").reply(&r).await.status(),
            503
        );
        m.ready.store(true, Ordering::Relaxed);
        m.dead_lettered.with_label_values(&["invalid_event"]).inc();
        m.lag.with_label_values(&["3"]).set(42);
        assert_eq!(
            warp::test::request().path("/readyz").reply(&r).await.status(),
            200
        );
        let body = warp::test::request().path("/metrics").reply(&r).await;
        let text = String::from_utf8(body.body().to_vec()).unwrap();
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
