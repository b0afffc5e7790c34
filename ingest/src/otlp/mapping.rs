//! OpenTelemetry GenAI agent spans -> [`TaskEvent`]s (pure).
//!
//! Follows the OpenTelemetry semantic conventions for GenAI agent spans, version 1.37.0
//! ([`SEMCONV_VERSION`]); the table is in the README (Ingest, OpenTelemetry traces). In short:
//! a span with `gen_ai.operation.name = invoke_agent` is a task unless it is nested in another
//! agent invocation of the same request ([`Mapper::map_request`]); every other span is ignored.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use schemas::validation::limits::MAX_ATTRIBUTE_VALUE_BYTES;
use schemas::{TaskEvent, TaskStatus};

/// The GenAI semantic-conventions version this mapping follows.
pub const SEMCONV_VERSION: &str = "1.37.0";

/// Attribute names of the conventions.
pub mod attr {
    /// `invoke_agent` marks an agent invocation.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The agent (preferred).
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    /// The agent when it has no name.
    pub const AGENT_ID: &str = "gen_ai.agent.id";
    /// The model asked for.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model that answered (when no request model is given).
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Prompt tokens.
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Completion tokens.
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// The provider (1.37.0).
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The provider before 1.37.0 (still emitted by many instrumentations).
    pub const SYSTEM: &str = "gen_ai.system";
    /// The conversation (session), kept as a task attribute.
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// The error class of a failed operation.
    pub const ERROR_TYPE: &str = "error.type";
    /// The value of [`OPERATION_NAME`] for an agent invocation.
    pub const INVOKE_AGENT: &str = "invoke_agent";
}

/// What the mapping is configured with (`[ingest.otlp]`).
#[derive(Debug, Clone)]
pub struct Mapper {
    cost_attribute: String,
    interventions_attribute: String,
    task_attribute: String,
    cancelled_error_types: Vec<String>,
    /// Longest name first, so the first prefix match is the longest.
    prices: Vec<(String, settings::ModelPrice)>,
}

/// Why a span produced no task and is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an agent invocation (LLM calls, tools, HTTP, ...).
    NotAgent,
    /// An agent invocation inside another one of the same request, or marked not a task.
    Nested,
}

impl Ignored {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotAgent => "not_agent",
            Ignored::Nested => "nested_agent",
        }
    }
}

/// Why an agent span cannot become a task event: reported in `partial_success`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The span id (hex), as far as it could be read.
    pub span_id: String,
    /// Stable label: `invalid_id`, `missing_agent`, `missing_time`, `invalid_attribute`,
    /// `invalid_field`, `future_event`.
    pub reason: &'static str,
    /// The attribute or task-event field to blame.
    pub field: String,
    /// A sentence for people.
    pub message: String,
}

/// One span's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The span is a task: publish this event.
    Task(Box<TaskEvent>),
    /// Accepted, no task.
    Ignored(Ignored),
    /// Refused, with the reason.
    Rejected(Rejection),
}

/// The attributes the mapping reads, gathered in one pass over a span's attributes.
#[derive(Default)]
struct Read<'a> {
    operation: Option<&'a Value>,
    agent_name: Option<&'a Value>,
    agent_id: Option<&'a Value>,
    request_model: Option<&'a Value>,
    response_model: Option<&'a Value>,
    input_tokens: Option<&'a Value>,
    output_tokens: Option<&'a Value>,
    provider: Option<&'a Value>,
    system: Option<&'a Value>,
    conversation: Option<&'a Value>,
    error_type: Option<&'a Value>,
    cost: Option<&'a Value>,
    interventions: Option<&'a Value>,
    task: Option<&'a Value>,
}

fn string(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::StringValue(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    }
}

fn reject(span: &Span, reason: &'static str, field: &str, message: impl Into<String>) -> Verdict {
    Verdict::Rejected(Rejection {
        span_id: hex::encode(&span.span_id),
        reason,
        field: field.to_string(),
        message: message.into(),
    })
}

