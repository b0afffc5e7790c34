//! Prometheus metrics of the aggregator and its operations endpoints: `GET /metrics`,
//! `GET /healthz` and `GET /readyz` (partitions are assigned and restored).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use warp::Filter;

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
        let registry = Registry::new();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("metric");
        let events_in = counter("aggregator_events_in_total", "Task-event records consumed");
        let late = counter(
            "aggregator_late_events_total",
            "Events beyond the allowed lateness",
        );
        let windows_out = counter("aggregator_windows_out_total", "KPI windows published");
        let rows_written = counter("aggregator_daily_rows_written_total", "Daily rows upserted");
        let watermarks_clamped = counter(
            "aggregator_watermarks_clamped_total",
            "Restored partition watermarks beyond the clock plus the allowed skew, clamped back",
        );
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "aggregator_dead_lettered_total",
                "Records dead-lettered, by reason",
            ),
            &["reason"],
        )
        .expect("metric");
        let checkpoint_seconds = Histogram::with_opts(
            HistogramOpts::new("aggregator_checkpoint_seconds", "Checkpoint duration")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).expect("buckets")),
        )
        .expect("metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "aggregator_consumer_lag",
                "Records not consumed yet, per partition",
            ),
            &["partition"],
        )
        .expect("metric");
        for m in [
            Box::new(events_in.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(dead_lettered.clone()),
            Box::new(late.clone()),
            Box::new(windows_out.clone()),
            Box::new(watermarks_clamped.clone()),
            Box::new(rows_written.clone()),
            Box::new(checkpoint_seconds.clone()),
            Box::new(lag.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Metrics {
            registry,
            events_in,
            dead_lettered,
            late,
            windows_out,
            watermarks_clamped,
            rows_written,
            checkpoint_seconds,
            lag,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The text exposition of every metric.
    pub fn text(&self) -> Vec<u8> {
        ops::metrics_text(&self.registry)
    }
}

/// The operations routes (`/metrics`, `/healthz`, `/readyz`).
pub fn routes(
    metrics: Metrics,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    ops::routes(metrics.registry, metrics.ready)
}

/// Serves the operations routes on `listener` until the task is dropped.
pub async fn serve(metrics: Metrics, listener: tokio::net::TcpListener) {
    ops::serve(metrics.registry, metrics.ready, listener).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn counters_are_exposed_and_readiness_follows_the_flag() {
        let m = Metrics::new();
        let r = routes(m.clone());
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
