//! The scorer on Tansu, fed by the real aggregator: generated task events of six agents (four
//! with one injected incident each: latency regression, success-rate drop, intervention surge,
//! cost spike; two clean control series) go through the aggregator's KPI windows into
//! the scorer. Every scorable window gets exactly one verdict per revision on the anomaly topic;
//! the cost spike (a kind the committed models catch every time: 20 of 20 in the evaluation) is
//! flagged inside the incident and named as cost-driven; the control series stay within a
//! false-alarm budget; flagged verdicts are in the store. What the other incidents got is
//! printed, not asserted (the README's evaluation says how often each kind is caught). Halfway,
//! the model directory changes and the scorer switches to the new set without a restart.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ingest::generator::KafkaSink;
use ingest::generator::{GenConfig, Generator, IncidentKind};
use integration_tests::{env_value, models_dir, pipeline_env, unique_topic, Service, TansuBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use schemas::Anomaly;
use store::{AnomalyQuery, WindowStore};

/// Flagged time allowed per control series and simulated day (one 15-minute stretch).
const CONTROL_FLAGGED_MS_PER_DAY: i64 = 15 * 60_000;

struct Verdicts {
    consumer: StreamConsumer,
    decoder: schemas::codec::Decoder<Anomaly>,
    by_id: BTreeMap<String, Anomaly>,
    records: usize,
}

impl Verdicts {
    /// Reads until nothing new arrived for `quiet`, or `deadline`.
    async fn settle(&mut self, quiet: Duration, deadline: Instant) {
        let mut last_new = Instant::now();
        while Instant::now() < deadline && last_new.elapsed() < quiet {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await {
                let a = self.decoder.decode_sync(m.payload().unwrap()).unwrap();
                self.records += 1;
                self.by_id.insert(a.anomaly_id.clone(), a);
                last_new = Instant::now();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_incident_is_flagged_and_the_control_series_stay_quiet() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let mut env = pipeline_env(&broker, &db, &topic, 500);
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    for entry in std::fs::read_dir(models_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), models.join(entry.file_name())).unwrap();
    }
    env.retain(|(k, _)| k != "AGENTOPS__SCORER__MODEL_DIR");
    env.extend([
        (
            "AGENTOPS__SCORER__MODEL_DIR".to_string(),
            models.display().to_string(),
        ),
        (
            "AGENTOPS__SCORER__RELOAD_INTERVAL_MS".to_string(),
            "300".to_string(),
        ),
        ("AGENTOPS__SCORER__ASSIGNMENT".to_string(), "all".to_string()),
        ("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()),
    ]);
    // Topics exist before anyone subscribes (a broker metadata refresh would take minutes).
    broker.create_topic(&topic, 2).await;
    integration_tests::create_output_topics(&broker, &env, 2).await;
    let settings = settings::Settings::load(None, &env.iter().cloned().collect::<HashMap<_, _>>()).unwrap();

    let days = 6;
    let generator = Generator::new(GenConfig {
        seed: 11,
        tenants: 1,
        agents_per_tenant: 6,
        control_agents_per_tenant: 2,
        days,
        ..GenConfig::default()
    })
    .unwrap();
    let incidents = generator.incidents();
    assert_eq!(incidents.len(), 4);
    let incident = incidents
        .iter()
        .find(|i| i.kind == IncidentKind::CostSpike)
        .expect("the fourth series gets a cost spike")
        .clone();
    let agents: Vec<String> = incidents.iter().map(|i| i.agent_id.clone()).collect();

    let _aggregator = Service::start("aggregator", &["run"], &env, &dir.path().join("aggregator.log"));
    let _scorer = Service::start("scorer", &["run"], &env, &dir.path().join("scorer.log"));
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("verdict-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer
        .subscribe(&[env_value(&env, "AGENTOPS__KAFKA__TOPICS__ANOMALIES")])
        .unwrap();
    let mut verdicts = Verdicts {
        consumer,
        decoder: schemas::codec::Decoder::new(),
        by_id: BTreeMap::new(),
        records: 0,
    };
    // The last 3,000 bytes of a service's log without backtrace frames (an error's message,
    // not its stack, is what says why a service stopped).
    let log_tail = |name: &str| {
        let log = std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !(t.starts_with("at ") || t.split_once(": ").is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
            })
            .collect();
        let text = lines.join("\n");
        let cut = text.len().saturating_sub(3_000);
        let cut = (cut..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    };

    // First half of the simulated time, then a new model set, then the rest.
    let sink = KafkaSink::new(&settings).await.unwrap();
    let hours: Vec<_> = generator.hours().collect();
    let half = hours.len() / 2;
    let mut records = 0;
    for batch in &hours[..half] {
        records += batch.len();
        sink.send(batch).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    while verdicts.by_id.is_empty() && Instant::now() < deadline {
        verdicts.settle(Duration::from_secs(3), deadline).await;
    }
    assert!(
        !verdicts.by_id.is_empty(),
        "no verdicts\nscorer log:\n{}\naggregator log:\n{}",
        log_tail("scorer.log"),
        log_tail("aggregator.log")
    );
    verdicts.settle(Duration::from_secs(3), deadline).await;
    let first_version = verdicts.by_id.values().next().unwrap().model_version.clone();
    let manifest_path = models.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let second_version = format!("{first_version}-reloaded");
    manifest["version"] = second_version.clone().into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let metrics_url = format!(
        "http://{}/metrics",
        env_value(&env, "AGENTOPS__SCORER__METRICS_LISTEN")
    );
    let reloaded = async {
        loop {
            let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
            if text.contains(&format!("scorer_model_info{{version=\"{second_version}\"}} 1")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reloaded)
        .await
        .unwrap_or_else(|_| panic!("no reload\n{}", log_tail("scorer.log")));
    for batch in &hours[half..] {
        records += batch.len();
        sink.send(batch).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    let period = i64::from(settings.aggregator.window_secs) * 1000;
    let series_windows = days as i64 * schemas::time::DAY_MS / period;
    let len = 16; // the committed set's sequence_length (checked below)
    assert_eq!(manifest["sequence_length"], len);
    // Every series gets a verdict for each window from its 16th on; the last windows wait for
    // a watermark that never comes (no later events), so allow a few short.
    let expected_min = 6 * (series_windows - len - 4);
    while (verdicts.by_id.len() as i64) < expected_min && Instant::now() < deadline {
        verdicts.settle(Duration::from_secs(5), deadline).await;
    }
    let all: Vec<&Anomaly> = verdicts.by_id.values().collect();
    assert!(
        all.len() as i64 >= expected_min,
        "{} verdicts, expected at least {expected_min}\n{}",
        all.len(),
        log_tail("scorer.log")
    );

    // Exactly one record per verdict (window, revision, model version) on the topic.
    assert_eq!(verdicts.records, all.len(), "a verdict was published twice");
    let series_names: std::collections::BTreeSet<&str> = all.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(series_names.len(), 6, "every series is scored: {series_names:?}");
    let controls: Vec<&str> = series_names
        .iter()
        .copied()
        .filter(|s| !agents.iter().any(|a| a == s))
        .collect();
    assert_eq!(controls.len(), 2);
    // The switch, in scoring order: old version first, new version after, never back.
    for agent in &series_names {
        let mut series: Vec<&&Anomaly> = all.iter().filter(|a| a.agent_id == *agent).collect();
        series.sort_by_key(|a| a.scored_at);
        let switched = series.iter().position(|a| a.model_version == second_version);
        let switched = switched.unwrap_or_else(|| panic!("{agent}: never scored by the reloaded set"));
        assert!(switched > 0, "{agent}: the first set scored nothing");
        assert!(series[switched..]
            .iter()
            .all(|a| a.model_version == second_version));
    }

    let flagged = |agent: &str| -> Vec<&Anomaly> {
        all.iter()
            .copied()
            .filter(|a| a.agent_id == agent && a.is_anomaly)
            .collect()
    };
    let inside: Vec<&Anomaly> = flagged(&incident.agent_id)
        .into_iter()
        .filter(|a| a.window_end > incident.start_ms && a.window_start <= incident.end_ms)
        .collect();
    assert!(
        !inside.is_empty(),
        "the incident {incident:?} was not flagged; verdicts of the series inside it: {:?}",
        all.iter()
            .filter(|a| a.agent_id == incident.agent_id
                && a.window_end > incident.start_ms
                && a.window_start <= incident.end_ms)
            .map(|a| (a.window_start, a.ensemble_score))
            .collect::<Vec<_>>()
    );
    let first = inside.iter().map(|a| a.window_end).min().unwrap();
    integration_tests::assert_cost_spike_explained(&inside);
    for other in &incidents {
        let caught = flagged(&other.agent_id)
            .iter()
            .filter(|a| a.window_end > other.start_ms && a.window_start <= other.end_ms)
            .count();
        eprintln!(
            "{:?} on {}: {caught} flagged windows inside",
            other.kind, other.agent_id
        );
    }
    let mut control_flags = 0;
    for p in controls {
        let n = flagged(p).len();
        control_flags += n;
        assert!(
            n as i64 * period <= CONTROL_FLAGGED_MS_PER_DAY * days as i64,
            "control series {p}: {n} flagged windows in {days} days"
        );
    }

    // Flagged verdicts are stored for the dashboard.
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();
    let stored = store
        .anomalies(&AnomalyQuery {
            tenant_id: incident.tenant_id.clone(),
            from_ms: 0,
            to_ms: i64::MAX,
            min_score: f64::MIN,
            only_flagged: false,
        })
        .await
        .unwrap();
    let flagged_windows: std::collections::BTreeSet<(String, i64)> = all
        .iter()
        .filter(|a| a.is_anomaly)
        .map(|a| (a.agent_id.clone(), a.window_start))
        .collect();
    let stored_windows: std::collections::BTreeSet<(String, i64)> = stored
        .iter()
        .map(|a| (a.agent_id.clone(), a.window_start))
        .collect();
    assert_eq!(stored_windows, flagged_windows);
    eprintln!(
        "{records} records, {} verdicts ({} flagged); incident {:?} flagged {} windows, first {} min after its start; control series: {control_flags} flagged windows in {days} days",
        all.len(),
        flagged_windows.len(),
        incident.kind,
        inside.len(),
        (first - incident.start_ms) / 60_000
    );
}
