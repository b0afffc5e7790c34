//! The gateway's HTTP surface: every auth and validation path with exact statuses and bodies.
//! The broker is replaced by `RecordingSink`, a test double that records what it is given and
//! can be told to fail; the Kafka path is covered in `integration-tests/tests/gateway.rs`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ingest::gateway::{self, EventSink, Gateway, Limits, SinkError};
use schemas::TaskEvent;
use serde_json::{json, Value};
use store::sqlite::SqliteStore;
use store::Store;

/// Test double of the Kafka sink.
#[derive(Default)]
struct RecordingSink {
    published: Mutex<Vec<TaskEvent>>,
    /// Fail with this from this index of a batch on.
    fail_from: Mutex<Option<(usize, SinkError)>>,
    not_ready: Mutex<bool>,
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        let fail = self.fail_from.lock().unwrap().clone();
        events
            .iter()
            .enumerate()
            .map(|(i, e)| match &fail {
                Some((from, err)) if i >= *from => Err(err.clone()),
                _ => {
                    self.published.lock().unwrap().push(e.clone());
                    Ok(())
                }
            })
            .collect()
    }

    async fn ready(&self) -> bool {
        !*self.not_ready.lock().unwrap()
    }
}

struct Setup {
    gateway: Arc<Gateway>,
    sink: Arc<RecordingSink>,
    store: Arc<dyn Store>,
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
    let gateway = Gateway::new(
        sink.clone(),
        store.clone(),
        Limits {
            max_batch_events: 5,
            max_body_bytes: 8_192,
            max_future_skew_ms: 60_000,
        },
    );
    Setup {
        gateway,
        sink,
        store,
        token,
    }
}

fn event(id: &str) -> Value {
    let mut e = TaskEvent::example();
    e.event_id = id.into();
    serde_json::to_value(e).unwrap()
}

async fn post(s: &Setup, auth: Option<&str>, body: &str) -> (u16, Value, warp::http::HeaderMap) {
    let mut req = warp::test::request().method("POST").path("/v1/events").body(body);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = req.reply(&gateway::routes(s.gateway.clone())).await;
    let body = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
    (res.status().as_u16(), body, res.headers().clone())
}

fn bearer(s: &Setup) -> String {
    format!("Bearer {}", s.token)
}

#[tokio::test]
async fn missing_or_bad_credentials_get_401_with_www_authenticate() {
    let s = setup().await;
    let body = json!([event("e1")]).to_string();
    let other_key = ingest::api_key::issue("acme", "", 0).token; // well formed, never stored
    let (_, secret) = ingest::api_key::parse(&s.token).unwrap();
    let wrong_secret = s.token.replace(secret, &"0".repeat(64));
    let cases = [
        (
            None,
            "missing Authorization header: use `Authorization: Bearer <api key>`",
        ),
        (
            Some(format!("Basic {}", s.token)),
            "Authorization must use the Bearer scheme",
        ),
        (Some("Bearer not-a-key".to_string()), "malformed API key"),
        (Some(format!("Bearer {other_key}")), "unknown API key"),
        (Some(format!("Bearer {wrong_secret}")), "unknown API key"),
    ];
    for (auth, message) in cases {
        let (status, body, headers) = post(&s, auth.as_deref(), &body).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            body,
            json!({"error": "unauthorized", "message": message}),
            "{auth:?}"
        );
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"agentops-ingest\"");
    }
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_revoked_key_gets_401() {
    let s = setup().await;
    let (key_id, _) = ingest::api_key::parse(&s.token).unwrap();
    assert!(gateway::revoke_api_key(s.store.as_ref(), key_id).await.unwrap());
    let (status, body, _) = post(&s, Some(&bearer(&s)), &json!([event("e1")]).to_string()).await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "unauthorized", "message": "API key revoked"})
        )
    );
}

