//! What every service shares for operations:
//! - [`init_tracing`]: logs on stderr, filtered by `RUST_LOG` (default `info`), as text or, with
//!   `AGENTOPS_LOG_FORMAT=json`, as one JSON object per line;
//! - [`routes`] / [`serve`]: `GET /metrics` (Prometheus text format of a registry),
//!   `GET /healthz` (the process runs) and `GET /readyz` (the service says it is ready).
#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus::{Encoder as _, Registry};
use warp::http::StatusCode;
use warp::reply::Reply;
use warp::Filter;

/// Installs the global tracing subscriber; `default_filter` applies when `RUST_LOG` is unset.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("AGENTOPS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The text exposition of every metric in `registry`.
pub fn metrics_text(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("metrics encode");
    buf
}

/// The operations routes over `registry`, ready while `ready` is set.
pub fn routes(
    registry: Registry,
    ready: Arc<AtomicBool>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let text = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics_text(&registry),
            "content-type",
            "text/plain; version=0.0.4",
        )
        .into_response()
    });
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let readiness = warp::path!("readyz").and(warp::get()).map(move || {
        let ok = ready.load(Ordering::Relaxed);
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(warp::reply::json(&serde_json::json!({"ready": ok})), status).into_response()
    });
    text.or(health)
        .unify()
        .or(readiness)
        .unify()
        .or(warp::any().map(|| StatusCode::NOT_FOUND.into_response()))
        .unify()
}

/// Serves [`routes`] on `listener` until the task is dropped.
pub async fn serve(registry: Registry, ready: Arc<AtomicBool>, listener: tokio::net::TcpListener) {
    warp::serve(routes(registry, ready))
        .incoming(listener)
        .run()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("things_total", "Things").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(3);
        let ready = Arc::new(AtomicBool::new(false));
        let r = routes(registry, ready.clone());
        assert_eq!(
            warp::test::request().path("/readyz").reply(&r).await.status(),
            503
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            warp::test::request().path("/readyz").reply(&r).await.status(),
            200
        );
        assert_eq!(
            warp::test::request().path("/healthz").reply(&r).await.status(),
            200
        );
        let res = warp::test::request().path("/metrics").reply(&r).await;
        assert!(String::from_utf8_lossy(res.body()).contains("things_total 3"));
        assert_eq!(warp::test::request().path("/other").reply(&r).await.status(), 404);
    }
}