/// An integer attribute: an int, or a double without a fraction (some SDKs send counts as
/// doubles). `Err` names the expected type.
fn integer(v: &Value) -> Result<i64, ()> {
    match v {
        Value::IntValue(i) => Ok(*i),
        Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Ok(*d as i64),
        _ => Err(()),
    }
}

impl Mapper {
    /// The mapping configured by `[ingest.otlp]`.
    pub fn new(config: &settings::Otlp) -> Mapper {
        let mut prices: Vec<(String, settings::ModelPrice)> =
            config.prices.iter().map(|(k, v)| (k.clone(), *v)).collect();
        prices.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Mapper {
            cost_attribute: config.cost_attribute.clone(),
            interventions_attribute: config.interventions_attribute.clone(),
            task_attribute: config.task_attribute.clone(),
            cancelled_error_types: config.cancelled_error_types.clone(),
            prices,
        }
    }

    /// The price of a model: exact name, else the longest configured prefix.
    pub fn price(&self, model: &str) -> Option<settings::ModelPrice> {
        self.prices
            .iter()
            .find(|(name, _)| model.starts_with(name.as_str()))
            .map(|(_, p)| *p)
    }

    fn read<'a>(&self, attributes: &'a [KeyValue]) -> Read<'a> {
        let mut r = Read::default();
        for kv in attributes {
            let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                continue;
            };
            let slot = match kv.key.as_str() {
                attr::OPERATION_NAME => &mut r.operation,
                attr::AGENT_NAME => &mut r.agent_name,
                attr::AGENT_ID => &mut r.agent_id,
                attr::REQUEST_MODEL => &mut r.request_model,
                attr::RESPONSE_MODEL => &mut r.response_model,
                attr::INPUT_TOKENS => &mut r.input_tokens,
                attr::OUTPUT_TOKENS => &mut r.output_tokens,
                attr::PROVIDER_NAME => &mut r.provider,
                attr::SYSTEM => &mut r.system,
                attr::CONVERSATION_ID => &mut r.conversation,
                attr::ERROR_TYPE => &mut r.error_type,
                k if k == self.cost_attribute => &mut r.cost,
                k if k == self.interventions_attribute => &mut r.interventions,
                k if k == self.task_attribute => &mut r.task,
                _ => continue,
            };
            *slot = Some(value);
        }
        r
    }

    /// Whether a span is an agent invocation, and its explicit task flag if any.
    fn agent_flags(&self, span: &Span) -> (bool, Option<bool>) {
        let r = self.read(&span.attributes);
        let is_agent = string(r.operation) == Some(attr::INVOKE_AGENT);
        let task = match r.task {
            Some(Value::BoolValue(b)) => Some(*b),
            _ => None,
        };
        (is_agent, task)
    }

    /// Judges every span of a request, in request order.
    ///
    /// Nesting rule: an `invoke_agent` span is a task unless one of its ancestors *in this
    /// request* (followed through `parentSpanId` within the trace) is an `invoke_agent` span
    /// that is itself not marked `task = false`. A span whose parent is not in the request
    /// counts as outermost: exporters send a trace's spans in one request when they end within
    /// one batch, so an agent whose enclosing agent ends in a later batch counts as its own
    /// task. The task attribute (`agentops.task`, bool) overrides the rule either way.
    ///
    /// `now_ms` is the receiver's clock; `max_future_skew_ms` bounds `completed_at` ahead of it.
    pub fn map_request(
        &self,
        request: &ExportTraceServiceRequest,
        tenant: &str,
        now_ms: i64,
        max_future_skew_ms: i64,
    ) -> Vec<Verdict> {
        let spans: Vec<&Span> = request
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter())
            .collect();
        let flags: Vec<(bool, Option<bool>)> = spans.iter().map(|s| self.agent_flags(s)).collect();
        let mut by_id: HashMap<(&[u8], &[u8]), usize> = HashMap::with_capacity(spans.len());
        for (i, s) in spans.iter().enumerate() {
            by_id
                .entry((s.trace_id.as_slice(), s.span_id.as_slice()))
                .or_insert(i);
        }
        let nested = |i: usize| -> bool {
            let mut current = spans[i];
            // At most one step per span of the request: a cycle of parent ids cannot loop.
            for _ in 0..spans.len() {
                if current.parent_span_id.is_empty() {
                    return false;
                }
                let Some(&p) = by_id.get(&(current.trace_id.as_slice(), current.parent_span_id.as_slice()))
                else {
                    return false;
                };
                let (is_agent, task) = flags[p];
                if is_agent && task != Some(false) {
                    return true;
                }
                current = spans[p];
            }
            false
        };
        spans
            .iter()
            .enumerate()
            .map(|(i, span)| match flags[i] {
                (false, _) => Verdict::Ignored(Ignored::NotAgent),
                (true, Some(false)) => Verdict::Ignored(Ignored::Nested),
                (true, None) if nested(i) => Verdict::Ignored(Ignored::Nested),
                (true, _) => self.task_event(span, tenant, now_ms, max_future_skew_ms),
            })
            .collect()
    }

    /// The task event of one agent span (no nesting judgement).
    pub fn task_event(&self, span: &Span, tenant: &str, now_ms: i64, max_future_skew_ms: i64) -> Verdict {
        if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
            return reject(span, "invalid_id", "traceId", "must be 16 bytes, not all zero");
        }
        if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
            return reject(span, "invalid_id", "spanId", "must be 8 bytes, not all zero");
        }
        let r = self.read(&span.attributes);
        let Some(agent) = string(r.agent_name).or(string(r.agent_id)) else {
            return reject(
                span,
                "missing_agent",
                attr::AGENT_NAME,
                "an invoke_agent span needs gen_ai.agent.name or gen_ai.agent.id",
            );
        };
        if span.start_time_unix_nano == 0 {
            return reject(span, "missing_time", "startTimeUnixNano", "must be set");
        }
        if span.end_time_unix_nano == 0 {
            return reject(
                span,
                "missing_time",
                "endTimeUnixNano",
                "must be set (a finished span)",
            );
        }
        let ms = |ns: u64| (ns / 1_000_000) as i64;
        let (started_at, completed_at) = (ms(span.start_time_unix_nano), ms(span.end_time_unix_nano));

        let error_type = string(r.error_type);
        let status = match error_type {
            Some(e) if self.cancelled_error_types.iter().any(|c| c == e) => TaskStatus::Cancelled,
            Some(_) => TaskStatus::Failed,
            None => match span.status.as_ref().map(|s| s.code) {
                Some(code) if code == SpanStatusCode::Error as i32 => TaskStatus::Failed,
                _ => TaskStatus::Succeeded,
            },
        };

        let model = string(r.request_model).or(string(r.response_model));
        let mut tokens = [None, None];
        for (slot, (key, value)) in tokens.iter_mut().zip([
            (attr::INPUT_TOKENS, r.input_tokens),
            (attr::OUTPUT_TOKENS, r.output_tokens),
        ]) {
            if let Some(v) = value {
                match integer(v) {
                    Ok(n) => *slot = Some(n),
                    Err(()) => return reject(span, "invalid_attribute", key, "must be an int"),
                }
            }
        }
        let [input_tokens, output_tokens] = tokens;

        let human_interventions = match r.interventions {
            None => 0,
            Some(v) => match integer(v).ok().and_then(|n| i32::try_from(n).ok()) {
                Some(n) => n,
                None => {
                    return reject(
                        span,
                        "invalid_attribute",
                        &self.interventions_attribute,
                        "must be an int (32 bits)",
                    )
                }
            },
        };

        let (cost_micros, cost_source) = match r.cost {
            Some(v) => {
                let usd = match v {
                    Value::DoubleValue(d) => *d,
                    Value::IntValue(i) => *i as f64,
                    _ => {
                        return reject(
                            span,
                            "invalid_attribute",
                            &self.cost_attribute,
                            "must be a number (USD)",
                        )
                    }
                };
                let micros = (usd * 1e6).round();
                if !micros.is_finite() || micros.abs() > 9.0e18 {
                    return reject(
                        span,
                        "invalid_attribute",
                        &self.cost_attribute,
                        "must be a finite number (USD)",
                    );
                }
                (micros as i64, "attribute")
            }
            None => match model.and_then(|m| self.price(m)) {
                Some(p) => {
                    let micros = input_tokens.unwrap_or(0).max(0) as f64 * p.input_usd_per_mtok
                        + output_tokens.unwrap_or(0).max(0) as f64 * p.output_usd_per_mtok;
                    (micros.round() as i64, "price_table")
                }
                None => (0, "unpriced"),
            },
        };

        let trace_hex = hex::encode(&span.trace_id);
        let span_hex = hex::encode(&span.span_id);
        let mut attributes = BTreeMap::new();
        attributes.insert("otel.trace_id".to_string(), trace_hex.clone());
        attributes.insert("otel.span_id".to_string(), span_hex.clone());
        attributes.insert("cost_source".to_string(), cost_source.to_string());
        if let Some(provider) = string(r.provider).or(string(r.system)) {
            attributes.insert(attr::PROVIDER_NAME.to_string(), provider.to_string());
        }
        if let Some(conversation) = string(r.conversation).filter(|c| c.len() <= MAX_ATTRIBUTE_VALUE_BYTES) {
            attributes.insert(attr::CONVERSATION_ID.to_string(), conversation.to_string());
        }
        if let Some(e) = error_type.filter(|e| e.len() <= MAX_ATTRIBUTE_VALUE_BYTES) {
            attributes.insert(attr::ERROR_TYPE.to_string(), e.to_string());
        }

        let event = TaskEvent {
            event_id: format!("otlp:{trace_hex}:{span_hex}"),
            task_id: format!("{trace_hex}:{span_hex}"),
            tenant_id: tenant.to_string(),
            agent_id: agent.to_string(),
            status,
            human_interventions,
            started_at,
            completed_at,
            cost_micros,
            model: model.map(str::to_string),
            input_tokens,
            output_tokens,
            attributes,
        };
        if let Err(v) = schemas::validation::validate(&event) {
            return reject(span, "invalid_field", &v.field, v.message);
        }
        if let Err(v) =
            schemas::validation::validate_not_future(event.completed_at, now_ms, max_future_skew_ms)
        {
            return reject(span, "future_event", &v.field, v.message);
        }
        Verdict::Task(Box::new(event))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    use super::*;

    const T0_NS: u64 = 1_764_000_000_000_000_000; // 2025-11-24
    const NOW_MS: i64 = 1_764_000_100_000;

    fn mapper() -> Mapper {
        let defaults = settings::Settings::load(None, &Default::default()).unwrap();
        Mapper::new(&defaults.ingest.otlp)
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn agent_span(span: u8, parent: Option<u8>, agent: &str) -> Span {
        Span {
            trace_id: vec![0xab; 16],
            span_id: vec![span; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("invoke_agent {agent}"),
            start_time_unix_nano: T0_NS,
            end_time_unix_nano: T0_NS + 2_500_000_000,
            attributes: vec![
                kv(attr::OPERATION_NAME, s(attr::INVOKE_AGENT)),
                kv(attr::AGENT_NAME, s(agent)),
                kv(attr::REQUEST_MODEL, s("gpt-4o-2024-08-06")),
                kv(attr::INPUT_TOKENS, Value::IntValue(1000)),
                kv(attr::OUTPUT_TOKENS, Value::IntValue(200)),
                kv(attr::SYSTEM, s("openai")),
            ],
            ..Default::default()
        }
    }

    fn other_span(span: u8, parent: Option<u8>, operation: &str) -> Span {
        Span {
            attributes: vec![kv(attr::OPERATION_NAME, s(operation))],
            ..agent_span(span, parent, "x")
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn one(span: Span) -> Verdict {
        mapper().task_event(&span, "acme", NOW_MS, 60_000)
    }

    fn task(span: Span) -> TaskEvent {
        match one(span) {
            Verdict::Task(e) => *e,
            other => panic!("not a task: {other:?}"),
        }
    }

    fn rejection(span: Span) -> Rejection {
        match one(span) {
            Verdict::Rejected(r) => r,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn an_agent_span_maps_field_by_field() {
        let e = task(agent_span(1, None, "planner"));
        let (trace, span) = ("ab".repeat(16), "01".repeat(8));
        assert_eq!(e.event_id, format!("otlp:{trace}:{span}"));
        assert_eq!(e.task_id, format!("{trace}:{span}"));
        assert_eq!(e.tenant_id, "acme");
        assert_eq!(e.agent_id, "planner");
        assert_eq!(e.status, TaskStatus::Succeeded);
        assert_eq!(e.started_at, 1_764_000_000_000);
        assert_eq!(e.completed_at, 1_764_000_002_500);
        assert_eq!(e.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!((e.input_tokens, e.output_tokens), (Some(1000), Some(200)));
        // gpt-4o prefix: 1000 * 2.5 + 200 * 10 micro-USD.
        assert_eq!(e.cost_micros, 4_500);
        assert_eq!(e.attributes["cost_source"], "price_table");
        assert_eq!(
            e.attributes["gen_ai.provider.name"], "openai",
            "legacy gen_ai.system read"
        );
        assert_eq!(e.attributes["otel.span_id"], span);
        assert_eq!(e.human_interventions, 0);
        // The same span again (an exporter's retry) is the same event.
        assert_eq!(task(agent_span(1, None, "planner")), e);
    }

    #[test]
    fn agent_id_provider_name_cost_and_interventions_attributes() {
        let mut span = agent_span(1, None, "ignored");
        span.attributes.retain(|a| a.key != attr::AGENT_NAME);
        span.attributes.push(kv(attr::AGENT_ID, s("asst_42")));
        span.attributes
            .push(kv(attr::PROVIDER_NAME, s("azure.ai.openai")));
        span.attributes
            .push(kv("agentops.cost_usd", Value::DoubleValue(0.0123456)));
        span.attributes
            .push(kv("agentops.human_interventions", Value::IntValue(2)));
        let e = task(span);
        assert_eq!(e.agent_id, "asst_42");
        assert_eq!(
            e.attributes["gen_ai.provider.name"], "azure.ai.openai",
            "provider.name wins over system"
        );
        assert_eq!(e.cost_micros, 12_346);
        assert_eq!(e.attributes["cost_source"], "attribute");
        assert_eq!(e.human_interventions, 2);
    }

    #[test]
    fn price_is_exact_then_longest_prefix_then_unpriced() {
        let m = mapper();
        assert_eq!(m.price("gpt-4o-mini").unwrap().input_usd_per_mtok, 0.15);
        assert_eq!(
            m.price("gpt-4o-mini-2024-07-18").unwrap().input_usd_per_mtok,
            0.15
        );
        assert_eq!(m.price("gpt-4o-2024-08-06").unwrap().input_usd_per_mtok, 2.5);
        assert!(m.price("gpt-4").is_none());
        let mut span = agent_span(1, None, "a");
        span.attributes.retain(|a| a.key != attr::REQUEST_MODEL);
        span.attributes.push(kv(attr::RESPONSE_MODEL, s("mystery-1")));
        let e = task(span);
        assert_eq!(
            (e.cost_micros, e.attributes["cost_source"].as_str()),
            (0, "unpriced")
        );
        assert_eq!(
            e.model.as_deref(),
            Some("mystery-1"),
            "response model when no request model"
        );
    }

    #[test]
    fn status_from_span_status_and_error_type() {
        let with = |code: Option<SpanStatusCode>, error: Option<&str>| {
            let mut span = agent_span(1, None, "a");
            span.status = code.map(|c| Status {
                code: c as i32,
                message: String::new(),
            });
            if let Some(e) = error {
                span.attributes.push(kv(attr::ERROR_TYPE, s(e)));
            }
            task(span).status
        };
        assert_eq!(with(None, None), TaskStatus::Succeeded);
        assert_eq!(with(Some(SpanStatusCode::Ok), None), TaskStatus::Succeeded);
        assert_eq!(with(Some(SpanStatusCode::Error), None), TaskStatus::Failed);
        assert_eq!(with(None, Some("timeout")), TaskStatus::Failed);
        assert_eq!(
            with(Some(SpanStatusCode::Error), Some("cancelled")),
            TaskStatus::Cancelled
        );
        assert_eq!(
            with(Some(SpanStatusCode::Error), Some("asyncio.CancelledError")),
            TaskStatus::Cancelled
        );
    }

    #[test]
    fn spans_missing_what_a_task_needs_are_rejected_with_the_reason() {
        let mut no_agent = agent_span(1, None, "a");
        no_agent.attributes.retain(|a| a.key != attr::AGENT_NAME);
        assert_eq!(rejection(no_agent).reason, "missing_agent");

        let mut blank_agent = agent_span(1, None, " ");
        blank_agent.name.clear();
        assert_eq!(rejection(blank_agent).reason, "missing_agent");

        let mut no_end = agent_span(1, None, "a");
        no_end.end_time_unix_nano = 0;
        let r = rejection(no_end);
        assert_eq!((r.reason, r.field.as_str()), ("missing_time", "endTimeUnixNano"));

        let mut short_trace = agent_span(1, None, "a");
        short_trace.trace_id = vec![1; 15];
        assert_eq!(rejection(short_trace).field, "traceId");
        let mut zero_span = agent_span(0, None, "a");
        zero_span.span_id = vec![0; 8];
        assert_eq!(rejection(zero_span).field, "spanId");

        let mut backwards = agent_span(1, None, "a");
        backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1_000_000;
        let r = rejection(backwards);
        assert_eq!((r.reason, r.field.as_str()), ("invalid_field", "completed_at"));

        let mut slash = agent_span(1, None, "team/a");
        slash.name.clear();
        let r = rejection(slash);
        assert_eq!((r.reason, r.field.as_str()), ("invalid_field", "agent_id"));

        let mut text_tokens = agent_span(1, None, "a");
        text_tokens.attributes.push(kv(attr::INPUT_TOKENS, s("many")));
        let r = rejection(text_tokens);
        assert_eq!(
            (r.reason, r.field.as_str()),
            ("invalid_attribute", attr::INPUT_TOKENS)
        );

        let mut negative = agent_span(1, None, "a");
        negative
            .attributes
            .push(kv(attr::OUTPUT_TOKENS, Value::IntValue(-1)));
        assert_eq!(rejection(negative).field, "output_tokens");

        let mut bad_cost = agent_span(1, None, "a");
        bad_cost
            .attributes
            .push(kv("agentops.cost_usd", Value::DoubleValue(f64::NAN)));
        assert_eq!(rejection(bad_cost).field, "agentops.cost_usd");

        let mut huge_interventions = agent_span(1, None, "a");
        huge_interventions
            .attributes
            .push(kv("agentops.human_interventions", Value::IntValue(1 << 40)));
        assert_eq!(
            rejection(huge_interventions).field,
            "agentops.human_interventions"
        );
    }

    #[test]
    fn the_future_check_is_exact_at_the_skew() {
        let at = |end_ms: i64| {
            let mut span = agent_span(1, None, "a");
            span.end_time_unix_nano = end_ms as u64 * 1_000_000;
            mapper().task_event(&span, "acme", NOW_MS, 60_000)
        };
        assert!(matches!(at(NOW_MS + 60_000), Verdict::Task(_)));
        match at(NOW_MS + 60_001) {
            Verdict::Rejected(r) => {
                assert_eq!((r.reason, r.field.as_str()), ("future_event", "completed_at"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_outermost_agent_of_a_request_is_a_task() {
        // root workflow span 1 -> agent 2 -> chat 3 -> agent 4 (nested, via a non-agent span)
        // agent 5 whose parent 9 is not in the request; chat 6 under agent 5.
        let spans = vec![
            other_span(4, Some(3), "chat"), // placeholder, replaced below
            other_span(1, None, "invoke_workflow"),
            agent_span(2, Some(1), "outer"),
            other_span(3, Some(2), "chat"),
            agent_span(5, Some(9), "elsewhere"),
            other_span(6, Some(5), "execute_tool"),
        ];
        let mut spans = spans;
        spans[0] = agent_span(4, Some(3), "inner");
        let verdicts = mapper().map_request(&request(spans), "acme", NOW_MS, 60_000);
        let kinds: Vec<String> = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Task(e) => e.agent_id.clone(),
                Verdict::Ignored(i) => i.as_str().to_string(),
                Verdict::Rejected(r) => r.reason.to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "nested_agent",
                "not_agent",
                "outer",
                "not_agent",
                "elsewhere",
                "not_agent"
            ]
        );
    }

    #[test]
    fn the_task_attribute_overrides_the_nesting_rule() {
        let mut outer = agent_span(2, None, "router");
        outer
            .attributes
            .push(kv("agentops.task", Value::BoolValue(false)));
        let mut forced = agent_span(4, Some(2), "forced");
        forced
            .attributes
            .push(kv("agentops.task", Value::BoolValue(true)));
        let inner = agent_span(3, Some(2), "inner"); // its only agent ancestor is not a task
        let verdicts = mapper().map_request(&request(vec![outer, forced, inner]), "acme", NOW_MS, 60_000);
        let agents: Vec<Option<String>> = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Task(e) => Some(e.agent_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(agents, [None, Some("forced".into()), Some("inner".into())]);
    }

    #[test]
    fn a_cycle_of_parent_ids_terminates() {
        let a = other_span(1, Some(2), "chat");
        let b = other_span(2, Some(1), "chat");
        let c = agent_span(3, Some(1), "agent");
        let verdicts = mapper().map_request(&request(vec![a, b, c]), "acme", NOW_MS, 60_000);
        assert!(matches!(verdicts[2], Verdict::Task(_)));
    }

    #[test]
    fn same_span_ids_in_other_traces_do_not_nest() {
        let outer = agent_span(1, None, "outer");
        let mut other_trace = agent_span(2, Some(1), "other");
        other_trace.trace_id = vec![0xcd; 16];
        let verdicts = mapper().map_request(&request(vec![outer, other_trace]), "acme", NOW_MS, 60_000);
        assert!(verdicts.iter().all(|v| matches!(v, Verdict::Task(_))));
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z/* ]{0,8}".prop_map(Value::StringValue),
            any::<i64>().prop_map(Value::IntValue),
            any::<f64>().prop_map(Value::DoubleValue),
            any::<bool>().prop_map(Value::BoolValue),
            Just(Value::StringValue(attr::INVOKE_AGENT.into())),
        ]
    }

    proptest::proptest! {
        /// Whatever the attributes, ids and times: one verdict per span, no panic, and every
        /// task event passes the gateway's validation and future check.
        #[test]
        fn every_span_gets_one_verdict_and_every_task_is_valid(
            spans in proptest::collection::vec(
                (
                    0u8..4, 0u8..4, proptest::option::of(0u8..4), 0u64..2_000_000_000_000_000_000,
                    0u64..2_000_000_000_000_000_000,
                    proptest::collection::vec(
                        (proptest::sample::select(vec![
                            attr::OPERATION_NAME, attr::AGENT_NAME, attr::AGENT_ID, attr::INPUT_TOKENS,
                            attr::OUTPUT_TOKENS, attr::REQUEST_MODEL, attr::ERROR_TYPE,
                            "agentops.cost_usd", "agentops.human_interventions", "agentops.task",
                        ]), any_value()),
                        0..8,
                    ),
                ),
                0..12,
            )
        ) {
            let spans: Vec<Span> = spans
                .into_iter()
                .map(|(trace, id, parent, start, end, attributes)| Span {
                    trace_id: vec![trace; if trace == 3 { 15 } else { 16 }],
                    span_id: vec![id; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes: attributes.into_iter().map(|(k, v)| kv(k, v)).collect(),
                    ..Default::default()
                })
                .collect();
            let n = spans.len();
            let verdicts = mapper().map_request(&request(spans), "acme", NOW_MS, 60_000);
            proptest::prop_assert_eq!(verdicts.len(), n);
            for v in verdicts {
                if let Verdict::Task(e) = v {
                    proptest::prop_assert!(schemas::validation::validate(&e).is_ok());
                    proptest::prop_assert!(e.completed_at <= NOW_MS + 60_000);
                    proptest::prop_assert_eq!(e.tenant_id.as_str(), "acme");
                }
            }
        }
    }
}
