//! What the gateway answers: the per-event [`EventStatus`] of `POST /v1/events` and the JSON
//! error body of every refused request.

use serde::ser::{Serialize, SerializeMap, Serializer};
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use super::SinkError;

/// Why an event was rejected (do not retry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not a `TaskEvent` (JSON shape or types).
    Malformed,
    /// A field breaks a rule of [`schemas::validation`].
    InvalidField,
    /// `tenant_id` is not the API key's tenant.
    TenantMismatch,
    /// `completed_at` lies too far ahead of the gateway's clock.
    FutureEvent,
}

impl RejectReason {
    /// The machine-readable reason on the wire and the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::TenantMismatch => "tenant_mismatch",
            RejectReason::FutureEvent => "future_event",
        }
    }
}

/// A rejected event: the reason, the offending field when one is to blame, a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The offending field.
    pub field: Option<String>,
    /// A sentence for people.
    pub message: String,
}

/// One event's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    /// Acknowledged by the broker: durable.
    Accepted,
    /// Invalid: do not retry.
    Rejected(Rejection),
    /// Valid but not delivered: retry later.
    Failed(SinkError),
}

impl EventStatus {
    /// `accepted`, `rejected` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventStatus::Accepted => "accepted",
            EventStatus::Rejected(_) => "rejected",
            EventStatus::Failed(_) => "failed",
        }
    }
}

/// One event's entry in the response. On the wire: `index`, `status`, then `event_id` when it
/// could be read, and for `rejected` / `failed` the `reason`, the `field` (when one is to
/// blame) and the `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventResult {
    /// Position in the request array.
    pub index: usize,
    /// The event's id, when it could be read.
    pub event_id: Option<String>,
    /// The verdict.
    pub status: EventStatus,
}

impl Serialize for EventResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("index", &self.index)?;
        map.serialize_entry("status", self.status.as_str())?;
        if let Some(id) = &self.event_id {
            map.serialize_entry("event_id", id)?;
        }
        match &self.status {
            EventStatus::Accepted => {}
            EventStatus::Rejected(r) => {
                map.serialize_entry("reason", r.reason.as_str())?;
                if let Some(field) = &r.field {
                    map.serialize_entry("field", field)?;
                }
                map.serialize_entry("message", &r.message)?;
            }
            EventStatus::Failed(e) => {
                map.serialize_entry("reason", e.reason())?;
                map.serialize_entry("message", &e.message())?;
            }
        }
        map.end()
    }
}

/// The body of an answered batch: the counts, then one result per event.
#[derive(serde::Serialize)]
pub(crate) struct BatchResponse {
    accepted: usize,
    rejected: usize,
    failed: usize,
    results: Vec<EventResult>,
}

impl BatchResponse {
    pub(crate) fn new(results: Vec<EventResult>) -> BatchResponse {
        let count = |s: &str| results.iter().filter(|r| r.status.as_str() == s).count();
        BatchResponse {
            accepted: count("accepted"),
            rejected: count("rejected"),
            failed: count("failed"),
            results,
        }
    }

    /// The status of the first full queue (`429`) or broker failure (`503`), with its
    /// `Retry-After`; else `422` when nothing was accepted, else `200`.
    pub(crate) fn into_response(self) -> Response {
        let failure = SinkError::worst(self.results.iter().filter_map(|r| match &r.status {
            EventStatus::Failed(e) => Some(e),
            _ => None,
        }));
        let (status, retry_after) = match failure.map(SinkError::status) {
            Some((status, seconds)) => (status, Some(seconds)),
            None if self.accepted == 0 => (StatusCode::UNPROCESSABLE_ENTITY, None),
            None => (StatusCode::OK, None),
        };
        let mut response = warp::reply::with_status(warp::reply::json(&self), status).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static(seconds));
        }
        response
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// A refused request: `{"error", "message"}` with `status`; a `401` also names the scheme in
/// `WWW-Authenticate`.
pub(crate) fn error_reply(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_status_keeps_its_wire_shape() {
        let result = |status| EventResult {
            index: 3,
            event_id: Some("e3".into()),
            status,
        };
        let wire = |r: &EventResult| serde_json::to_string(r).unwrap();
        assert_eq!(
            wire(&result(EventStatus::Accepted)),
            r#"{"index":3,"status":"accepted","event_id":"e3"}"#
        );
        assert_eq!(
            wire(&result(EventStatus::Rejected(Rejection {
                reason: RejectReason::InvalidField,
                field: Some("cost_micros".into()),
                message: "must be >= 0".into(),
            }))),
            r#"{"index":3,"status":"rejected","event_id":"e3","reason":"invalid_field","field":"cost_micros","message":"must be >= 0"}"#
        );
        let failed = EventResult {
            event_id: None,
            ..result(EventStatus::Failed(SinkError::QueueFull))
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"index": 3, "status": "failed", "reason": "queue_full",
                   "message": "the gateway is saturated; retry later"})
        );
    }

    #[test]
    fn a_full_queue_outranks_an_unavailable_broker() {
        let results = vec![
            EventResult {
                index: 0,
                event_id: None,
                status: EventStatus::Failed(SinkError::Unavailable("down".into())),
            },
            EventResult {
                index: 1,
                event_id: None,
                status: EventStatus::Failed(SinkError::QueueFull),
            },
        ];
        let response = BatchResponse::new(results).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