#[tokio::test]
async fn bodies_that_are_not_a_batch_get_400_and_oversized_ones_413() {
    let s = setup().await;
    let auth = bearer(&s);
    let cases: [(&str, u16, Value); 5] = [
        (
            "{\"event_id\": 1}",
            400,
            json!({"error": "bad_request", "message": "body must be a JSON array of task events"}),
        ),
        (
            "[]",
            400,
            json!({"error": "bad_request", "message": "empty batch: send 1 or more events"}),
        ),
        (
            "[1, 2",
            400,
            json!({"error": "bad_request", "message": "body is not valid JSON: EOF while parsing a list at line 1 column 5"}),
        ),
        (
            &json!([
                event("a"),
                event("b"),
                event("c"),
                event("d"),
                event("e"),
                event("f")
            ])
            .to_string(),
            413,
            json!({"error": "too_many_events", "message": "batch of 6 events, at most 5 allowed"}),
        ),
        (
            &format!("[\"{}\"]", "x".repeat(9_000)),
            413,
            json!({"error": "body_too_large", "message": "request body exceeds ingest.max_body_bytes"}),
        ),
    ];
    for (body, status, expected) in cases {
        let (got_status, got, _) = post(&s, Some(&auth), body).await;
        assert_eq!(
            (got_status, got),
            (status, expected),
            "{}",
            &body[..body.len().min(40)]
        );
    }
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_event_is_judged_alone_and_only_valid_ones_are_published() {
    let s = setup().await;
    let mut bad_status = event("e2");
    bad_status["status"] = json!("EXPLODED");
    let mut negative_cost = event("e3");
    negative_cost["cost_micros"] = json!(-5);
    let mut other_tenant = event("e4");
    other_tenant["tenant_id"] = json!("globex");
    let mut backwards = event("e5");
    backwards["started_at"] = json!(1_763_900_009_000i64);
    let body = json!([event("e1"), bad_status, negative_cost, other_tenant, backwards]).to_string();
    let (status, body, _) = post(&s, Some(&bearer(&s)), &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "accepted": 1, "rejected": 4, "failed": 0,
            "results": [
                {"index": 0, "status": "accepted", "event_id": "e1"},
                {"index": 1, "status": "rejected", "event_id": "e2", "reason": "malformed",
                 "message": "unknown variant `EXPLODED`, expected one of `SUCCEEDED`, `FAILED`, `CANCELLED`"},
                {"index": 2, "status": "rejected", "event_id": "e3", "reason": "invalid_field", "field": "cost_micros",
                 "message": "must not be negative"},
                {"index": 3, "status": "rejected", "event_id": "e4", "reason": "tenant_mismatch", "field": "tenant_id",
                 "message": "tenant_id `globex` is not the API key's tenant"},
                {"index": 4, "status": "rejected", "event_id": "e5", "reason": "invalid_field", "field": "completed_at",
                 "message": "1763900002500 is before started_at 1763900009000"},
            ]
        })
    );
    let published: Vec<String> = s
        .sink
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(published, vec!["e1"]);
}

