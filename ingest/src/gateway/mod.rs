//! The HTTP gateway (warp): `POST /v1/events` takes a JSON array of task events from a tenant's
//! API key, validates each event, publishes the valid ones and answers per event.
//!
//! Guarantees:
//! - **accepted means durable**: an event is reported `accepted` only after the broker
//!   acknowledged it (idempotent producer, `acks=all`);
//! - a full producer queue answers `429` and a broker that does not acknowledge in time answers
//!   `503`, both with `Retry-After`; events reported `accepted` in such an answer are durable,
//!   the others were not delivered (retrying them is safe: the aggregator de-duplicates by
//!   `event_id`);
//! - one bad event never costs its valid neighbours: each is judged alone;
//! - nobody writes into another tenant: an event whose `tenant_id` is not the key's tenant is
//!   rejected;
//! - no event from the future: one whose `completed_at` is more than
//!   `events.max_future_skew_secs` ahead of the gateway's clock is rejected (`future_event`), so
//!   one producer's broken clock cannot move the watermark of the partition it shares with
//!   other tenants.
//!
//! `POST /v1/traces` takes OpenTelemetry traces (OTLP/HTTP) through the same keys and publishing
//! path ([`crate::otlp`]).
//!
//! Also, served by [`ops::endpoints`]: `GET /healthz` (liveness), `GET /readyz` (the probes
//! `broker` and `store` reachable), `GET /metrics` (Prometheus).
//!
//! Layout: [`handler`] (the request flow of `POST /v1/events`), [`response`] (the per-event
//! [`EventStatus`] and the error body), [`sink`] (where accepted events go: [`EventSink`],
//! [`KafkaEventSink`]), `metrics.rs` (the counters); this module: the shared state, the
//! routes and the API-key commands.

use std::sync::Arc;

use schemas::time::now_ms;
use store::{ApiKeyStore, Store};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::api_key;

pub mod handler;
mod metrics;
pub mod response;
pub mod sink;

pub use response::{EventResult, EventStatus, RejectReason, Rejection};
pub use sink::{EventSink, KafkaEventSink, SinkError};

use metrics::Metrics;
use response::error_reply;

/// Limits of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Largest body in bytes.
    pub max_body_bytes: u64,
    /// How far an event's `completed_at` may lie ahead of the gateway's clock (ms).
    pub max_future_skew_ms: i64,
}

/// The gateway's shared state.
pub struct Gateway {
    sink: Arc<dyn EventSink>,
    store: Arc<dyn Store>,
    limits: Limits,
    metrics: Metrics,
    readiness: ops::Readiness,
    otlp: crate::otlp::Otlp,
}

impl Gateway {
    /// The gateway over a sink and the store that holds the API keys, with the default
    /// `[ingest.otlp]` mapping.
    pub fn new(sink: Arc<dyn EventSink>, store: Arc<dyn Store>, limits: Limits) -> Arc<Gateway> {
        let defaults = settings::Settings::load(None, &Default::default()).expect("default settings load");
        Gateway::with_otlp(sink, store, limits, &defaults.ingest.otlp)
    }

    /// The gateway with the given `[ingest.otlp]` mapping of `POST /v1/traces`.
    pub fn with_otlp(
        sink: Arc<dyn EventSink>,
        store: Arc<dyn Store>,
        limits: Limits,
        otlp: &settings::Otlp,
    ) -> Arc<Gateway> {
        let metrics = Metrics::new();
        let otlp = crate::otlp::Otlp {
            mapper: crate::otlp::mapping::Mapper::new(otlp),
            metrics: crate::otlp::Metrics::new(&metrics.registry),
        };
        let readiness = {
            let (sink, store) = (sink.clone(), store.clone());
            ops::Readiness::new()
                .probe("broker", move || {
                    let sink = sink.clone();
                    async move { sink.ready().await }
                })
                .probe("store", move || {
                    let store = store.clone();
                    async move { store.applied_migrations().await.is_ok() }
                })
        };
        Arc::new(Gateway {
            sink,
            store,
            limits,
            metrics,
            readiness,
            otlp,
        })
    }

    pub(crate) fn otlp(&self) -> &crate::otlp::Otlp {
        &self.otlp
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts a request by status and observes its latency under `route`.
    pub(crate) fn record_request(&self, route: &str, status: StatusCode, started: std::time::Instant) {
        self.metrics.record_request(route, status, started);
    }
}

/// Every route of the gateway.
pub fn routes(
    gateway: Arc<Gateway>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with = {
        let g = gateway.clone();
        warp::any().map(move || g.clone())
    };
    let events = warp::path!("v1" / "events")
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(gateway.limits.max_body_bytes))
        .and(warp::body::bytes())
        .then(
            |g: Arc<Gateway>, auth: Option<String>, body: bytes::Bytes| async move {
                g.post_events(auth, body).await
            },
        );
    let traces = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(with)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("x-api-key"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("content-encoding"))
        .and(warp::body::content_length_limit(gateway.limits.max_body_bytes))
        .and(warp::body::bytes())
        .then(
            |g: Arc<Gateway>,
             authorization: Option<String>,
             api_key: Option<String>,
             content_type: Option<String>,
             content_encoding: Option<String>,
             body: bytes::Bytes| async move {
                let headers = crate::otlp::TraceHeaders {
                    authorization,
                    api_key,
                    content_type,
                    content_encoding,
                };
                crate::otlp::post_traces(&g, headers, body).await
            },
        );
    let operations = ops::endpoints(gateway.metrics.registry.clone(), gateway.readiness.clone());
    events
        .or(traces)
        .unify()
        .or(operations)
        .unify()
        .recover(handler::recover)
        .unify()
        .or(warp::any().map(|| error_reply(StatusCode::NOT_FOUND, "not_found", "no such route")))
        .unify()
}

/// Issues an API key for a tenant and stores it; returns the token (shown once).
pub async fn create_api_key(
    store: &(impl ApiKeyStore + ?Sized),
    tenant_id: &str,
    label: &str,
) -> crate::Result<api_key::IssuedKey> {
    if tenant_id.trim().is_empty() || tenant_id.contains('/') {
        return Err(crate::Error::Invalid(schemas::validation::ValidationError {
            field: "tenant_id".into(),
            message: "must be non-empty and contain no '/'".into(),
        }));
    }
    let issued = api_key::issue(tenant_id, label, now_ms());
    store.create_api_key(&issued.record).await?;
    Ok(issued)
}

/// Revokes a key now; false when there is no such key.
pub async fn revoke_api_key(store: &(impl ApiKeyStore + ?Sized), key_id: &str) -> crate::Result<bool> {
    Ok(store.revoke_api_key(key_id, now_ms()).await?)
}
