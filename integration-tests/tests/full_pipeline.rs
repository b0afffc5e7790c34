//! The whole pipeline, as a user meets it, under faults: the workload generator posts six
//! simulated days (one tenant, four series with an injected incident each, two clean control
//! series; duplicates, late arrivals within the lateness and malformed records included) through
//! the HTTP gateway into Tansu; the aggregator, the scorer and the auth-api run as their
//! binaries. Between the six segments of the workload, faults: SIGKILLs of the aggregator and
//! the scorer, a SIGTERM of the aggregator (one test, memory broker), or SIGKILL and restart of
//! the broker on durable (SQLite) storage (the other test). At the end a misbehaving producer
//! writes undecodable bytes straight to the topic, and events far beyond the allowed lateness
//! arrive. Afterwards, read through the API with a JWT: every daily row equals the generator's
//! ground truth (counts and cost exact, P95 within 1%), the cost spike is flagged for the right
//! series and time with cost as its driver, the control series stay within the false-alarm
//! budget, the served anomalies are exactly the flagged verdicts, and a user without a grant gets
//! 403. Poison is on the dead-letter topic, the too-late events on the late topic, each with its
//! reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ingest::generator::http_sink::HttpSink;
use ingest::generator::{GenConfig, Generator, IncidentKind, Record};
use ingest::truth::{GroundTruth, TruthRow};
use integration_tests::{
    env_value, free_port, pipeline_env, read_topic, run_bin, unique_topic, Engine, Service, TansuBroker,
};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::kpi::Counts;
use schemas::{Anomaly, TaskEvent};
use serde_json::{json, Value};

/// Flagged time allowed per control series and simulated day (one 15-minute stretch).
const CONTROL_FLAGGED_MS_PER_DAY: i64 = 15 * 60_000;
/// Undecodable records written straight to the task-event topic.
const POISON: usize = 12;
/// Events that arrive days after their event time.
const TOO_LATE: usize = 20;
const TENANT: &str = "acme";
const DAYS: u32 = 6;

/// The running services of the test, restarted by the faults.
struct Pipeline {
    env: Vec<(String, String)>,
    dir: std::path::PathBuf,
    aggregator: Option<Service>,
    scorer: Option<Service>,
}

impl Pipeline {
    fn start(&mut self, name: &str) {
        let service = Service::start(name, &["run"], &self.env, &self.dir.join(format!("{name}.log")));
        match name {
            "aggregator" => self.aggregator = Some(service),
            _ => self.scorer = Some(service),
        }
    }

    fn kill(&mut self, name: &str) {
        let service = match name {
            "aggregator" => self.aggregator.take(),
            _ => self.scorer.take(),
        };
        service.expect("running").kill();
    }

