//! Prometheus metrics of the scorer and its operations endpoints: `GET /metrics`,
//! `GET /healthz` (the process runs) and `GET /readyz` (a model set is loaded and partitions are
//! assigned).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use warp::http::StatusCode;
use warp::reply::Reply;
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
        for m in [
            Box::new(windows_in.clone()) as Box<dyn prometheus::core::Collector>,
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
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The text exposition of every metric.
    pub fn text(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("metrics encode");
        buf
    }

    /// Marks `version` as the model set in use.
    pub fn set_version(&self, version: &str) {
        self.model_version.reset();
        self.model_version.with_label_values(&[version]).set(1);
    }
}

/// The operations routes.
pub fn routes(metrics: Metrics) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let m = metrics.clone();
    let text = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(m.text(), "content-type", "text/plain; version=0.0.4").into_response()
    });
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ready = warp::path!("readyz").and(warp::get()).map(move || {
        let ok = metrics.ready.load(Ordering::Relaxed);
        let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"ready": ok})),
            status,
        )
        .into_response()
    });
    text.or(health)
        .unify()
        .or(ready)
        .unify()
        .or(warp::any().map(|| StatusCode::NOT_FOUND.into_response()))
        .unify()
}

/// Serves the operations routes on `listener` until the task is dropped.
pub async fn serve(metrics: Metrics, listener: tokio::net::TcpListener) {
    warp::serve(routes(metrics)).incoming(listener).run().await;
}

#[cfg(test)]
mod tests {
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
