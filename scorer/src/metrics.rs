//! Prometheus metrics of the scorer and its operations endpoints: `GET /metrics`,
//! `GET /healthz` (the process runs) and `GET /readyz` (a model set is loaded and partitions are
//! assigned).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use warp::Filter;

/// The scorer's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
    /// Records behind the high watermark per input partition (from the client's statistics:
    /// high watermark minus committed offset).
    pub lag: IntGaugeVec,
    /// Ready: a model set is loaded and the consumer runs.
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
        let windows_in = counter("scorer_windows_in_total", "KPI windows consumed");
        let windows_scored = counter("scorer_windows_scored_total", "KPI windows scored");
        let anomalies_flagged = counter("scorer_anomalies_flagged_total", "Windows flagged as anomalies");
        let windows_skipped = IntCounterVec::new(
            Opts::new("scorer_windows_skipped_total", "Windows not scored, by reason"),
            &["reason"],
        )
        .expect("metric");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("scorer_batch_seconds", "Inference time per batch (both models)")
                .buckets(prometheus::exponential_buckets(0.00005, 2.0, 16).expect("buckets")),
        )
        .expect("metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("scorer_batch_windows", "Windows per inference batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).expect("buckets")),
        )
        .expect("metric");
        let reloads = IntCounterVec::new(
            Opts::new("scorer_model_reloads_total", "Model set reloads by result"),
            &["result"],
        )
        .expect("metric");
        let model_version = IntGaugeVec::new(
            Opts::new("scorer_model_info", "1 for the model set version in use"),
            &["version"],
        )
        .expect("metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "scorer_consumer_lag",
                "KPI-window records not yet scored and committed, per partition",
            ),
            &["partition"],
        )
        .expect("metric");
        for m in [
            Box::new(windows_in.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(lag.clone()),
            Box::new(windows_skipped.clone()),
            Box::new(windows_scored.clone()),
            Box::new(anomalies_flagged.clone()),
            Box::new(batch_seconds.clone()),
            Box::new(batch_size.clone()),
            Box::new(reloads.clone()),
            Box::new(model_version.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Metrics {
            registry,
            windows_in,
            windows_skipped,
            windows_scored,
            anomalies_flagged,
            batch_seconds,
            batch_size,
            reloads,
            model_version,
            lag,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The text exposition of every metric.
    pub fn text(&self) -> Vec<u8> {
        ops::metrics_text(&self.registry)
    }

    /// Marks `version` as the model set in use.
    pub fn set_version(&self, version: &str) {
        self.model_version.reset();
        self.model_version.with_label_values(&[version]).set(1);
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
    async fn ready_only_once_marked_and_metrics_are_exposed() {
        let m = Metrics::new();
        let r = routes(m.clone());
        let res = warp::test::request().path("/readyz").reply(&r).await;
        assert_eq!(res.status(), 503);
        m.ready.store(true, Ordering::Relaxed);
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