    fn log_tail(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let log: Vec<&str> = log.lines().filter(|l| !l.contains("REQTMOUT")).collect();
        log[log.len().saturating_sub(40)..].join("\n")
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{} never became ready", self.base);
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Registers `email` and logs in; returns the access token.
    async fn user(&self, email: &str) -> String {
        let password = "correct horse battery";
        let (status, body) = self
            .post("/api/v1/register", &json!({"email": email, "password": password}))
            .await;
        assert_eq!(status, 201, "register {email}: {body}");
        let (status, body) = self
            .post("/api/v1/login", &json!({"login": email, "password": password}))
            .await;
        assert_eq!(status, 200, "login {email}: {body}");
        body["access_token"].as_str().expect("a token").to_string()
    }
}

/// Compares the API's daily rows with the ground truth.
/// Waits until every series of the lag gauge `prefix` (e.g. `scorer_consumer_lag{`) at
/// `metrics_url` reads 0 (the gauge refreshes on its own cadence); the last reading otherwise.
async fn lag_drains(metrics_url: &str, prefix: &str, within: Duration) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let text = reqwest::get(metrics_url).await.unwrap().text().await.unwrap();
        let lags: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect();
        if !lags.is_empty() && lags.iter().all(|l| l.ends_with(" 0")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(lags);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn compare(expected: &[TruthRow], served: &[Value]) -> Result<(), String> {
    let served: BTreeMap<(String, String), &Value> = served
        .iter()
        .map(|r| {
            let key = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            ((key("agent_id"), key("day")), r)
        })
        .collect();
    if served.len() != expected.len() {
        return Err(format!(
            "{} rows served, {} expected",
            served.len(),
            expected.len()
        ));
    }
    let mut problems = Vec::new();
    for t in expected {
        let Some(r) = served.get(&(t.agent_id.clone(), t.day.clone())) else {
            problems.push(format!("missing row {}/{}", t.agent_id, t.day));
            continue;
        };
        let got = Counts::FIELDS.map(|k| r[k].as_i64().unwrap_or(-1));
        let want = t.kpis.counts.to_array();
        if got != want {
            problems.push(format!("{}/{}: counts {got:?}, want {want:?}", t.agent_id, t.day));
            continue;
        }
        let exact = t.kpis.latency.latency_p95_ms.expect("every row has tasks") as f64;
        let p95 = r["latency_p95_ms"].as_f64().unwrap_or(f64::NAN);
        if (p95 - exact).abs() / exact > 0.01 || p95.is_nan() {
            problems.push(format!(
                "{}/{}: P95 {p95} vs exact {exact}: more than 1% off",
                t.agent_id, t.day
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} rows differ:\n{}",
            problems.len(),
            problems.join("\n")
        ))
    }
}

/// What happens after a segment of the workload.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL these services, then start them again.
    Kill(&'static [&'static str]),
    /// SIGTERM the aggregator (it must checkpoint and exit 0), then start it again.
    TermAggregator,
    /// SIGKILL the broker and start it again on the same storage.
    RestartBroker,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_to_dashboard_through_service_kills() {
    let faults = [
        Fault::Kill(&["aggregator"]),
        Fault::Kill(&["scorer"]),
        Fault::Kill(&["scorer", "aggregator"]),
        Fault::Kill(&["aggregator", "scorer"]),
        Fault::TermAggregator,
    ];
    generator_to_dashboard(false, &faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_to_dashboard_through_broker_restarts_on_durable_storage() {
    let faults = [
        Fault::RestartBroker,
        Fault::Kill(&["aggregator"]),
        Fault::RestartBroker,
    ];
    generator_to_dashboard(true, &faults).await;
}

/// The whole run, on a memory or a `durable` (SQLite) broker: `faults[i]` happens after the
/// i-th of six segments of the workload.
async fn generator_to_dashboard(durable: bool, faults: &[Fault]) {
    let dir = tempfile::tempdir().unwrap();
    let engine = if durable {
        Engine::Sqlite(dir.path().join("tansu.db"))
    } else {
        Engine::Memory
    };
    let mut broker = TansuBroker::start_with(engine);
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let mut env = pipeline_env(&broker, &db, &topic, 500);
    let (gateway_port, api_port, metrics_port) = (free_port(), free_port(), free_port());
    env.retain(|(k, _)| k != "AGENTOPS__AGGREGATOR__METRICS_LISTEN");
    env.extend(
        [
            ("AGENTOPS__INGEST__LISTEN", format!("127.0.0.1:{gateway_port}")),
            ("AGENTOPS__AUTH_API__LISTEN", format!("127.0.0.1:{api_port}")),
            (
                "AGENTOPS__AGGREGATOR__METRICS_LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            ),
            (
                "AGENTOPS__AUTH_API__JWT_SECRET",
                "full-pipeline-test-secret-of-at-least-32-bytes".to_string(),
            ),
            ("AGENTOPS__AUTH_API__BCRYPT_COST", "4".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env.extend(integration_tests::own_all_partitions(&["aggregator", "scorer"]));
    integration_tests::prepare_pipeline(&broker, &env, 4, 2).await;
    let api_key = run_bin("ingest", &["api-key", "create", "--tenant", TENANT], &env)
        .trim()
        .to_string();

    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let _gateway = Service::start("ingest", &["serve"], &env, &log("gateway"));
    let _auth_api = Service::start("auth-api", &["serve"], &env, &log("auth-api"));
    let mut pipeline = Pipeline {
        env: env.clone(),
        dir: dir.path().to_path_buf(),
        aggregator: None,
        scorer: None,
    };
    pipeline.start("aggregator");
    pipeline.start("scorer");
    let client = reqwest::Client::new();
    let gateway = Api {
        client: client.clone(),
        base: format!("http://127.0.0.1:{gateway_port}"),
    };
    let api = Api {
        client,
        base: format!("http://127.0.0.1:{api_port}"),
    };
    gateway.wait_ready().await;
    api.wait_ready().await;

    // The same series as `scorer_pipeline` (seed 11): the committed models catch its cost spike.
    let generator = Generator::new(GenConfig {
        seed: 11,
        tenants: 1,
        agents_per_tenant: 6,
        control_agents_per_tenant: 2,
        days: DAYS,
        ..GenConfig::default()
    })
    .unwrap();
    let incidents = generator.incidents();
    let incident = incidents
        .iter()
        .find(|i| i.kind == IncidentKind::CostSpike)
        .expect("one series gets a cost spike")
        .clone();
    let sink = HttpSink::new(
        &gateway.base,
        [(TENANT.to_string(), api_key)].into_iter().collect(),
        500,
        4,
    );
    let mut truth = GroundTruth::default();
    let (mut records, mut malformed) = (0, 0);
    let mut first_day_events: Vec<TaskEvent> = Vec::new();
    let hours: Vec<_> = generator.hours().collect();
    let segments: Vec<&[Vec<ingest::generator::Emitted>]> = hours.chunks(hours.len().div_ceil(6)).collect();
    assert_eq!(segments.len(), 6);
    let mut stats = ingest::generator::http_sink::HttpStats::default();
    for (i, segment) in segments.iter().enumerate() {
        for batch in segment.iter() {
            for e in batch {
                match &e.record {
                    Record::Event(event) => {
                        truth.add(event);
                        if first_day_events.len() < TOO_LATE {
                            first_day_events.push(event.as_ref().clone());
                        }
                    }
                    _ => malformed += 1,
                }
            }
            records += batch.len();
            let sent = sink.send(batch).await.unwrap_or_else(|e| {
                let log = std::fs::read_to_string(log("gateway")).unwrap_or_default();
                panic!(
                    "segment {i} (faults {faults:?}): {e}\n{}",
                    &log[log.len().saturating_sub(3_000)..]
                )
            });
            stats.merge(sent);
        }
        // Let the services get into the middle of this segment, then break something.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        if let Some(fault) = faults.get(i) {
            match fault {
                Fault::Kill(names) => {
                    for name in *names {
                        pipeline.kill(name);
                    }
                    for name in *names {
                        pipeline.start(name);
                    }
                }
                Fault::TermAggregator => {
                    let stopped = pipeline.aggregator.take().expect("running").terminate();
                    assert!(
                        stopped,
                        "SIGTERM: clean exit\n{}",
                        pipeline.log_tail("aggregator")
                    );
                    pipeline.start("aggregator");
                }
                Fault::RestartBroker => broker.restart(),
            }
        }
    }
    assert_eq!(
        stats.rejected, malformed as u64,
        "the gateway rejects exactly the malformed records"
    );

    // A producer that bypasses the gateway writes bytes no decoder accepts.
    let producer: FutureProducer = broker.client_config().create().unwrap();
    for i in 0..POISON {
        let payload = format!("not avro {i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .key("acme/poison")
                    .payload(payload.as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // Events from the first day arrive at the end, days beyond the allowed lateness.
    let too_late: Vec<TaskEvent> = first_day_events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.event_id = format!("too-late-{i}");
            e
        })
        .collect();
    let late_stats = sink
        .send(
            &too_late
                .iter()
                .map(|e| ingest::generator::Emitted {
                    arrival_ms: e.completed_at,
                    record: Record::Event(Box::new(e.clone())),
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(late_stats.accepted, TOO_LATE as u64);

    // The dashboard, read with JWTs.
    let token = api.user("ops@example.com").await;
    let outsider = api.user("outsider@example.com").await;
    run_bin(
        "auth-api",
        &["grant", "--email", "ops@example.com", "--tenant", TENANT],
        &env,
    );
    let last_day = schemas::time::parse_day(truth.rows().last().map(|r| r.day.as_str()).unwrap()).unwrap();
    let daily = format!("/api/v1/tenants/{TENANT}/metrics/daily?from=2025-10-01&to={last_day}");
    let expected = truth.rows();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (status, body) = api.get(&daily, &token).await;
        assert_eq!(status, 200, "{body}");
        match compare(
            &expected,
            body["rows"].as_array().map(Vec::as_slice).unwrap_or_default(),
        ) {
            Ok(()) => break,
            Err(problem) if Instant::now() > deadline => {
                let records = read_topic(&broker, &topic, Duration::from_secs(30));
                let mut per_partition = BTreeMap::new();
                for m in &records {
                    *per_partition.entry(m.partition()).or_insert(0) += 1;
                }
                panic!(
                    "the served daily rows never matched the ground truth: {problem}\nrecords per partition: {per_partition:?}\n{}",
                    pipeline.log_tail("aggregator")
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    // Caught up: the aggregator reports no lag on the partitions that carry the series. The
    // rows can match before the last records (ones that change no row: duplicates, poison) are
    // read and before the gauge's next refresh, so the lag gets a few seconds to reach 0.
    let aggregator_metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    if let Err(lags) = lag_drains(
        &aggregator_metrics,
        "aggregator_consumer_lag{",
        Duration::from_secs(30),
    )
    .await
    {
        panic!("consumer lag after catching up: {lags:?}");
    }
    let (status, body) = api.get(&daily, &outsider).await;
    assert_eq!(status, 403, "a user without a grant: {body}");

    // Verdicts: read the anomaly topic until every series has its windows scored.
    let anomaly_topic = env_value(&env, "AGENTOPS__KAFKA__TOPICS__ANOMALIES").to_string();
    let decoder = schemas::codec::Decoder::<Anomaly>::new();
    let window_ms = integration_tests::window_ms();
    let windows_per_series = i64::from(DAYS) * schemas::time::DAY_MS / window_ms;
    let expected_min = (6 * (windows_per_series - 16 - 4)) as usize;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (verdict_records, verdicts) = loop {
        let messages = read_topic(&broker, &anomaly_topic, Duration::from_secs(30));
        let mut by_id = BTreeMap::new();
        for m in &messages {
            let a = decoder.decode_sync(m.payload().unwrap()).unwrap();
            by_id.insert(a.anomaly_id.clone(), a);
        }
        if by_id.len() >= expected_min {
            break (messages.len(), by_id);
        }
        assert!(
            Instant::now() < deadline,
            "{} verdicts, expected at least {expected_min}\n{}",
            by_id.len(),
            pipeline.log_tail("scorer")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // The scorer reports its lag too, and it drains to zero (statistics arrive every second).
    let scorer_metrics = format!(
        "http://{}/metrics",
        env_value(&env, "AGENTOPS__SCORER__METRICS_LISTEN")
    );
    if let Err(lags) = lag_drains(&scorer_metrics, "scorer_consumer_lag{", Duration::from_secs(20)).await {
        panic!("scorer lag never drained: {lags:?}");
    }
    let flagged: Vec<&Anomaly> = verdicts.values().filter(|a| a.is_anomaly).collect();
    let inside: Vec<&Anomaly> = flagged
        .iter()
        .copied()
        .filter(|a| {
            a.agent_id == incident.agent_id
                && a.window_end > incident.start_ms
                && a.window_start <= incident.end_ms
        })
        .collect();
    assert!(!inside.is_empty(), "the cost spike {incident:?} was not flagged");
    integration_tests::assert_cost_spike_explained(&inside);
    let series: BTreeSet<&str> = verdicts.values().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(series.len(), 6, "every series is scored: {series:?}");
    let mut control_flags = 0;
    for agent in series
        .iter()
        .filter(|s| !incidents.iter().any(|i| i.agent_id == **s))
    {
        let n = flagged.iter().filter(|a| a.agent_id == *agent).count();
        control_flags += n;
        assert!(
            n as i64 * window_ms <= CONTROL_FLAGGED_MS_PER_DAY * i64::from(DAYS),
            "control series {agent}: {n} flagged windows in {DAYS} days"
        );
    }

    // The dashboard's anomalies are exactly the flagged verdicts.
    let (status, body) = api
        .get(
            &format!(
                "/api/v1/tenants/{TENANT}/anomalies?from=2025-10-01T00:00:00Z&to={}T00:00:00Z&only_flagged=true",
                last_day + time::Duration::days(1)
            ),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let served: Vec<Anomaly> = serde_json::from_value(body["anomalies"].clone()).unwrap();
    let served: BTreeSet<(String, i64)> = served
        .iter()
        .map(|a| (a.agent_id.clone(), a.window_start))
        .collect();
    let flagged_windows: BTreeSet<(String, i64)> = flagged
        .iter()
        .map(|a| (a.agent_id.clone(), a.window_start))
        .collect();
    assert_eq!(served, flagged_windows, "served anomalies = flagged verdicts");
    let (status, _) = api
        .get(
            &format!("/api/v1/tenants/{TENANT}/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z"),
            &outsider,
        )
        .await;
    assert_eq!(status, 403);

    // Poison on the dead-letter topic, the too-late events on the late topic, with reasons.
    let reason = |m: &rdkafka::message::OwnedMessage| {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == kafka_io::header::CLASS))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    let dead = read_topic(
        &broker,
        env_value(&env, "AGENTOPS__KAFKA__TOPICS__DEAD_LETTER"),
        Duration::from_secs(30),
    );
    let poison_payloads: BTreeSet<Vec<u8>> = dead
        .iter()
        .filter(|m| m.payload().is_some_and(|p| p.starts_with(b"not avro")))
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(
        poison_payloads.len(),
        POISON,
        "every poison record is dead-lettered"
    );
    assert!(
        dead.iter().all(|m| !reason(m).is_empty()),
        "dead letters carry a reason"
    );
    let task_decoder = schemas::codec::Decoder::<TaskEvent>::new();
    let late = read_topic(
        &broker,
        env_value(&env, "AGENTOPS__KAFKA__TOPICS__LATE_EVENTS"),
        Duration::from_secs(30),
    );
    let diverted: BTreeSet<String> = late
        .iter()
        .filter(|m| reason(m) == "late")
        .filter_map(|m| task_decoder.decode_sync(m.payload()?).ok())
        .map(|e| e.event_id)
        .collect();
    let too_late_ids: BTreeSet<String> = too_late.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(diverted, too_late_ids, "exactly the too-late events are diverted");

    eprintln!(
        "{records} records through the gateway ({} distinct events, {} duplicates, {malformed} malformed rejected, {} retries), {POISON} poison records straight to Kafka, {TOO_LATE} too-late events; faults: {faults:?}; {} daily rows served = ground truth; {} verdicts ({verdict_records} records, replays included), {} flagged; cost spike flagged {} windows, first {} min after its start; control series: {control_flags} flagged windows in {DAYS} days",
        truth.distinct_events(),
        truth.duplicates(),
        stats.retries,
        expected.len(),
        verdicts.len(),
        flagged.len(),
        inside.len(),
        (inside.iter().map(|a| a.window_end).min().unwrap() - incident.start_ms) / 60_000
    );
}
