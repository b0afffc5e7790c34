//! Answers of `POST /v1/traces` in the request's format (OTLP/HTTP, "OTLP/HTTP Response").
//!
//! - success: `ExportTraceServiceResponse`, with `partial_success` (`rejected_spans`,
//!   `error_message`) when spans were refused;
//! - failure: a `google.rpc.Status` (`code`, `message`) with the HTTP status (400 and 413 are
//!   not retryable; 429 and 503 are, after `Retry-After`).
//!
//! In OTLP/JSON, `rejectedSpans` (int64) is a decimal string as the protobuf JSON mapping
//! writes it; the generated serde would write a number, so the JSON is written here.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message as _;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply as _, Response};

use super::decode::Format;

/// `google.rpc.Status` (`google/rpc/status.proto`) without `details`: the error body OTLP/HTTP
/// asks for. Not part of `opentelemetry-proto`; two fields, so declared here with prost.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` of an HTTP status, for the error body.
fn rpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 3,  // INVALID_ARGUMENT
        401 => 16, // UNAUTHENTICATED
        413 => 11, // OUT_OF_RANGE
        415 => 3,  // INVALID_ARGUMENT
        429 => 8,  // RESOURCE_EXHAUSTED
        503 => 14, // UNAVAILABLE
        _ => 2,    // UNKNOWN
    }
}

fn reply(format: Format, status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = warp::reply::with_status(body, status).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(format.content_type()));
    response
}

/// The body of a successful export: empty, or the partial success when `rejected > 0`.
pub fn export_body(format: Format, rejected: i64, error_message: &str) -> Vec<u8> {
    let partial = (rejected > 0 || !error_message.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected,
        error_message: error_message.to_string(),
    });
    match format {
        Format::Protobuf => ExportTraceServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Format::Json => {
            let value = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
            };
            serde_json::to_vec(&value).expect("json")
        }
    }
}

/// `200` with [`export_body`].
pub fn exported(format: Format, rejected: i64, error_message: &str) -> Response {
    reply(
        format,
        StatusCode::OK,
        export_body(format, rejected, error_message),
    )
}

/// The error body (`google.rpc.Status`) in `format`.
pub fn status_body(format: Format, status: StatusCode, message: &str) -> Vec<u8> {
    let code = rpc_code(status);
    match format {
        Format::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Format::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message})).expect("json")
        }
    }
}

/// An error answer; `retry_after` in seconds for 429 and 503.
pub fn error(
    format: Format,
    status: StatusCode,
    message: &str,
    retry_after: Option<&'static str>,
) -> Response {
    let mut response = reply(format, status, status_body(format, status, message));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static(seconds));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"agentops-ingest\""),
        );
    }
    response
}
