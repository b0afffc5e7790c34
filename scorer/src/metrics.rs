//! Prometheus metrics of the scorer and its operations endpoints: `GET /metrics`,
//! `GET /healthz` (the process runs) and `GET /readyz` (a model set is loaded and partitions are
//! assigned).

use ops::metrics::ConsumerMetrics;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec};

/// The scorer's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `scorer_consumer_lag` (records behind the high watermark per input partition, from the
    /// client's statistics: high watermark minus committed offset), the readiness flag (a model
    /// set is loaded and the consumer runs) and the registry of every metric here.
    pub consumer: ConsumerMetrics,
    /// KPI windows consumed.
    pub windows_in: IntCounter,
    /// Windows skipped, by reason (`undecodable`, `window_length`, `stale`, `warm_up`).
    pub windows_skipped: IntCounterVec,
    /// Windows scored.
    pub windows_scored: IntCounter,
    /// Windows flagged as anomalies.
    pub anomalies_flagged: IntCounter,
    /// Seconds per inference batch (both models).
    pub batch_seconds: Histogram,
    /// Windows per inference batch.
    pub batch_size: Histogram,
    /// Model reloads by result (`loaded`, `refused`).
    pub reloads: IntCounterVec,
    /// 1 for the version in use.
    pub model_version: IntGaugeVec,
}

impl Metrics {
    /// Marks `version` as the model set in use.
    pub fn set_version(&self, version: &str) {
        self.model_version.reset();
        self.model_version.with_label_values(&[version]).set(1);
    }
}

impl Default for Metrics {
    /// Fresh metrics in their own registry.
    fn default() -> Self {
        let r = ops::metrics::Registrar::new();
        let buckets = ops::metrics::exponential_buckets;
        Metrics {
            windows_in: r.counter("scorer_windows_in_total", "KPI windows consumed"),
            consumer: r.consumer(
                "scorer_consumer_lag",
                "KPI-window records not yet scored and committed, per partition",
            ),
            windows_skipped: r.counter_vec(
                "scorer_windows_skipped_total",
                "Windows not scored, by reason",
                &["reason"],
            ),
            windows_scored: r.counter("scorer_windows_scored_total", "KPI windows scored"),
            anomalies_flagged: r.counter("scorer_anomalies_flagged_total", "Windows flagged as anomalies"),
            batch_seconds: r.histogram(
                "scorer_batch_seconds",
                "Inference time per batch (both models)",
                buckets(0.00005, 2.0, 16),
            ),
            batch_size: r.histogram(
                "scorer_batch_windows",
                "Windows per inference batch",
                buckets(1.0, 2.0, 12),
            ),
            reloads: r.counter_vec(
                "scorer_model_reloads_total",
                "Model set reloads by result",
                &["result"],
            ),
            model_version: r.gauge_vec(
                "scorer_model_info",
                "1 for the model set version in use",
                &["version"],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[tokio::test]
    async fn ready_only_once_marked_and_metrics_are_exposed() {
        let m = Metrics::default();
        let r = ops::routes(m.consumer.registry().clone(), m.consumer.ready.clone());
        let res = warp::test::request().path("/readyz").reply(&r).await;
        assert_eq!(res.status(), 503);
        m.consumer.ready.store(true, Ordering::Relaxed);
        m.windows_in.inc();
        m.set_version("v1");
        let res = warp::test::request().path("/readyz").reply(&r).await;
        assert_eq!(res.status(), 200);
        let res = warp::test::request().path("/metrics").reply(&r).await;
        let body = String::from_utf8(res.body().to_vec()).unwrap();
        assert!(body.contains("scorer_windows_in_total 1"), "{body}");
        assert!(body.contains("scorer_model_info{version=\"v1\"} 1"), "{body}");
        let res = warp::test::request().path("/nope").reply(&r).await;
        assert_eq!(res.status(), 404);
    }
}
