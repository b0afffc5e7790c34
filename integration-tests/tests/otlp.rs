//! OpenTelemetry traces in, end to end: the official OpenTelemetry Python SDK with its OTLP/HTTP
//! protobuf exporter (gzip, `Authorization: Bearer`) exports GenAI agent spans to `ingest serve`
//! on a real broker; every outermost agent invocation is one task event in the topic with the
//! mapped fields, the nested agent and the chat spans are not, the span without an agent is
//! refused, and the aggregator's daily rows count each task once although the exporter sent
//! every span twice (a retry: same ids, same event ids).
//!
//! Needs the venv of `scripts/install-otel-python.sh` (called by `scripts/install-deps.sh`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{free_port, pipeline_env, read_topic, run_bin, unique_topic, Service, TansuBroker};
use rdkafka::Message;
use schemas::codec::Decoder;
use schemas::time::{date_of_day, day_of_ms};
use schemas::{TaskEvent, TaskStatus};
use serde_json::Value;
use store::{DailyMetricsQuery, MetricsStore};

const TASKS: usize = 30;

fn otel_python() -> PathBuf {
    let cache = std::env::var("AGENTOPS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/agentops"));
    let python = cache.join("venv-otel/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-deps.sh (it installs the OpenTelemetry Python SDK and exporter)",
        python.display()
    );
    python
}

/// Runs the exporter; returns the expected task events (one JSON object per task) and the
/// exporter's results.
fn export(base: &str, key: &str, end_ms: i64) -> (Vec<Value>, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("otel/export_agent_spans.py");
    let out = Command::new(otel_python())
        .arg(script)
        .args([
            &format!("{base}/v1/traces"),
            key,
            "42",
            &TASKS.to_string(),
            &end_ms.to_string(),
        ])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "exporter failed: {stdout}\n{stderr}");
    let mut lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let result = lines.pop().unwrap()["export"].as_str().unwrap().to_string();
    (lines, format!("{result}\n{stderr}"))
}

fn date(ms: i64) -> time::Date {
    date_of_day(day_of_ms(ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_agent_spans_become_task_events_and_daily_rows() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("otlp-events");
    let port = free_port();
    let mut env = pipeline_env(&broker, &db, &topic, 300);
    env.extend([
        ("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()),
        (
            "AGENTOPS__INGEST__LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
    ]);
    broker.create_topic(&topic, 2).await;
    let key = run_bin("ingest", &["api-key", "create", "--tenant", "acme"], &env)
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

    // Tasks that ended in the last minute; exported twice with the same ids (a retry).
    let end_ms = schemas::time::now_ms() - 1_000;
    let (expected, result) = export(&base, &key, end_ms);
    assert_eq!(expected.len(), TASKS);
    assert!(result.starts_with("SUCCESS"), "{result}");
    let (again, _) = export(&base, &key, end_ms);
    assert_eq!(again, expected, "the seeded exporter sends the same spans again");

    // The topic: each task twice (two exports), nothing else.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events: Vec<TaskEvent> = Vec::new();
    while Instant::now() < deadline {
        let decoder = Decoder::<TaskEvent>::new();
        events = read_topic(&broker, &topic, Duration::from_secs(10))
            .iter()
            .map(|m| {
                decoder
                    .decode_sync(m.payload().unwrap())
                    .expect("only task events")
            })
            .collect();
        if events.len() >= 2 * TASKS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(events.len(), 2 * TASKS, "{events:#?}");
    let by_id: BTreeMap<&str, &TaskEvent> = events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    assert_eq!(by_id.len(), TASKS, "one event id per task, the retry repeats it");
    for x in &expected {
        let (trace, span) = (x["trace_id"].as_str().unwrap(), x["span_id"].as_str().unwrap());
        let e = by_id[format!("otlp:{trace}:{span}").as_str()];
        assert_eq!(e.task_id, format!("{trace}:{span}"));
        assert_eq!(e.tenant_id, "acme");
        assert_eq!(e.agent_id, x["agent"].as_str().unwrap());
        let status = match x["status"].as_str().unwrap() {
            "SUCCEEDED" => TaskStatus::Succeeded,
            "FAILED" => TaskStatus::Failed,
            _ => TaskStatus::Cancelled,
        };
        assert_eq!(e.status, status, "{x}");
        assert_eq!(e.started_at, x["started_at"].as_i64().unwrap());
        assert_eq!(e.completed_at, x["completed_at"].as_i64().unwrap());
        let (input, output) = (
            x["input_tokens"].as_i64().unwrap(),
            x["output_tokens"].as_i64().unwrap(),
        );
        assert_eq!((e.input_tokens, e.output_tokens), (Some(input), Some(output)));
        // gpt-4o-mini: 0.15 and 0.6 USD per million tokens = micro-USD per token.
        assert_eq!(
            e.cost_micros,
            (input as f64 * 0.15 + output as f64 * 0.6).round() as i64
        );
        assert_eq!(
            i64::from(e.human_interventions),
            x["interventions"].as_i64().unwrap()
        );
        assert_eq!(e.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(e.attributes["gen_ai.provider.name"], "openai");
    }
    assert!(
        events.iter().all(|e| e.agent_id != "helper"),
        "the nested agent is no task"
    );

    // The aggregator's daily rows: every task once.
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();
    let first = expected
        .iter()
        .map(|x| x["completed_at"].as_i64().unwrap())
        .min()
        .unwrap();
    let query = DailyMetricsQuery {
        tenant_id: "acme".into(),
        agent_id: Some(store::ALL_AGENTS.into()),
        from: date(first),
        to: date(end_ms),
    };
    let count = |status: &str| expected.iter().filter(|x| x["status"] == status).count() as i64;
    let want = (TASKS as i64, count("FAILED"), count("CANCELLED"), 10, 10);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = (0, 0, 0, 0, 0);
    while Instant::now() < deadline {
        let rows = store.daily_metrics(&query).await.unwrap_or_default();
        got = rows.iter().fold((0, 0, 0, 0, 0), |a, r| {
            (
                a.0 + r.counts.tasks_total,
                a.1 + r.counts.failed,
                a.2 + r.counts.cancelled,
                a.3 + r.counts.tasks_with_intervention,
                a.4 + r.counts.interventions,
            )
        });
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        got, want,
        "(tasks, failed, cancelled, with intervention, interventions) of the roll-up rows"
    );

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Per export: 30 agent spans, 30 chat spans, 6 nested helpers, 1 span without an agent.
    assert_eq!(value("ingest_otlp_spans_received_total"), 2.0 * 67.0);
    assert_eq!(value("ingest_otlp_spans_mapped_total"), 2.0 * 30.0);
    assert_eq!(
        value("ingest_otlp_spans_ignored_total{reason=\"nested_agent\"}"),
        2.0 * 6.0
    );
    assert_eq!(
        value("ingest_otlp_spans_rejected_total{reason=\"missing_agent\"}"),
        2.0
    );
    assert!(aggregator.terminate(), "clean exit");
}
