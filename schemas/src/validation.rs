//! Field checks beyond the Avro schema: what would make the KPIs wrong or the store unsafe.
//! Every entry path (HTTP gateway, producer library, aggregator) applies the same rules.
//!
//! [`validate`] judges an event alone. [`validate_not_future`] also needs the receiver's clock,
//! passed in (`now_ms`) so that the check stays a pure function: an event that completes further
//! in the future than the allowed clock skew would move its partition's watermark (the largest
//! event time seen) ahead of every other series on that partition.

use crate::task_event::{AttributeProblem, TaskEventView};
use crate::TaskEvent;

/// Limits on sizes (bytes of UTF-8).
pub mod limits {
    /// `event_id`, `task_id`, `tenant_id`, `agent_id`, `model`.
    pub const MAX_ID_BYTES: usize = 128;
    /// Entries of the attributes map.
    pub const MAX_ATTRIBUTES: usize = 32;
    /// An attribute key.
    pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 64;
    /// An attribute value.
    pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 512;
}

/// Why an event is invalid: the field and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The offending field (`attributes.<key>` for an attribute).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Result<(), ValidationError> {
    Err(ValidationError {
        field: field.into(),
        message: message.into(),
    })
}

/// Checks one event; the first problem found is returned.
pub fn validate(event: &TaskEvent) -> Result<(), ValidationError> {
    validate_view(&event.view())
}

/// [`validate`] on a decoded view (the same rules, the same first problem).
pub fn validate_view(event: &TaskEventView<'_>) -> Result<(), ValidationError> {
    use limits::*;
    for (field, value) in [
        ("event_id", event.event_id),
        ("task_id", event.task_id),
        ("tenant_id", event.tenant_id),
        ("agent_id", event.agent_id),
    ] {
        if value.trim().is_empty() {
            return invalid(field, "must not be empty");
        }
        if value.len() > MAX_ID_BYTES {
            return invalid(
                field,
                format!("is {} bytes, at most {MAX_ID_BYTES} allowed", value.len()),
            );
        }
    }
    if event.tenant_id.contains('/') || event.agent_id.contains('/') {
        return invalid(
            if event.tenant_id.contains('/') {
                "tenant_id"
            } else {
                "agent_id"
            },
            "must not contain '/'",
        );
    }
    if event.agent_id == "*" {
        return invalid("agent_id", "`*` is reserved for tenant-wide rows");
    }
    if event.started_at < 0 {
        return invalid("started_at", "must not be before 1970");
    }
    if event.completed_at < event.started_at {
        return invalid(
            "completed_at",
            format!("{} is before started_at {}", event.completed_at, event.started_at),
        );
    }
    if event.cost_micros < 0 {
        return invalid("cost_micros", "must not be negative");
    }
    if event.human_interventions < 0 {
        return invalid("human_interventions", "must not be negative");
    }
    for (field, tokens) in [
        ("input_tokens", event.input_tokens),
        ("output_tokens", event.output_tokens),
    ] {
        if tokens.is_some_and(|t| t < 0) {
            return invalid(field, "must not be negative");
        }
    }
    if let Some(model) = event.model {
        if model.len() > MAX_ID_BYTES {
            return invalid(
                "model",
                format!("is {} bytes, at most {MAX_ID_BYTES} allowed", model.len()),
            );
        }
    }
    let attributes = &event.attributes;
    if attributes.entries > MAX_ATTRIBUTES {
        return invalid(
            "attributes",
            format!(
                "has {} entries, at most {MAX_ATTRIBUTES} allowed",
                attributes.entries
            ),
        );
    }
    match attributes.first_problem {
        Some((_, AttributeProblem::Key(len))) => invalid(
            "attributes",
            format!("key of {len} bytes, 1 to {MAX_ATTRIBUTE_KEY_BYTES} allowed"),
        ),
        Some((key, AttributeProblem::Value(len))) => invalid(
            format!("attributes.{key}"),
            format!("is {len} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed"),
        ),
        None => Ok(()),
    }
}

