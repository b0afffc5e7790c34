//! OpenTelemetry traces in: `POST /v1/traces` (OTLP/HTTP) turns GenAI agent spans into task
//! events and publishes them through the gateway's path (same API keys, validation, broker
//! acknowledgement, 429/503 with `Retry-After`).
//!
//! Layout:
//! - [`decode`]: media type, gzip, protobuf and OTLP/JSON into the official
//!   `ExportTraceServiceRequest` (pure);
//! - [`mapping`]: agent spans -> [`schemas::TaskEvent`]s, the nesting rule, the price table
//!   (pure, GenAI semantic conventions [`mapping::SEMCONV_VERSION`]);
//! - [`response`]: `ExportTraceServiceResponse` / `google.rpc.Status` in the request's format;
//! - this module: the request flow and the span metrics.
//!
//! Outcomes: a body that cannot be read (bad media type, gzip that is not, malformed protobuf or
//! JSON) is refused whole (`400`/`413`/`415`) and nothing is published; a span that is not an
//! agent invocation is accepted and ignored; an agent span that cannot make a valid task event
//! is rejected in `partial_success` while the rest of the batch is published.

pub mod decode;
pub mod mapping;
pub mod response;

use std::time::Instant;

use prometheus::{IntCounter, IntCounterVec, Registry};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::gateway::{Gateway, SinkError};
use decode::Format;
use mapping::Verdict;

/// How many rejections `partial_success.error_message` spells out.
const MESSAGE_REJECTIONS: usize = 5;

/// Span counters on the gateway's `/metrics`.
pub(crate) struct Metrics {
    received: IntCounter,
    mapped: IntCounter,
    ignored: IntCounterVec,
    rejected: IntCounterVec,
    requests_refused: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> Metrics {
        let r = ops::metrics::Registrar::on(registry);
        let by_reason = |name: &str, help: &str| r.counter_vec(name, help, &["reason"]);
        Metrics {
            received: r.counter(
                "ingest_otlp_spans_received_total",
                "Spans in readable OTLP requests",
            ),
            mapped: r.counter(
                "ingest_otlp_spans_mapped_total",
                "Agent spans mapped to valid task events",
            ),
            ignored: by_reason(
                "ingest_otlp_spans_ignored_total",
                "Spans accepted without a task, by reason",
            ),
            rejected: by_reason(
                "ingest_otlp_spans_rejected_total",
                "Agent spans refused in partial_success, by reason",
            ),
            requests_refused: by_reason(
                "ingest_otlp_requests_refused_total",
                "OTLP requests refused whole, by reason",
            ),
        }
    }
}

/// The headers of a `POST /v1/traces` that matter.
#[derive(Debug, Default, Clone)]
pub struct TraceHeaders {
    /// `Authorization` (`Bearer <api key>`).
    pub authorization: Option<String>,
    /// `x-api-key` (`<api key>`), for exporters configured with that header.
    pub api_key: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
}

/// Handles `POST /v1/traces`.
pub(crate) async fn post_traces(gateway: &Gateway, headers: TraceHeaders, body: bytes::Bytes) -> Response {
    let started = Instant::now();
    let response = post_traces_inner(gateway, headers, body).await;
    gateway.record_request("post_traces", response.status(), started);
    response
}

async fn post_traces_inner(gateway: &Gateway, headers: TraceHeaders, body: bytes::Bytes) -> Response {
    let metrics = &gateway.otlp().metrics;
    // An unknown media type is answered in JSON (there is no request format to follow).
    let format = match decode::format(headers.content_type.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            metrics.requests_refused.with_label_values(&[e.reason()]).inc();
            return response::error(Format::Json, e.status(), &e.to_string(), None);
        }
    };
    let token = match (headers.authorization.as_deref(), headers.api_key.as_deref()) {
        (Some(h), _) => match h.strip_prefix("Bearer ") {
            Some(t) => Some(t.trim()),
            None => {
                return response::error(
                    format,
                    StatusCode::UNAUTHORIZED,
                    "Authorization must use the Bearer scheme",
                    None,
                )
            }
        },
        (None, Some(k)) => Some(k.trim()),
        (None, None) => None,
    };
    let tenant = match gateway.tenant_of(token).await {
        Ok(t) => t,
        Err((status, message)) => {
            let message = if token.is_none() {
                "missing API key: send `Authorization: Bearer <api key>` (or `x-api-key: <api key>`)"
                    .to_string()
            } else {
                message
            };
            return response::error(format, status, &message, None);
        }
    };
    let limit = gateway.limits().max_body_bytes;
    let request = match decode::decompress(headers.content_encoding.as_deref(), &body, limit)
        .and_then(|raw| decode::decode(format, &raw))
    {
        Ok(r) => r,
        Err(e) => {
            metrics.requests_refused.with_label_values(&[e.reason()]).inc();
            return response::error(format, e.status(), &e.to_string(), None);
        }
    };
    drop(body);

    let verdicts = gateway.otlp().mapper.map_request(
        &request,
        &tenant,
        schemas::time::now_ms(),
        gateway.limits().max_future_skew_ms,
    );
    metrics.received.inc_by(verdicts.len() as u64);
    let mut events = Vec::new();
    let mut rejections = Vec::new();
    for verdict in verdicts {
        match verdict {
            Verdict::Task(event) => events.push(*event),
            Verdict::Ignored(why) => metrics.ignored.with_label_values(&[why.as_str()]).inc(),
            Verdict::Rejected(r) => {
                metrics.rejected.with_label_values(&[r.reason]).inc();
                rejections.push(r);
            }
        }
    }
    metrics.mapped.inc_by(events.len() as u64);

    let outcomes = gateway.publish_counted(&events).await;
    // The whole request is retried by the exporter: events already acknowledged come again
    // with the same event_id and are de-duplicated downstream.
    if let Some(failure) = SinkError::worst(outcomes.iter().filter_map(|o| o.as_ref().err())) {
        let (status, retry_after) = failure.status();
        return response::error(format, status, &failure.message(), Some(retry_after));
    }
    response::exported(format, rejections.len() as i64, &rejection_message(&rejections))
}

/// `partial_success.error_message`: the first rejections spelled out, then a count.
pub fn rejection_message(rejections: &[mapping::Rejection]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in rejections.iter().take(MESSAGE_REJECTIONS) {
        if !out.is_empty() {
            out.push_str("; ");
        }
        let _ = write!(
            out,
            "span {}: {} ({}): {}",
            r.span_id, r.reason, r.field, r.message
        );
    }
    if rejections.len() > MESSAGE_REJECTIONS {
        let _ = write!(out, "; and {} more", rejections.len() - MESSAGE_REJECTIONS);
    }
    out
}

/// The OTLP part of the gateway's state: the mapping and its counters.
pub(crate) struct Otlp {
    pub(crate) mapper: mapping::Mapper,
    pub(crate) metrics: Metrics,
}
