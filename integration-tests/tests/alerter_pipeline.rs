//! The alerter end to end: anomaly verdicts on a real broker (Tansu) -> the `alerter` binary ->
//! a real Alertmanager (Debian `prometheus-alertmanager`) whose webhook receiver is a recording
//! server of the test, plus a signed webhook of the alerter's own on the same recorder.
//!
//! Verdicts are produced the way the scorer writes them (the project's encoder, keyed by
//! series, ids and explanations as the scorer sets them), one 15-minute window per series per
//! round, paced in wall time: five series carry an injected incident (one with a clean window
//! inside it), three are control series. Meanwhile the alerter is SIGKILLed seven times and
//! restarted, and Alertmanager is stopped for 30 s and started again (the alerter retries and
//! waits). Asserted through Alertmanager's notifications and its `GET /api/v2/alerts`: exactly
//! one firing and one resolved notification per incident, none for the control series, nothing
//! lost and nothing duplicated; the webhook saw each transition, re-sends only with the same id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{free_port, unique_topic, Service, TansuBroker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::Encoder;
use schemas::time::now_ms;
use schemas::{Anomaly, FeatureContribution, KpiExplanation, KpiWindow};
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const AM_BIN: &str = "/usr/bin/prometheus-alertmanager";
const W: i64 = 900_000;
/// Wall time between two rounds of windows.
const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: i64 = 130;
/// Alertmanager is stopped before this round and started again before `OUTAGE_END` (30 s).
const OUTAGE_START: i64 = 30;
const OUTAGE_END: i64 = 90;
/// The alerter is SIGKILLed (and restarted at once) before these rounds.
const KILLS: [i64; 7] = [10, 22, 40, 60, 80, 100, 116];
const MODEL: &str = "lstm-transformer-test";

/// A series of the test and the rounds its windows are flagged in (empty: a control series).
struct Series {
    tenant: &'static str,
    agent: &'static str,
    kpi: &'static str,
    flagged: Vec<i64>,
}

fn series() -> Vec<Series> {
    let range = |a: i64, b: i64| (a..=b).collect::<Vec<_>>();
    vec![
        // A clean window (round 8) inside the incident: hysteresis keeps it one incident.
        Series {
            tenant: "acme",
            agent: "support-bot",
            kpi: "success_rate",
            flagged: range(4, 12).into_iter().filter(|r| *r != 8).collect(),
        },
        // Resolves shortly before the outage.
        Series {
            tenant: "acme",
            agent: "triage",
            kpi: "latency_p95_ms",
            flagged: range(14, 22),
        },
        // Open before the outage, still flagged through it, resolved after it.
        Series {
            tenant: "globex",
            agent: "billing",
            kpi: "cost_per_task_micros",
            flagged: range(24, 100),
        },
        // Opens while Alertmanager is down, resolves after it is back.
        Series {
            tenant: "globex",
            agent: "search",
            kpi: "intervention_rate",
            flagged: range(80, 100),
        },
        // After everything.
        Series {
            tenant: "initech",
            agent: "coder",
            kpi: "latency_p50_ms",
            flagged: range(108, 116),
        },
        Series {
            tenant: "acme",
            agent: "planner",
            kpi: "success_rate",
            flagged: vec![],
        },
        Series {
            tenant: "globex",
            agent: "support-bot",
            kpi: "tasks",
            flagged: vec![],
        },
        Series {
            tenant: "initech",
            agent: "reviewer",
            kpi: "cost_per_task_micros",
            flagged: vec![],
        },
    ]
}

