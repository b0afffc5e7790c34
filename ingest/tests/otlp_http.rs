//! `POST /v1/traces` over HTTP: formats, compression, auth, partial success, limits and the
//! broker's refusals, with exact statuses and bodies. The broker is replaced by
//! `RecordingSink` (a test double that records what it is given and can be told to fail); the
//! real Python exporter and Kafka are in `integration-tests/tests/otlp.rs`. The JSON bodies are
//! fixtures written from the OTLP specification's example (`tests/fixtures/otlp/`).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use flate2::write::GzEncoder;
use ingest::gateway::{self, EventSink, Gateway, Limits, SinkError};
use ingest::otlp::response::RpcStatus;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use schemas::{TaskEvent, TaskStatus};
use serde_json::{json, Value};
use store::sqlite::SqliteStore;
use store::Store;

const MAX_BODY: u64 = 8_192;

#[derive(Default)]
struct RecordingSink {
    published: Mutex<Vec<TaskEvent>>,
    fail_with: Mutex<Option<SinkError>>,
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        let fail = self.fail_with.lock().unwrap().clone();
        events
            .iter()
            .map(|e| match &fail {
                Some(err) => Err(err.clone()),
                None => {
                    self.published.lock().unwrap().push(e.clone());
                    Ok(())
                }
            })
            .collect()
    }

    async fn ready(&self) -> bool {
        true
    }
}

struct Setup {
    gateway: Arc<Gateway>,
    sink: Arc<RecordingSink>,
    token: String,
}

async fn setup() -> Setup {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(":memory:").await.unwrap());
    store.migrate().await.unwrap();
    let token = gateway::create_api_key(store.as_ref(), "acme", "tests")
        .await
        .unwrap()
        .token;
    let sink = Arc::new(RecordingSink::default());
    let limits = Limits {
        max_batch_events: 5,
        max_body_bytes: MAX_BODY,
        max_future_skew_ms: 60_000,
    };
    let gateway = Gateway::new(sink.clone(), store, limits);
    Setup { gateway, sink, token }
}

struct Reply {
    status: u16,
    headers: warp::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn post(s: &Setup, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut req = warp::test::request().method("POST").path("/v1/traces").body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.reply(&gateway::routes(s.gateway.clone())).await;
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.body().to_vec(),
    }
}

fn bearer(s: &Setup) -> String {
    format!("Bearer {}", s.token)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/otlp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(value.into())),
        }),
    }
}

fn now_ns() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64
}

fn agent_span(id: u8, agent: &str) -> Span {
    let end = now_ns() - 1_000_000_000;
    Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        name: "invoke_agent".into(),
        start_time_unix_nano: end - 2_000_000_000,
        end_time_unix_nano: end,
        attributes: vec![
            kv("gen_ai.operation.name", "invoke_agent"),
            kv("gen_ai.agent.name", agent),
        ],
        ..Default::default()
    }
}