/// Checks that `completed_at` is at most `max_future_skew_ms` after `now_ms` (the receiver's
/// wall clock): a producer's clock may run a little ahead, not more. The error names the
/// field, the event time, how far ahead it is and the allowed skew.
pub fn validate_not_future(
    completed_at: i64,
    now_ms: i64,
    max_future_skew_ms: i64,
) -> Result<(), ValidationError> {
    let ahead = i128::from(completed_at) - i128::from(now_ms);
    if ahead <= i128::from(max_future_skew_ms) {
        return Ok(());
    }
    invalid(
        "completed_at",
        format!(
            "{completed_at} is {ahead} ms ahead of the receiver's clock ({now_ms}); at most {max_future_skew_ms} ms of clock skew is allowed"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn check(edit: impl FnOnce(&mut TaskEvent)) -> Result<(), ValidationError> {
        let mut e = TaskEvent::example();
        edit(&mut e);
        validate(&e)
    }

    fn field_of(edit: impl FnOnce(&mut TaskEvent)) -> String {
        check(edit).unwrap_err().field
    }

    #[test]
    fn the_example_is_valid() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(
            check(|e| e.completed_at = e.started_at),
            Ok(()),
            "zero latency is allowed"
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(field_of(|e| e.event_id.clear()), "event_id");
        assert_eq!(field_of(|e| e.task_id = " ".into()), "task_id");
        assert_eq!(field_of(|e| e.tenant_id.clear()), "tenant_id");
        assert_eq!(field_of(|e| e.agent_id = "x".repeat(129)), "agent_id");
        assert_eq!(field_of(|e| e.tenant_id = "a/b".into()), "tenant_id");
        assert_eq!(field_of(|e| e.agent_id = "*".into()), "agent_id");
        assert_eq!(field_of(|e| e.completed_at = e.started_at - 1), "completed_at");
        assert_eq!(field_of(|e| e.started_at = -5), "started_at");
        assert_eq!(field_of(|e| e.cost_micros = -1), "cost_micros");
        assert_eq!(field_of(|e| e.human_interventions = -1), "human_interventions");
        assert_eq!(field_of(|e| e.output_tokens = Some(-1)), "output_tokens");
        assert_eq!(field_of(|e| e.model = Some("m".repeat(200))), "model");
        assert_eq!(
            field_of(|e| e.attributes = (0..33).map(|i| (format!("k{i}"), "v".into())).collect()),
            "attributes"
        );
        assert_eq!(
            field_of(|e| {
                e.attributes.insert("note".into(), "v".repeat(513));
            }),
            "attributes.note"
        );
        assert_eq!(
            field_of(|e| {
                e.attributes.insert(String::new(), "v".into());
            }),
            "attributes"
        );
    }

    #[test]
    fn the_first_attribute_in_key_order_with_a_problem_is_named() {
        let long_value = "v".repeat(513);
        let long_key = "k".repeat(65);
        let mut e = TaskEvent::example();
        e.attributes = BTreeMap::from([
            ("b".into(), long_value.clone()),
            (long_key.clone(), "v".into()),
            ("a".into(), "fine".into()),
        ]);
        assert_eq!(validate(&e).unwrap_err().field, "attributes.b");
        e.attributes.insert("az".into(), long_value);
        assert_eq!(validate(&e).unwrap_err().field, "attributes.az");
        e.attributes.insert("aa".repeat(40), "v".into());
        let error = validate(&e).unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.message.as_str()),
            ("attributes", "key of 80 bytes, 1 to 64 allowed")
        );
    }

    #[test]
    fn future_events_are_refused_beyond_the_skew_exactly() {
        let now = 1_763_900_000_000;
        assert_eq!(validate_not_future(now, now, 60_000), Ok(()));
        assert_eq!(
            validate_not_future(now - crate::time::DAY_MS, now, 60_000),
            Ok(()),
            "the past is fine"
        );
        assert_eq!(
            validate_not_future(now + 60_000, now, 60_000),
            Ok(()),
            "exactly the skew"
        );
        let error = validate_not_future(now + 60_001, now, 60_000).unwrap_err();
        assert_eq!(error.field, "completed_at");
        assert_eq!(
            error.message,
            "1763900060001 is 60001 ms ahead of the receiver's clock (1763900000000); at most 60000 ms of clock skew is allowed"
        );
        assert!(
            validate_not_future(4_102_444_800_000, now, 60_000).is_err(),
            "2100-01-01"
        );
        assert!(
            validate_not_future(i64::MAX, i64::MIN, i64::MAX).is_err(),
            "no overflow"
        );
        assert_eq!(
            validate_not_future(now + 1, now, 0).unwrap_err().field,
            "completed_at"
        );
    }

    #[test]
    fn messages_are_precise() {
        let e = check(|e| e.completed_at = e.started_at - 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "completed_at: 1763899999999 is before started_at 1763900000000"
        );
    }
}
