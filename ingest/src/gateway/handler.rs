//! The request flow of `POST /v1/events`: authenticate the key, read the array, judge each
//! event alone, publish the valid ones, answer per event.

use std::time::Instant;

use schemas::TaskEvent;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Rejection as WarpRejection;

use super::response::{error_reply, BatchResponse, EventResult, EventStatus, RejectReason, Rejection};
use super::{Gateway, SinkError};
use crate::api_key;

/// The id of an event that did not parse, for the error report.
#[derive(serde::Deserialize)]
struct IdOnly {
    event_id: Option<String>,
}

/// A parse error of one event without its position (which would be relative to the event).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).map(str::to_string).unwrap_or(text)
}

/// One raw array element judged alone: its id when it could be read, and the event or why it
/// is rejected (shape, field rules, the key's tenant, not from the future of `now_ms`).
pub(crate) fn judge(
    item: &str,
    tenant: &str,
    now_ms: i64,
    max_future_skew_ms: i64,
) -> (Option<String>, Result<TaskEvent, Rejection>) {
    let reject = |reason, field, message| Rejection {
        reason,
        field,
        message,
    };
    let event = match serde_json::from_str::<TaskEvent>(item) {
        Ok(event) => event,
        Err(e) => {
            let id = serde_json::from_str::<IdOnly>(item).ok().and_then(|i| i.event_id);
            return (
                id,
                Err(reject(RejectReason::Malformed, None, without_position(&e))),
            );
        }
    };
    let verdict = if let Err(v) = schemas::validation::validate(&event) {
        Err(reject(RejectReason::InvalidField, Some(v.field), v.message))
    } else if event.tenant_id != tenant {
        Err(reject(
            RejectReason::TenantMismatch,
            Some("tenant_id".into()),
            format!("tenant_id `{}` is not the API key's tenant", event.tenant_id),
        ))
    } else if let Err(v) =
        schemas::validation::validate_not_future(event.completed_at, now_ms, max_future_skew_ms)
    {
        Err(reject(RejectReason::FutureEvent, Some(v.field), v.message))
    } else {
        Ok(())
    };
    (Some(event.event_id.clone()), verdict.map(|()| event))
}

impl Gateway {
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

    /// Publishes events through the sink (every publishing route goes through here) and counts
    /// them as accepted or failed (by cause).
    pub(crate) async fn publish_counted(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        if events.is_empty() {
            return Vec::new();
        }
        let outcomes = self.sink.publish(events).await;
        outcomes.iter().for_each(|o| self.metrics.record_outcome(o));
        outcomes
    }

    /// Handles `POST /v1/events`.
    pub async fn post_events(&self, authorization: Option<String>, body: bytes::Bytes) -> Response {
        let started = Instant::now();
        let response = self.post_events_inner(authorization, body).await;
        self.metrics
            .record_request("post_events", response.status(), started);
        response
    }

    async fn post_events_inner(&self, authorization: Option<String>, body: bytes::Bytes) -> Response {
        let tenant = match self.authenticate(authorization).await {
            Ok(t) => t,
            Err(response) => return response,
        };
        let items = match read_array(&body, self.limits.max_batch_events) {
            Ok(items) => items,
            Err(refusal) => return refusal.into_response(),
        };
        let now = schemas::time::now_ms();
        let mut results: Vec<EventResult> = Vec::with_capacity(items.len());
        let mut valid: Vec<TaskEvent> = Vec::with_capacity(items.len());
        let mut valid_index: Vec<usize> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let (event_id, verdict) = judge(item.get(), &tenant, now, self.limits.max_future_skew_ms);
            let status = match verdict {
                Ok(event) => {
                    valid_index.push(index);
                    valid.push(event);
                    EventStatus::Accepted
                }
                Err(r) => {
                    self.metrics
                        .rejected
                        .with_label_values(&[r.reason.as_str()])
                        .inc();
                    EventStatus::Rejected(r)
                }
            };
            results.push(EventResult {
                index,
                event_id,
                status,
            });
        }
        let outcomes = self.publish_counted(&valid).await;
        for (slot, outcome) in valid_index.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                results[slot].status = EventStatus::Failed(e);
            }
        }
        BatchResponse::new(results).into_response()
    }
}

/// A request refused whole: its status, error code and message.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    fn bad_request(message: String) -> Refusal {
        Refusal(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn into_response(self) -> Response {
        error_reply(self.0, self.1, self.2)
    }
}

/// The body's elements, kept raw so that each is parsed alone (one bad event never fails the
/// batch); or why the body is refused (`400`, `413`).
fn read_array(body: &[u8], max_events: usize) -> Result<Vec<&serde_json::value::RawValue>, Refusal> {
    let starts_as_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !starts_as_array {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Refusal::bad_request("body must be a JSON array of task events".into()),
            Err(e) => Refusal::bad_request(format!("body is not valid JSON: {e}")),
        });
    }
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("body is not valid JSON: {e}")))?;
    if items.is_empty() {
        return Err(Refusal::bad_request("empty batch: send 1 or more events".into()));
    }
    if items.len() > max_events {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("batch of {} events, at most {max_events} allowed", items.len()),
        ));
    }
    Ok(items)
}

/// Turns warp's own rejections into precise JSON errors.
pub(crate) async fn recover(rejection: WarpRejection) -> Result<Response, WarpRejection> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(edit: impl FnOnce(&mut TaskEvent)) -> String {
        let mut e = TaskEvent::example();
        edit(&mut e);
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn each_rule_rejects_with_its_reason_and_field() {
        let tenant = TaskEvent::example().tenant_id;
        let now = TaskEvent::example().completed_at;
        let judged = |raw: &str| judge(raw, &tenant, now, 60_000);
        let (id, verdict) = judged(&item(|_| {}));
        assert_eq!((id, verdict.is_ok()), (Some(TaskEvent::example().event_id), true));
        let reason = |raw: &str| {
            let r = judged(raw).1.unwrap_err();
            (r.reason, r.field)
        };
        assert_eq!(
            reason(r#"{"event_id": "x1", "cost": "free"}"#),
            (RejectReason::Malformed, None)
        );
        assert_eq!(judged(r#"{"event_id": "x1"}"#).0.as_deref(), Some("x1"));
        assert_eq!(
            reason(&item(|e| e.tenant_id = "other".into())),
            (RejectReason::TenantMismatch, Some("tenant_id".into()))
        );
        assert_eq!(
            reason(&item(|e| {
                e.completed_at = now + 61_000;
                e.started_at = e.completed_at - 1;
            })),
            (RejectReason::FutureEvent, Some("completed_at".into()))
        );
        assert_eq!(
            reason(&item(|e| e.started_at = e.completed_at + 1)).0,
            RejectReason::InvalidField
        );
    }
}
