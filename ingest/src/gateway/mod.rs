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
//! Also: `GET /healthz` (liveness), `GET /readyz` (broker and store reachable), `GET /metrics`
//! (Prometheus).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use schemas::codec::Encoder;
use schemas::TaskEvent;
use serde::Serialize;
use store::Store;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::api_key;

/// Why the sink did not deliver an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The producer queue is full: back off.
    QueueFull,
    /// The broker did not acknowledge (down, timeout, error).
    Unavailable(String),
}

/// Where accepted events go. Implemented by [`KafkaEventSink`]; tests of the HTTP surface use
/// a test double.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publishes the events in order; one outcome per event, `Ok` only once acknowledged.
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>>;
    /// Whether the broker is reachable.
    async fn ready(&self) -> bool;
}

/// The Kafka sink: Avro in the configured wire format, keyed by series, idempotent `acks=all`
/// producer with the configured delivery timeout.
pub struct KafkaEventSink {
    producer: FutureProducer,
    topic: String,
    encoder: Encoder<TaskEvent>,
}

impl KafkaEventSink {
    /// A sink for the configured task-events topic.
    pub async fn new(settings: &settings::Settings) -> crate::Result<KafkaEventSink> {
        let topic = settings.kafka.topics.task_events.clone();
        let encoder = crate::publisher::task_event_encoder(settings).await?;
        let producer = kafka_io::producer_config(&settings.kafka, "ingest-gateway")
            .set(
                "message.timeout.ms",
                settings.ingest.delivery_timeout_ms.to_string(),
            )
            .set("queue.buffering.max.messages", "200000")
            .create()
            .map_err(kafka_io::Error::from)?;
        Ok(KafkaEventSink {
            producer,
            topic,
            encoder,
        })
    }
}

#[async_trait]
impl EventSink for KafkaEventSink {
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        let mut pending = Vec::with_capacity(events.len());
        let mut full = false;
        for event in events {
            if full {
                pending.push(Err(SinkError::QueueFull));
                continue;
            }
            let payload = match self.encoder.encode(event) {
                Ok(p) => p,
                Err(e) => {
                    pending.push(Err(SinkError::Unavailable(e.to_string())));
                    continue;
                }
            };
            let key = event.series_key();
            match self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(&key).payload(&payload))
            {
                Ok(delivery) => pending.push(Ok(delivery)),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    full = true;
                    pending.push(Err(SinkError::QueueFull));
                }
                Err((e, _)) => pending.push(Err(SinkError::Unavailable(e.to_string()))),
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(SinkError::Unavailable(e.to_string())),
                    Err(_) => Err(SinkError::Unavailable("delivery cancelled".into())),
                },
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn ready(&self) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                })
        })
        .await
        .unwrap_or(false)
    }
}

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