#[tokio::test]
async fn events_from_the_future_are_rejected_naming_completed_at() {
    let s = setup().await;
    let now = schemas::time::now_ms();
    let at = |id: &str, completed_at: i64| {
        let mut e = event(id);
        e["completed_at"] = json!(completed_at);
        e["started_at"] = json!(completed_at - 1_000);
        e
    };
    let year_2100 = 4_102_444_800_000i64;
    // Invalid and from the future: the field rule is reported, as before.
    let mut invalid = at("f3", year_2100);
    invalid["cost_micros"] = json!(-1);
    let body = json!([
        at("f1", year_2100),
        at("f2", now + 60_000 + 120_000),
        at("ok-now", now),
        at("ok-skew", now + 55_000),
        invalid,
    ])
    .to_string();
    let (status, body, _) = post(&s, Some(&bearer(&s)), &body).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("f1", "rejected", "future_event"),
            ("f2", "rejected", "future_event"),
            ("ok-now", "accepted", ""),
            ("ok-skew", "accepted", ""),
            ("f3", "rejected", "invalid_field"),
        ]
    );
    assert_eq!(results[0]["field"], "completed_at");
    let message = results[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("4102444800000 is ")
            && message.contains(" ms ahead of the receiver's clock (")
            && message.ends_with("); at most 60000 ms of clock skew is allowed"),
        "{message}"
    );
    let published: Vec<String> = s
        .sink
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(published, vec!["ok-now", "ok-skew"]);
    let metrics = warp::test::request()
        .path("/metrics")
        .reply(&gateway::routes(s.gateway.clone()))
        .await;
    let text = String::from_utf8(metrics.body().to_vec()).unwrap();
    assert!(
        text.contains("ingest_events_rejected_total{reason=\"future_event\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_batch_with_nothing_valid_gets_422_and_a_missing_field_is_named() {
    let s = setup().await;
    let mut no_agent = event("e1");
    no_agent.as_object_mut().unwrap().remove("agent_id");
    let (status, body, _) = post(&s, Some(&bearer(&s)), &json!([no_agent]).to_string()).await;
    assert_eq!(status, 422);
    assert_eq!(body["results"][0]["message"], "missing field `agent_id`");
    assert_eq!(body["rejected"], 1);
}

#[tokio::test]
async fn a_full_queue_gets_429_and_a_silent_broker_503_and_nothing_undelivered_is_claimed() {
    let s = setup().await;
    let batch = json!([event("e1"), event("e2"), event("e3")]).to_string();
    *s.sink.fail_from.lock().unwrap() = Some((1, SinkError::QueueFull));
    let (status, body, headers) = post(&s, Some(&bearer(&s)), &batch).await;
    assert_eq!(
        (status, &headers["retry-after"]),
        (429, &"1".parse::<warp::http::HeaderValue>().unwrap())
    );
    assert_eq!(
        (body["accepted"].clone(), body["failed"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(body["results"][1]["reason"], "queue_full");
    assert_eq!(body["results"][0]["status"], "accepted");

    *s.sink.fail_from.lock().unwrap() = Some((0, SinkError::Unavailable("Message timed out".into())));
    let (status, body, headers) = post(&s, Some(&bearer(&s)), &batch).await;
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (503, "5"));
    assert_eq!(body["accepted"], 0);
    assert_eq!(
        body["results"][2]["message"],
        "not acknowledged by the broker: Message timed out"
    );
    assert_eq!(
        s.sink.published.lock().unwrap().len(),
        1,
        "only the acknowledged event"
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let s = setup().await;
    let routes = gateway::routes(s.gateway.clone());
    let get = |path: &'static str| warp::test::request().method("GET").path(path);
    assert_eq!(get("/healthz").reply(&routes).await.status(), 200);
    assert_eq!(get("/readyz").reply(&routes).await.status(), 200);
    *s.sink.not_ready.lock().unwrap() = true;
    let res = get("/readyz").reply(&routes).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        serde_json::from_slice::<Value>(res.body()).unwrap(),
        json!({"broker": false, "store": true})
    );

    post(&s, Some(&bearer(&s)), &json!([event("m1"), {"x": 1}]).to_string()).await;
    let metrics = String::from_utf8(get("/metrics").reply(&routes).await.body().to_vec()).unwrap();
    assert!(metrics.contains("ingest_events_accepted_total 1"), "{metrics}");
    assert!(
        metrics.contains("ingest_events_rejected_total{reason=\"malformed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_request_duration_seconds_count{route=\"post_events\"} 1"),
        "{metrics}"
    );

    let res = get("/nope").reply(&routes).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        serde_json::from_slice::<Value>(res.body()).unwrap(),
        json!({"error": "not_found", "message": "no such route"})
    );
    assert_eq!(get("/v1/events").reply(&routes).await.status(), 405);
}