fn protobuf(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(s: &Setup) -> String {
    let res = warp::test::request()
        .path("/metrics")
        .reply(&gateway::routes(s.gateway.clone()))
        .await;
    String::from_utf8(res.body().to_vec()).unwrap()
}

#[tokio::test]
async fn spec_json_fixture_maps_the_outermost_agents_and_answers_in_json() {
    let s = setup().await;
    let r = post(
        &s,
        &[
            ("authorization", &bearer(&s)),
            ("content-type", "application/json"),
        ],
        fixture("agent_trace.json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json(), json!({}), "full success: no partial_success");
    let published = s.sink.published.lock().unwrap().clone();
    assert_eq!(
        published.len(),
        2,
        "the nested lookup-helper is not a task: {published:?}"
    );
    let bot = &published[0];
    assert_eq!(bot.agent_id, "support-bot");
    assert_eq!(bot.tenant_id, "acme");
    assert_eq!(bot.task_id, "5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174");
    assert_eq!(
        bot.event_id,
        "otlp:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174"
    );
    assert_eq!(
        (bot.started_at, bot.completed_at),
        (1_544_712_660_000, 1_544_712_661_000)
    );
    assert_eq!(bot.status, TaskStatus::Succeeded);
    assert_eq!((bot.input_tokens, bot.output_tokens), (Some(1200), Some(300)));
    assert_eq!(bot.cost_micros, 360, "1200 x 0.15 + 300 x 0.6 micro-USD");
    assert_eq!(bot.human_interventions, 1);
    assert_eq!(bot.attributes["gen_ai.conversation.id"], "conv-42");
    let refund = &published[1];
    assert_eq!(refund.agent_id, "refund-agent", "from gen_ai.agent.id");
    assert_eq!(refund.status, TaskStatus::Failed);
    assert_eq!(refund.cost_micros, 37_500, "from agentops.cost_usd");
    assert_eq!(
        refund.attributes["gen_ai.provider.name"], "anthropic",
        "legacy gen_ai.system"
    );
    assert_eq!(refund.attributes["error.type"], "tool_error");

    let m = metrics(&s).await;
    assert_eq!(metric(&m, "ingest_otlp_spans_received_total"), 4.0);
    assert_eq!(metric(&m, "ingest_otlp_spans_mapped_total"), 2.0);
    assert_eq!(
        metric(&m, "ingest_otlp_spans_ignored_total{reason=\"not_agent\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "ingest_otlp_spans_ignored_total{reason=\"nested_agent\"}"),
        1.0
    );
    assert_eq!(metric(&m, "ingest_events_accepted_total"), 2.0);
}

#[tokio::test]
async fn json_numbers_for_int64_and_empty_values_are_accepted() {
    let s = setup().await;
    let r = post(
        &s,
        &[
            ("authorization", &bearer(&s)),
            ("content-type", "application/json; charset=utf-8"),
        ],
        fixture("numbers_and_empty_values.json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let published = s.sink.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].started_at, 1_544_712_660_000);
    assert_eq!(published[0].input_tokens, Some(10));
    // An empty request (no resourceSpans) is a success with nothing published.
    let r = post(
        &s,
        &[("x-api-key", &s.token), ("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({})));
}

#[tokio::test]
async fn invalid_spans_are_rejected_in_partial_success_and_the_rest_published() {
    let s = setup().await;
    let r = post(
        &s,
        &[
            ("authorization", &bearer(&s)),
            ("content-type", "application/json"),
        ],
        fixture("partly_invalid.json"),
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(
        body["partialSuccess"]["rejectedSpans"], "2",
        "int64 as a string: {body}"
    );
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("span 0000000000000001: missing_agent (gen_ai.agent.name)"),
        "{message}"
    );
    assert!(
        message.contains("span 0000000000000002: invalid_field (completed_at)"),
        "{message}"
    );
    let published = s.sink.published.lock().unwrap().clone();
    assert_eq!(
        published.iter().map(|e| e.agent_id.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "ingest_otlp_spans_rejected_total{reason=\"missing_agent\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "ingest_otlp_spans_rejected_total{reason=\"invalid_field\"}"),
        1.0
    );

    // The same in protobuf: the response is an ExportTraceServiceResponse.
    let mut future = agent_span(9, "from-the-future");
    future.end_time_unix_nano = now_ns() + 120_000_000_000;
    let r = post(
        &s,
        &[
            ("authorization", &bearer(&s)),
            ("content-type", "application/x-protobuf"),
        ],
        protobuf(vec![agent_span(8, "ok"), future]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let response = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("future_event (completed_at)"),
        "{}",
        partial.error_message
    );
}

#[tokio::test]
async fn protobuf_with_gzip_and_the_x_api_key_header() {
    let s = setup().await;
    let r = post(
        &s,
        &[
            ("x-api-key", &s.token),
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gzip(&protobuf(vec![agent_span(1, "a"), agent_span(2, "b")])),
    )
    .await;
    assert_eq!(r.status, 200);
    let response = ExportTraceServiceResponse::decode(r.body.as_slice()).unwrap();
    assert_eq!(response.partial_success, None);
    assert_eq!(s.sink.published.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn unreadable_bodies_are_refused_whole_and_nothing_is_published() {
    let s = setup().await;
    let auth = bearer(&s);
    let pb = ("content-type", "application/x-protobuf");
    let js = ("content-type", "application/json");
    let a = ("authorization", auth.as_str());

    let r = post(&s, &[a, pb], vec![0x0a, 0xff, 0xff, 0xff]).await;
    assert_eq!(r.status, 400);
    let status = RpcStatus::decode(r.body.as_slice()).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status.message.starts_with("malformed protobuf"),
        "{}",
        status.message
    );

    let r = post(&s, &[a, js], b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("malformed OTLP/JSON"));

    let r = post(
        &s,
        &[a, js],
        br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 400, "ids must be hex");

    let r = post(&s, &[a, js], b"[]".to_vec()).await;
    assert_eq!(r.status, 400, "not an object");

    // A body that lies about its gzip.
    let r = post(
        &s,
        &[a, pb, ("content-encoding", "gzip")],
        protobuf(vec![agent_span(1, "a")]),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(RpcStatus::decode(r.body.as_slice())
        .unwrap()
        .message
        .contains("not valid gzip"));
    let mut truncated = gzip(&protobuf(vec![agent_span(1, "a")]));
    truncated.truncate(truncated.len() - 6);
    let r = post(&s, &[a, pb, ("content-encoding", "gzip")], truncated).await;
    assert_eq!(r.status, 400);

    let r = post(
        &s,
        &[a, pb, ("content-encoding", "br")],
        protobuf(vec![agent_span(1, "a")]),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = post(&s, &[a, ("content-type", "text/plain")], b"hi".to_vec()).await;
    assert_eq!(r.status, 415);
    let r = post(&s, &[a], protobuf(vec![agent_span(1, "a")])).await;
    assert_eq!(r.status, 415, "no content type");

    assert!(s.sink.published.lock().unwrap().is_empty());
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "ingest_otlp_requests_refused_total{reason=\"malformed\"}"),
        4.0
    );
    assert_eq!(
        metric(&m, "ingest_otlp_requests_refused_total{reason=\"bad_gzip\"}"),
        2.0
    );
    assert_eq!(metric(&m, "ingest_otlp_spans_received_total"), 0.0);
}

#[tokio::test]
async fn body_limits_hold_at_the_exact_boundary_before_and_after_gzip() {
    let s = setup().await;
    let auth = bearer(&s);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-protobuf"),
    ];
    // A valid protobuf of exactly MAX_BODY bytes: one span whose name pads it.
    let sized = |len: usize| {
        let mut span = agent_span(1, "a");
        let base = protobuf(vec![span.clone()]).len();
        span.name.push_str(&"x".repeat(len - base - 2)); // the length varint grows by 1 byte
        let body = protobuf(vec![span]);
        assert_eq!(body.len(), len);
        body
    };
    let r = post(&s, &headers, sized(MAX_BODY as usize)).await;
    assert_eq!(r.status, 200);
    let r = post(&s, &headers, sized(MAX_BODY as usize + 1)).await;
    assert_eq!(r.status, 413);

    // Compressed it is small; inflated it may not exceed the limit either.
    let gz = [headers[0], headers[1], ("content-encoding", "gzip")];
    let r = post(&s, &gz, gzip(&sized(MAX_BODY as usize))).await;
    assert_eq!(r.status, 200);
    let r = post(&s, &gz, gzip(&sized(MAX_BODY as usize + 1))).await;
    assert_eq!(r.status, 413);
    assert!(RpcStatus::decode(r.body.as_slice())
        .unwrap()
        .message
        .contains("decompressed body exceeds 8192"));
    assert_eq!(s.sink.published.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_credentials_are_401_in_the_request_format() {
    let s = setup().await;
    let body = protobuf(vec![agent_span(1, "a")]);
    let pb = ("content-type", "application/x-protobuf");
    let r = post(&s, &[pb], body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));
    assert!(RpcStatus::decode(r.body.as_slice())
        .unwrap()
        .message
        .contains("missing API key"));
    let r = post(&s, &[pb, ("x-api-key", "agk_nope_nope")], body.clone()).await;
    assert_eq!(r.status, 401);
    let r = post(&s, &[pb, ("authorization", "Basic eDp5")], body.clone()).await;
    assert_eq!(r.status, 401);
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_full_queue_is_429_and_an_unavailable_broker_503_with_retry_after() {
    let s = setup().await;
    let auth = bearer(&s);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-protobuf"),
    ];
    *s.sink.fail_with.lock().unwrap() = Some(SinkError::QueueFull);
    let r = post(&s, &headers, protobuf(vec![agent_span(1, "a")])).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(RpcStatus::decode(r.body.as_slice()).unwrap().code, 8);
    *s.sink.fail_with.lock().unwrap() = Some(SinkError::Unavailable("down".into()));
    let r = post(&s, &headers, protobuf(vec![agent_span(1, "a")])).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "5");
    let m = metrics(&s).await;
    assert_eq!(
        metric(&m, "ingest_events_failed_total{cause=\"queue_full\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "ingest_events_failed_total{cause=\"broker_unavailable\"}"),
        1.0
    );
    // Spans that are not agents never reach the sink: no failure to report.
    let mut chat = agent_span(2, "a");
    chat.attributes[0] = kv("gen_ai.operation.name", "chat");
    let r = post(&s, &headers, protobuf(vec![chat])).await;
    assert_eq!(r.status, 200);
}