/// The verdict on round `round`'s window of `s`, shaped like the scorer's.
fn verdict(s: &Series, first_window: i64, round: i64) -> Anomaly {
    let flagged = s.flagged.contains(&round);
    let window_start = (first_window + round) * W;
    let window_id = KpiWindow::id_for(s.tenant, s.agent, window_start);
    let wobble = ((round * 7919) % 13) as f64 / 100.0;
    let ensemble = if flagged { 1.4 + wobble } else { 0.2 + wobble };
    let (observed, expected, low, high) = match s.kpi {
        "success_rate" => (if flagged { 0.52 } else { 0.86 }, 0.86, 0.79, 0.93),
        "intervention_rate" => (if flagged { 0.31 } else { 0.05 }, 0.05, 0.01, 0.11),
        "tasks" => (if flagged { 4.0 } else { 120.0 }, 118.0, 90.0, 150.0),
        "latency_p50_ms" => (if flagged { 2600.0 } else { 700.0 }, 690.0, 520.0, 880.0),
        "latency_p95_ms" => (if flagged { 5400.0 } else { 1300.0 }, 1200.0, 800.0, 1900.0),
        _ => (
            if flagged { 91_000.0 } else { 12_000.0 },
            12_500.0,
            9_000.0,
            16_000.0,
        ),
    };
    let explanation = if flagged {
        vec![
            KpiExplanation {
                kpi: s.kpi.into(),
                observed,
                expected,
                low,
                high,
                evidence: 6.5 + wobble,
            },
            KpiExplanation {
                kpi: "tasks".into(),
                observed: 110.0,
                expected: 118.0,
                low: 90.0,
                high: 150.0,
                evidence: 1.1,
            },
        ]
    } else {
        vec![]
    };
    Anomaly {
        anomaly_id: Anomaly::id_for(&window_id, 0, MODEL),
        window_id,
        tenant_id: s.tenant.into(),
        agent_id: s.agent.into(),
        window_start,
        window_end: window_start + W,
        lstm_score: ensemble * 0.013,
        transformer_score: ensemble * 0.011,
        lstm_normalized: ensemble * 1.05,
        transformer_normalized: ensemble * 0.95,
        ensemble_score: ensemble,
        threshold: 1.0,
        is_anomaly: flagged,
        top_features: vec![FeatureContribution {
            feature: format!("{}_z", s.kpi),
            contribution: 0.6,
        }],
        model_version: MODEL.into(),
        scored_at: now_ms(),
        statistical_score: Some(if flagged { 7.0 } else { 0.4 }),
        explanation,
    }
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// A real Alertmanager on a fixed port and storage folder, so that it can be stopped and
/// started again as the same receiver (its notification log survives a SIGTERM).
struct Alertmanager {
    child: Option<Child>,
    port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

impl Alertmanager {
    fn new(dir: &Path, hook: &str) -> Alertmanager {
        assert!(
            Path::new(AM_BIN).exists(),
            "{AM_BIN} missing: run scripts/install-deps.sh (Debian package prometheus-alertmanager)"
        );
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: rec\n  group_by: [alertname, tenant, agent, kpi]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: rec\n  webhook_configs:\n  - url: {hook}\n    send_resolved: true\n"
            ),
        )
        .unwrap();
        Alertmanager {
            child: None,
            port: free_port(),
            config,
            data: dir.join("am-data"),
            log: dir.join("alertmanager.log"),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(AM_BIN)
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.path={}", self.data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/-/ready", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "alertmanager did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (a maintenance stop: it saves its notification log), then waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    async fn active_alerts(&self) -> Vec<Value> {
        let alerts: Value = reqwest::get(format!("{}/api/v2/alerts", self.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        alerts.as_array().unwrap().clone()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `(series key, status, startsAt)` of every alert in every notification Alertmanager sent.
async fn notifications(recorder: &MockServer) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for request in recorder.received_requests().await.unwrap_or_default() {
        if request.url.path() != "/am" {
            continue;
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for alert in body["alerts"].as_array().unwrap() {
            let l = &alert["labels"];
            out.push((
                format!(
                    "{}/{}/{}",
                    l["tenant"].as_str().unwrap(),
                    l["agent"].as_str().unwrap(),
                    l["kpi"].as_str().unwrap()
                ),
                alert["status"].as_str().unwrap().to_string(),
                alert["startsAt"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The `id` of every webhook event the alerter sent (`<incident>:<status>`), in arrival order.
async fn webhook_ids(recorder: &MockServer) -> Vec<String> {
    recorder
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/signed")
        .map(|r| {
            assert!(r.headers.get("x-signature").is_some(), "unsigned webhook");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn start_alerter(env: &[(String, String)], log: &Path) -> Service {
    Service::start("alerter", &["run"], env, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_incident_none_lost_or_duplicated_across_kills_and_an_outage() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let anomalies = unique_topic("anomalies");
    broker.create_topic(&anomalies, 4).await;

    let recorder = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&recorder)
        .await;
    let mut am = Alertmanager::new(dir.path(), &format!("{}/am", recorder.uri()));
    am.start().await;

    let config = dir.path().join("alerter.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerter.webhooks]]\nname = \"signed\"\nurl = \"{}/signed\"\nsecret = \"test-secret-0123456789\"\n",
            recorder.uri()
        ),
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("AGENTOPS_CONFIG", config.display().to_string()),
        ("AGENTOPS__KAFKA__BROKERS", broker.bootstrap()),
        (
            "AGENTOPS__STORE__URL",
            format!("sqlite://{}", dir.path().join("agentops.db").display()),
        ),
        ("AGENTOPS__KAFKA__TOPICS__ANOMALIES", anomalies.clone()),
        ("AGENTOPS__KAFKA__TOPICS__DEAD_LETTER", unique_topic("dead")),
        ("AGENTOPS__ALERTER__CONSUMER_GROUP", unique_topic("alerter")),
        // Tansu 0.6 never expires a SIGKILLed group member: own every partition instead.
        ("AGENTOPS__ALERTER__ASSIGNMENT", "all".into()),
        ("AGENTOPS__ALERTER__METRICS_LISTEN", "127.0.0.1:0".into()),
        (
            "AGENTOPS__ALERTER__ALERTMANAGER_URLS",
            format!("[\"{}\"]", am.url()),
        ),
        ("AGENTOPS__ALERTER__CHECKPOINT_INTERVAL_MS", "300".into()),
        ("AGENTOPS__ALERTER__RETRY_INITIAL_MS", "100".into()),
        ("AGENTOPS__ALERTER__RETRY_MAX_MS", "1000".into()),
        ("AGENTOPS__ALERTER__REQUEST_TIMEOUT_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let log = dir.path().join("alerter.log");
    let mut alerter = Some(start_alerter(&env, &log));

    let producer: FutureProducer = broker.client_config().set("linger.ms", "5").create().unwrap();
    let encoder = Encoder::<Anomaly>::single_object();
    let all = series();
    // Event time: the windows lie in the past (as a replay would), one window per round.
    let first_window = now_ms() / W - ROUNDS - 10;
    let started = Instant::now();
    let mut outage = None;
    let mut kills = 0;
    for round in 0..ROUNDS {
        tokio::time::sleep_until((started + ROUND * round as u32).into()).await;
        if KILLS.contains(&round) {
            alerter.take().unwrap().kill();
            kills += 1;
            alerter = Some(start_alerter(&env, &log));
        }
        if round == OUTAGE_START {
            am.stop();
            outage = Some(Instant::now());
        }
        if round == OUTAGE_END {
            am.start().await;
            let down = outage.unwrap().elapsed();
            assert!(down >= Duration::from_secs(29), "outage of {down:?}");
        }
        let mut pending = Vec::new();
        for s in &all {
            let v = verdict(s, first_window, round);
            let payload = encoder.encode(&v).unwrap();
            let key = schemas::series_key(s.tenant, s.agent);
            pending.push(
                producer
                    .send_result(FutureRecord::to(&anomalies).key(key.as_bytes()).payload(&payload))
                    .map_err(|(e, _)| e)
                    .unwrap(),
            );
        }
        for d in pending {
            d.await.unwrap().unwrap();
        }
    }

    // What must arrive: per incident series, one firing and one resolved notification of the
    // alert that started with its first flagged window.
    let expected: BTreeSet<(String, String, String)> = all
        .iter()
        .filter(|s| !s.flagged.is_empty())
        .flat_map(|s| {
            let key = format!("{}/{}/{}", s.tenant, s.agent, s.kpi);
            let starts = rfc3339((first_window + s.flagged[0]) * W);
            ["firing", "resolved"].map(|status| (key.clone(), status.to_string(), starts.clone()))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<_> = notifications(&recorder).await.into_iter().collect();
        if expected.is_subset(&got) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything duplicated would have been sent by now (group_interval 1 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = notifications(&recorder).await;
    let mut counts: BTreeMap<&(String, String, String), usize> = BTreeMap::new();
    for n in &got {
        *counts.entry(n).or_default() += 1;
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    for e in &expected {
        assert_eq!(
            counts.get(e).copied().unwrap_or(0),
            1,
            "{e:?}: notifications {got:#?}\nalerter log tail:\n{}",
            log_text().lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
    }
    assert_eq!(got.len(), expected.len(), "unexpected notifications: {got:#?}");
    // Alertmanager's own view: nothing active any more (all resolved), no control series.
    assert_eq!(am.active_alerts().await, Vec::<Value>::new());

    // The signed webhook: each opening and resolution arrived; a re-send (after a kill before
    // the checkpoint) carries the same id, so the receiver drops it.
    let ids = webhook_ids(&recorder).await;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), expected.len(), "webhook ids: {ids:#?}");
    assert_eq!(
        distinct.iter().filter(|id| id.ends_with(":firing")).count(),
        expected.len() / 2
    );

    assert_eq!(kills, KILLS.len());
    assert!(
        alerter.take().unwrap().terminate(),
        "the alerter did not stop cleanly on SIGTERM"
    );
    eprintln!(
        "alerter e2e: {} notifications, {} webhook posts ({} distinct), {kills} SIGKILLs, outage 30 s, {:?} total",
        got.len(),
        ids.len(),
        distinct.len(),
        started.elapsed()
    );
}