struct Metrics {
    registry: Registry,
    accepted: IntCounter,
    rejected: IntCounterVec,
    failed: IntCounterVec,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let accepted = IntCounter::new(
            "ingest_events_accepted_total",
            "Events acknowledged by the broker",
        )
        .expect("metric");
        let rejected = IntCounterVec::new(
            Opts::new("ingest_events_rejected_total", "Events rejected, by reason"),
            &["reason"],
        )
        .expect("metric");
        let failed = IntCounterVec::new(
            Opts::new(
                "ingest_events_failed_total",
                "Valid events not delivered, by cause",
            ),
            &["cause"],
        )
        .expect("metric");
        let requests = IntCounterVec::new(
            Opts::new("ingest_requests_total", "Requests by status"),
            &["status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("ingest_request_duration_seconds", "Request latency").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("metric");
        for m in [
            Box::new(accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected.clone()),
            Box::new(failed.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Metrics {
            registry,
            accepted,
            rejected,
            failed,
            requests,
            latency,
        }
    }
}

/// The gateway's shared state.
pub struct Gateway {
    sink: Arc<dyn EventSink>,
    store: Arc<dyn Store>,
    limits: Limits,
    metrics: Metrics,
    otlp: crate::otlp::Otlp,
}

/// One event's verdict in the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventResult {
    /// Position in the request array.
    pub index: usize,
    /// `accepted` (durable), `rejected` (invalid: do not retry) or `failed` (not delivered:
    /// retry later).
    pub status: &'static str,
    /// The event's id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Machine-readable reason for `rejected` and `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A sentence for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The id of an event that did not parse, for the error report.
#[derive(serde::Deserialize)]
struct IdOnly {
    event_id: Option<String>,
}

#[derive(Serialize)]
struct BatchResponse {
    accepted: usize,
    rejected: usize,
    failed: usize,
    results: Vec<EventResult>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

fn error_reply(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    let mut response = warp::reply::with_status(
        warp::reply::json(&ErrorBody {
            error,
            message: message.into(),
        }),
        status,
    )
    .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"agentops-ingest\""),
        );
    }
    response
}

/// A parse error of one event without its position (which would be relative to the event).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).map(str::to_string).unwrap_or(text)
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
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
        Arc::new(Gateway {
            sink,
            store,
            limits,
            metrics,
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
    pub(crate) fn record_request(&self, route: &str, status: StatusCode, started: Instant) {
        self.metrics.requests.with_label_values(&[status.as_str()]).inc();
        self.metrics
            .latency
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The tenant of a valid, unrevoked API key (`None`: no key sent); otherwise the status
    /// (401, or 503 when the key store fails) and a message.
    pub(crate) async fn tenant_of(&self, token: Option<&str>) -> Result<String, (StatusCode, String)> {
        let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
        let Some(token) = token else {
            return Err(unauthorized("missing API key"));
        };
        let Some((key_id, secret)) = api_key::parse(token) else {
            return Err(unauthorized("malformed API key"));
        };
        let key = match self.store.api_key(key_id).await {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(%e, "api key lookup failed");
                return Err((StatusCode::SERVICE_UNAVAILABLE, "key store unavailable".into()));
            }
        };
        match key {
            Some(key) if api_key::verify(&key, secret) => Ok(key.tenant_id),
            Some(key) if key.revoked_at_ms.is_some() => Err(unauthorized("API key revoked")),
            _ => Err(unauthorized("unknown API key")),
        }
    }

    /// The tenant of a valid, unrevoked key; otherwise the 401 to send.
    async fn authenticate(&self, authorization: Option<String>) -> Result<String, Response> {
        let unauthorized = |m: &str| error_reply(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some(header) = authorization else {
            return Err(unauthorized(
                "missing Authorization header: use `Authorization: Bearer <api key>`",
            ));
        };
        let Some(token) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(unauthorized("Authorization must use the Bearer scheme"));
        };
        self.tenant_of(Some(token)).await.map_err(|(status, message)| {
            let error = if status == StatusCode::UNAUTHORIZED {
                "unauthorized"
            } else {
                "unavailable"
            };
            error_reply(status, error, message)
        })
    }

    /// Publishes events and counts them as accepted or failed (by cause).
    pub(crate) async fn publish_counted(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        let outcomes = self.sink.publish(events).await;
        for outcome in &outcomes {
            match outcome {
                Ok(()) => self.metrics.accepted.inc(),
                Err(SinkError::QueueFull) => self.metrics.failed.with_label_values(&["queue_full"]).inc(),
                Err(SinkError::Unavailable(_)) => self
                    .metrics
                    .failed
                    .with_label_values(&["broker_unavailable"])
                    .inc(),
            }
        }
        outcomes
    }

    /// Handles `POST /v1/events`.
    pub async fn post_events(&self, authorization: Option<String>, body: bytes::Bytes) -> Response {
        let started = Instant::now();
        let response = self.post_events_inner(authorization, body).await;
        self.metrics
            .requests
            .with_label_values(&[response.status().as_str()])
            .inc();
        self.metrics
            .latency
            .with_label_values(&["post_events"])
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn post_events_inner(&self, authorization: Option<String>, body: bytes::Bytes) -> Response {
        let tenant = match self.authenticate(authorization).await {
            Ok(t) => t,
            Err(response) => return response,
        };
        let starts_as_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        if !starts_as_array {
            return match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
                Ok(_) => error_reply(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "body must be a JSON array of task events",
                ),
                Err(e) => error_reply(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("body is not valid JSON: {e}"),
                ),
            };
        }
        // Each element is kept raw and parsed alone: one bad event never fails the batch.
        let items: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(&body) {
            Ok(items) => items,
            Err(e) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("body is not valid JSON: {e}"),
                )
            }
        };
        if items.is_empty() {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "empty batch: send 1 or more events",
            );
        }
        if items.len() > self.limits.max_batch_events {
            return error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!(
                    "batch of {} events, at most {} allowed",
                    items.len(),
                    self.limits.max_batch_events
                ),
            );
        }
        let now = now_ms();
        let mut results: Vec<EventResult> = Vec::with_capacity(items.len());
        let mut valid: Vec<TaskEvent> = Vec::with_capacity(items.len());
        let mut valid_index: Vec<usize> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let parsed = serde_json::from_str::<TaskEvent>(item.get());
            let event_id = match &parsed {
                Ok(e) => Some(e.event_id.clone()),
                Err(_) => serde_json::from_str::<IdOnly>(item.get())
                    .ok()
                    .and_then(|i| i.event_id),
            };
            let reject = |reason: &'static str, field: Option<String>, message: String| EventResult {
                index,
                status: "rejected",
                event_id: event_id.clone(),
                reason: Some(reason),
                field,
                message: Some(message),
            };
            let verdict = match parsed {
                Err(e) => Err(reject("malformed", None, without_position(&e))),
                Ok(event) => match schemas::validation::validate(&event) {
                    Err(v) => Err(reject("invalid_field", Some(v.field), v.message)),
                    Ok(()) if event.tenant_id != tenant => Err(reject(
                        "tenant_mismatch",
                        Some("tenant_id".into()),
                        format!("tenant_id `{}` is not the API key's tenant", event.tenant_id),
                    )),
                    Ok(()) => match schemas::validation::validate_not_future(
                        event.completed_at,
                        now,
                        self.limits.max_future_skew_ms,
                    ) {
                        Err(v) => Err(reject("future_event", Some(v.field), v.message)),
                        Ok(()) => Ok(event),
                    },
                },
            };
            match verdict {
                Ok(event) => {
                    valid_index.push(results.len());
                    results.push(EventResult {
                        index,
                        status: "accepted",
                        event_id,
                        reason: None,
                        field: None,
                        message: None,
                    });
                    valid.push(event);
                }
                Err(r) => {
                    self.metrics
                        .rejected
                        .with_label_values(&[r.reason.unwrap_or("unknown")])
                        .inc();
                    results.push(r);
                }
            }
        }
        let outcomes = if valid.is_empty() {
            Vec::new()
        } else {
            self.sink.publish(&valid).await
        };
        let (mut queue_full, mut unavailable) = (false, false);
        for (slot, outcome) in valid_index.into_iter().zip(outcomes) {
            let r = &mut results[slot];
            match outcome {
                Ok(()) => self.metrics.accepted.inc(),
                Err(e) => {
                    let (reason, message) = match e {
                        SinkError::QueueFull => {
                            queue_full = true;
                            ("queue_full", "the gateway is saturated; retry later".to_string())
                        }
                        SinkError::Unavailable(m) => {
                            unavailable = true;
                            (
                                "broker_unavailable",
                                format!("not acknowledged by the broker: {m}"),
                            )
                        }
                    };
                    self.metrics.failed.with_label_values(&[reason]).inc();
                    r.status = "failed";
                    r.reason = Some(reason);
                    r.message = Some(message);
                }
            }
        }
        let count = |s: &str| results.iter().filter(|r| r.status == s).count();
        let body = BatchResponse {
            accepted: count("accepted"),
            rejected: count("rejected"),
            failed: count("failed"),
            results,
        };
        let (status, retry_after) = if queue_full {
            (StatusCode::TOO_MANY_REQUESTS, Some("1"))
        } else if unavailable {
            (StatusCode::SERVICE_UNAVAILABLE, Some("5"))
        } else if body.accepted == 0 {
            (StatusCode::UNPROCESSABLE_ENTITY, None)
        } else {
            (StatusCode::OK, None)
        };
        let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static(seconds));
        }
        response
    }

    async fn ready(&self) -> Response {
        let (broker, store) = tokio::join!(self.sink.ready(), self.store.applied_migrations());
        let store = store.is_ok();
        let status = if broker && store {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"broker": broker, "store": store})),
            status,
        )
        .into_response()
    }

    fn metrics_text(&self) -> Response {
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode(&self.metrics.registry.gather(), &mut buf)
            .expect("metrics encode");
        warp::reply::with_header(buf, "content-type", encoder.format_type()).into_response()
    }
}

/// Turns warp's own rejections into precise JSON errors.
async fn recover(rejection: Rejection) -> Result<Response, Rejection> {
    let reply = if rejection.is_not_found() {
        error_reply(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body exceeds ingest.max_body_bytes",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        error_reply(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length header",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else {
        return Err(rejection);
    };
    Ok(reply)
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
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with.clone())
        .then(|g: Arc<Gateway>| async move { g.ready().await });
    let traces = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(with.clone())
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
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with)
        .map(|g: Arc<Gateway>| g.metrics_text());
    events
        .or(traces)
        .unify()
        .or(health)
        .unify()
        .or(ready)
        .unify()
        .or(metrics)
        .unify()
        .recover(recover)
        .unify()
        .or(warp::any().map(|| error_reply(StatusCode::NOT_FOUND, "not_found", "no such route")))
        .unify()
}

/// Issues an API key for a tenant and stores it; returns the token (shown once).
pub async fn create_api_key(
    store: &dyn Store,
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
pub async fn revoke_api_key(store: &dyn Store, key_id: &str) -> crate::Result<bool> {
    Ok(store.revoke_api_key(key_id, now_ms()).await?)
}
