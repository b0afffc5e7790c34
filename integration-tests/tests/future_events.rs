//! Events from the future against the real gateway and aggregator on one shared partition.
//!
//! First a checkpoint is made that holds a watermark in the year 2100, as aggregators wrote
//! before future events were refused (here: one run allowed a skew of 126 years). The next
//! aggregator clamps it back at load. Then one tenant sends events from the future: the gateway
//! refuses them (`future_event`, naming `completed_at`) and the aggregator dead-letters those
//! written to Kafka directly. Normal events of two tenants on the same partition that follow
//! are all counted, none is late.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::{
    env_value, free_port, pipeline_env, read_topic, run_bin, unique_topic, Service, TansuBroker,
};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::{Decoder, Encoder};
use schemas::time::{date_of_day, day_of_ms, now_ms};
use schemas::TaskEvent;
use serde_json::Value;
use store::{DailyMetricsQuery, MetricsStore};

/// 2100-01-01T00:00:00Z.
const YEAR_2100: i64 = 4_102_444_800_000;

fn event(id: &str, tenant: &str, agent: &str, completed_at: i64) -> TaskEvent {
    let mut e = TaskEvent::example();
    e.event_id = id.into();
    e.task_id = format!("task-{id}");
    e.tenant_id = tenant.into();
    e.agent_id = agent.into();
    e.completed_at = completed_at;
    e.started_at = completed_at - 1_500;
    e
}

