//! The operations routes: `GET /metrics`, `GET /healthz`, `GET /readyz`.

use std::net::SocketAddr;

use prometheus::{Encoder as _, Registry};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::Readiness;

/// The text exposition of every metric in `registry`.
pub fn metrics_text(registry: &Registry) -> Vec<u8> {
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("metrics encode");
    buf
}

/// The three routes alone, for a service that serves them next to its own (the gateway, the
/// auth-api): any other request is rejected, for the service's own fallback to answer.
/// - `GET /metrics`: the text exposition of `registry`;
/// - `GET /healthz`: `200 {"status": "ok"}` while the process serves;
/// - `GET /readyz`: every probe of `readiness` awaited; `200` when all passed, `503` otherwise;
///   the body names each probe with its result (`{"broker": false, "store": true}`).
pub fn endpoints(
    registry: Registry,
    readiness: impl Into<Readiness> + 'static,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let readiness = readiness.into();
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(metrics_text(&registry), "content-type", prometheus::TEXT_FORMAT)
            .into_response()
    });
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ready = warp::path!("readyz").and(warp::get()).then(move || {
        let readiness = readiness.clone();
        async move {
            let report = readiness.check().await;
            let status = if report.ready() {
                StatusCode::OK
            } else {
                tracing::debug!(failing = ?report.failing(), "not ready");
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&report.body()), status).into_response()
        }
    });
    metrics.or(health).unify().or(ready).unify()
}

/// [`endpoints`] and `404` for anything else: the whole server of a service whose only HTTP
/// surface is operations (aggregator, scorer, alerter).
pub fn routes(
    registry: Registry,
    readiness: impl Into<Readiness> + 'static,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    endpoints(registry, readiness)
        .or(warp::any().map(|| StatusCode::NOT_FOUND.into_response()))
        .unify()
}

/// A listener that could not be bound; it names the settings key the address came from
/// (`aggregator.metrics_listen: cannot bind 0.0.0.0:9100`), the I/O error is its source.
#[derive(Debug)]
pub struct BindError {
    key: String,
    listen: SocketAddr,
    source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: cannot bind {}", self.key, self.listen)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds `listen`, the address of the settings key `key` (named by the error).
pub async fn bind(listen: SocketAddr, key: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(listen).await.map_err(|source| BindError {
        key: key.to_string(),
        listen,
        source,
    })
}

/// Binds `listen` (settings key `key`, see [`bind`]) and serves [`routes`] there on `runtime`
/// for as long as it runs: the operations server of a service whose work runs on a thread of
/// its own (aggregator, scorer, alerter).
pub fn serve_on(
    runtime: &tokio::runtime::Handle,
    listen: SocketAddr,
    key: &str,
    registry: Registry,
    readiness: impl Into<Readiness>,
) -> Result<(), BindError> {
    let listener = runtime.block_on(bind(listen, key))?;
    runtime.spawn(serve(registry, readiness.into(), listener));
    Ok(())
}

/// Serves [`routes`] on `listener` until the task is dropped.
pub async fn serve(registry: Registry, readiness: impl Into<Readiness> + 'static, listener: TcpListener) {
    warp::serve(routes(registry, readiness))
        .incoming(listener)
        .run()
        .await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("things_total", "Things").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(3);
        let ready = Arc::new(AtomicBool::new(false));
        let r = routes(registry, ready.clone());
        let res = warp::test::request().path("/readyz").reply(&r).await;
        assert_eq!(res.status(), 503);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(res.body()).unwrap(),
            serde_json::json!({"ready": false})
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            warp::test::request().path("/readyz").reply(&r).await.status(),
            200
        );
        let res = warp::test::request().path("/healthz").reply(&r).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body().as_ref(), br#"{"status":"ok"}"#);
        let res = warp::test::request().path("/metrics").reply(&r).await;
        assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4");
        assert!(String::from_utf8_lossy(res.body()).contains("things_total 3"));
        assert_eq!(warp::test::request().path("/other").reply(&r).await.status(), 404);
    }

    #[tokio::test]
    async fn a_bind_error_names_the_settings_key() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr, "scorer.metrics_listen").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("scorer.metrics_listen: cannot bind {addr}")
        );
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(
            source.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::AddrInUse
        );
    }

    #[test]
    fn serve_on_serves_the_routes() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        serve_on(
            runtime.handle(),
            addr,
            "x.metrics_listen",
            Registry::new(),
            Readiness::new(),
        )
        .unwrap();
        let answer = runtime.block_on(async {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        });
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
    }

    #[tokio::test]
    async fn readyz_names_the_failing_probe() {
        let readiness = Readiness::new()
            .probe("broker", || async { false })
            .probe("store", || async { true });
        let r = routes(Registry::new(), readiness);
        let res = warp::test::request().path("/readyz").reply(&r).await;
        assert_eq!(res.status(), 503);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(res.body()).unwrap(),
            serde_json::json!({"broker": false, "store": true})
        );
    }

    #[tokio::test]
    async fn endpoints_leave_other_requests_to_the_service() {
        let e = endpoints(Registry::new(), Readiness::new());
        assert!(warp::test::request().path("/v1/events").filter(&e).await.is_err());
        let post = warp::test::request()
            .method("POST")
            .path("/healthz")
            .filter(&e)
            .await;
        assert!(post.is_err());
    }
}
