//! Load for `POST /v1/traces`: posts protobuf `ExportTraceServiceRequest`s to a running gateway
//! and reports spans/s and task events/s acknowledged by the broker (durable), with request
//! latencies. Run by `scripts/bench-otlp.sh` (which starts Tansu and the gateway); not in CI.
//!
//! Environment: `OTLP_URL` (e.g. `http://127.0.0.1:18080/v1/traces`), `OTLP_KEY` (API key),
//! `SPANS` (total, default 200000), `BATCH` (spans per request, 500), `IN_FLIGHT` (8),
//! `SPANS_PER_TASK` (1: every span an agent invocation; 3: an agent span and two chat spans).
//! The requests are encoded before the clock starts.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn text(s: &str) -> Value {
    Value::StringValue(s.into())
}

const AGENTS: [&str; 8] = [
    "triage", "billing", "research", "refunds", "planner", "coder", "reviewer", "support",
];

fn request(first_task: u64, tasks: u64, spans_per_task: u64, end_ns: u64) -> bytes::Bytes {
    let mut spans = Vec::with_capacity((tasks * spans_per_task) as usize);
    for t in first_task..first_task + tasks {
        let trace_id = [t.to_be_bytes(), 0x5eed_u64.to_be_bytes()].concat();
        let end = end_ns + t * 1_000;
        let start = end - 1_500_000_000 - (t % 1000) * 1_000_000;
        let agent_span_id = (t * 2 + 1).to_be_bytes().to_vec();
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: agent_span_id.clone(),
            name: "invoke_agent".into(),
            kind: 1,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![
                kv("gen_ai.operation.name", text("invoke_agent")),
                kv("gen_ai.agent.name", text(AGENTS[(t % 8) as usize])),
                kv("gen_ai.provider.name", text("openai")),
                kv("gen_ai.request.model", text("gpt-4o-mini")),
                kv(
                    "gen_ai.usage.input_tokens",
                    Value::IntValue(1_000 + (t % 500) as i64),
                ),
                kv(
                    "gen_ai.usage.output_tokens",
                    Value::IntValue(200 + (t % 100) as i64),
                ),
                kv(
                    "gen_ai.conversation.id",
                    Value::StringValue(format!("conv-{}", t / 4)),
                ),
            ],
            ..Default::default()
        });
        for c in 1..spans_per_task {
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: (t * 2 + 1 + (c << 48)).to_be_bytes().to_vec(),
                parent_span_id: agent_span_id.clone(),
                name: "chat gpt-4o-mini".into(),
                kind: 3,
                start_time_unix_nano: start + c * 1_000_000,
                end_time_unix_nano: start + c * 2_000_000,
                attributes: vec![
                    kv("gen_ai.operation.name", text("chat")),
                    kv("gen_ai.request.model", text("gpt-4o-mini")),
                    kv("gen_ai.usage.input_tokens", Value::IntValue(500)),
                    kv("gen_ai.usage.output_tokens", Value::IntValue(100)),
                ],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("bench"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
    .into()
}

fn main() {
    let Ok(url) = std::env::var("OTLP_URL") else {
        eprintln!("otlp_load: set OTLP_URL and OTLP_KEY (scripts/bench-otlp.sh does); nothing run");
        return;
    };
    let key = std::env::var("OTLP_KEY").expect("OTLP_KEY");
    let total: u64 = env("SPANS", 200_000);
    let batch: u64 = env("BATCH", 500);
    let in_flight: usize = env("IN_FLIGHT", 8);
    let per_task: u64 = env("SPANS_PER_TASK", 1).max(1);
    let tasks_per_request = (batch / per_task).max(1);
    let requests = (total / (tasks_per_request * per_task)).max(1);
    // Times end a minute ago and advance by 1 us per task: valid, in order, never from the future.
    let end_ns = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64) - 60_000_000_000;
    let bodies: Vec<bytes::Bytes> = (0..requests)
        .map(|r| request(r * tasks_per_request, tasks_per_request, per_task, end_ns))
        .collect();
    let body_bytes: usize = bodies.iter().map(|b| b.len()).sum();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let results: Vec<(Duration, u16, i64)> = stream::iter(bodies)
            .map(|body| {
                let client = client.clone();
                let (url, key) = (url.clone(), key.clone());
                async move {
                    let t = Instant::now();
                    let response = client
                        .post(url)
                        .header("authorization", format!("Bearer {key}"))
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await
                        .expect("request");
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.expect("body");
                    let rejected = ExportTraceServiceResponse::decode(bytes.as_ref())
                        .ok()
                        .and_then(|r| r.partial_success)
                        .map_or(0, |p| p.rejected_spans);
                    (t.elapsed(), status, rejected)
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let failed = results.iter().filter(|r| r.1 != 200).count();
        let rejected: i64 = results.iter().map(|r| r.2).sum();
        assert_eq!((failed, rejected), (0, 0), "every request acknowledged whole");
        let mut latencies: Vec<f64> = results.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
        latencies.sort_by(f64::total_cmp);
        let q = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let spans = requests * tasks_per_request * per_task;
        let tasks = requests * tasks_per_request;
        println!(
            "otlp: {spans} spans ({tasks} task events, {per_task} span(s) per task) in {requests} requests of {} \
             spans, {in_flight} in flight, {:.1} MB protobuf: {:.1} s, {:.0} spans/s, {:.0} task events/s; \
             request p50 {:.1} ms, p99 {:.1} ms",
            tasks_per_request * per_task,
            body_bytes as f64 / 1e6,
            elapsed,
            spans as f64 / elapsed,
            tasks as f64 / elapsed,
            q(0.5),
            q(0.99),
        );
    });
}