async fn produce(producer: &FutureProducer, topic: &str, events: &[TaskEvent]) {
    let encoder = Encoder::<TaskEvent>::single_object();
    for e in events {
        let payload = encoder.encode(e).unwrap();
        let key = e.series_key();
        producer
            .send(
                FutureRecord::to(topic).key(key.as_bytes()).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

async fn post(client: &reqwest::Client, base: &str, token: &str, events: &[TaskEvent]) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .json(events)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Tasks per (tenant, agent) in the store's daily rows of `days` (roll-ups left out).
async fn counted(
    store: &store::sqlite::SqliteStore,
    tenants: &[&str],
    days: (time::Date, time::Date),
) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let query = DailyMetricsQuery {
            tenant_id: tenant.to_string(),
            agent_id: None,
            from: days.0,
            to: days.1,
        };
        for row in store.daily_metrics(&query).await.unwrap_or_default() {
            if row.agent_id != store::ALL_AGENTS {
                *out.entry((row.tenant_id, row.agent_id)).or_default() += row.counts.tasks_total;
            }
        }
    }
    out
}

fn date(ms: i64) -> time::Date {
    date_of_day(day_of_ms(ms))
}

fn header(message: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == key))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_events_are_refused_and_stall_no_tenant_and_a_future_watermark_is_repaired() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let port = free_port();
    let mut env = pipeline_env(&broker, &db, &topic, 300);
    env.extend([
        ("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()),
        (
            "AGENTOPS__INGEST__LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
    ]);
    // One partition: every tenant's series share it (and its watermark).
    broker.create_topic(&topic, 1).await;
    let dead_letter = env_value(&env, "AGENTOPS__KAFKA__TOPICS__DEAD_LETTER").to_string();
    let late = env_value(&env, "AGENTOPS__KAFKA__TOPICS__LATE_EVENTS").to_string();
    broker.create_topic(&dead_letter, 1).await;
    broker.create_topic(&late, 1).await;
    let producer: FutureProducer = broker.client_config().create().unwrap();
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();

    // 1. A checkpoint with a watermark in 2100, as written before future events were refused.
    let mut permissive = env.clone();
    permissive.extend([
        (
            "AGENTOPS__AGGREGATOR__ALLOWED_LATENESS_SECS".to_string(),
            "4000000000".to_string(),
        ),
        (
            "AGENTOPS__EVENTS__MAX_FUTURE_SKEW_SECS".to_string(),
            "4000000000".to_string(),
        ),
    ]);
    let before = Service::start("aggregator", &["run"], &permissive, &log("aggregator-before"));
    produce(&producer, &topic, &[event("stall", "acme", "triage", YEAR_2100)]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let day_2100 = (date(YEAR_2100), date(YEAR_2100));
    while counted(&store, &["acme"], day_2100).await.is_empty() {
        assert!(Instant::now() < deadline, "the 2100 event was never counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(before.terminate(), "checkpointed on SIGTERM");

    // 2. The gateway and an aggregator with the defaults (skew 60 s, lateness 300 s).
    let acme = run_bin("ingest", &["api-key", "create", "--tenant", "acme"], &env)
        .trim()
        .to_string();
    let globex = run_bin("ingest", &["api-key", "create", "--tenant", "globex"], &env)
        .trim()
        .to_string();
    let _gateway = Service::start("ingest", &["serve"], &env, &log("gateway"));
    let aggregator = Service::start("aggregator", &["run"], &env, &log("aggregator"));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "gateway never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Events from the future, with acme's key: refused by the gateway, naming the field.
    let now = now_ms();
    let future = [
        event("future-gw-1", "acme", "triage", YEAR_2100),
        event("future-gw-2", "acme", "triage", now + 3_600_000),
    ];
    let (status, body) = post(&client, &base, &acme, &future).await;
    assert_eq!(status, 422, "{body}");
    for result in body["results"].as_array().unwrap() {
        assert_eq!(result["status"], "rejected", "{body}");
        assert_eq!(result["reason"], "future_event", "{body}");
        assert_eq!(result["field"], "completed_at", "{body}");
        let message = result["message"].as_str().unwrap();
        assert!(
            message.contains("ahead of the receiver's clock") && message.contains("at most 60000 ms"),
            "{message}"
        );
    }
    // The same written to Kafka directly: dead-lettered by the aggregator.
    let direct = [
        event("future-kafka-1", "acme", "triage", YEAR_2100),
        event("future-kafka-2", "acme", "triage", now + 3_600_000),
    ];
    produce(&producer, &topic, &direct).await;

    // Then normal traffic of both tenants on the same partition, through the gateway.
    let now = now_ms();
    let mut expected = BTreeMap::new();
    for (tenant, token, agents) in [
        ("acme", &acme, ["triage", "billing"]),
        ("globex", &globex, ["support", "ops"]),
    ] {
        let events: Vec<TaskEvent> = (0..24)
            .map(|i| {
                let agent = agents[i % 2];
                *expected
                    .entry((tenant.to_string(), agent.to_string()))
                    .or_insert(0) += 1;
                event(
                    &format!("{tenant}-{i}"),
                    tenant,
                    agent,
                    now - 180_000 + i as i64 * 5_000,
                )
            })
            .collect();
        let (status, body) = post(&client, &base, token, &events).await;
        assert_eq!((status, body["accepted"].as_u64()), (200, Some(24)), "{body}");
    }

    // Every normal event counted; nothing late.
    let days = (date(now - 180_000), date(now));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = counted(&store, &["acme", "globex"], days).await;
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows {got:?}, expected {expected:?}\n{}",
            std::fs::read_to_string(log("aggregator")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = read_topic(&broker, &dead_letter, Duration::from_secs(10));
        if dead.len() >= direct.len() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let decoder = Decoder::<TaskEvent>::new();
    let mut dead_ids: Vec<String> = dead
        .iter()
        .map(|m| {
            assert_eq!(
                header(m, kafka_io::header::CLASS).as_deref(),
                Some("future_event")
            );
            decoder.decode_sync(m.payload().unwrap()).unwrap().event_id
        })
        .collect();
    dead_ids.sort();
    assert_eq!(dead_ids, ["future-kafka-1", "future-kafka-2"]);
    assert!(
        read_topic(&broker, &late, Duration::from_secs(10)).is_empty(),
        "no event was late"
    );
    assert!(aggregator.terminate(), "clean exit");
    let logged = std::fs::read_to_string(log("aggregator")).unwrap();
    assert!(
        logged.contains("clamped back"),
        "the restored watermark was clamped:\n{logged}"
    );
}
