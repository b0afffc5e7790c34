//! Accuracy on a known data set: a generated month (fixed seed; duplicates, late arrivals
//! within the allowed lateness and malformed records included) goes through Tansu and the
//! aggregator; every daily row, per series and per tenant, equals the generator's ground truth
//! exactly for counts and cost, and its P95 is within 1% of the exact nearest-rank P95.
//! Events later than the allowed lateness go to the late-events topic with their reason, and
//! `aggregator recompute` folds them back in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ingest::generator::KafkaSink;
use ingest::generator::{GenConfig, Generator, Record};
use ingest::truth::{GroundTruth, TruthRow};
use integration_tests::{env_value, pipeline_env, run_bin, unique_topic, Service, TansuBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use schemas::TaskEvent;
use store::{DailyMetricsQuery, MetricsStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_month_matches_its_ground_truth() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    broker.create_topic(&topic, 4).await;
    let env = pipeline_env(&broker, &db, &topic, 500);
    let settings = settings::Settings::load(None, &env.iter().cloned().collect::<HashMap<_, _>>()).unwrap();

    let config = GenConfig {
        seed: 2025,
        tenants: 2,
        agents_per_tenant: 3,
        control_agents_per_tenant: 1,
        days: 30,
        tasks_per_series_per_day: 250.0,
        malformed_rate: 0.002,
        ..GenConfig::default()
    };
    let generator = Generator::new(config).unwrap();
    let sink = KafkaSink::new(&settings).await.unwrap();
    let mut truth = GroundTruth::default();
    let (mut records, mut poison) = (0, 0);
    let mut pending = Vec::new();
    for batch in generator.hours() {
        for e in &batch {
            match &e.record {
                Record::Event(event) => truth.add(event),
                _ => poison += 1,
            }
        }
        records += batch.len();
        pending.extend(batch);
        if pending.len() >= 5_000 {
            sink.send(&std::mem::take(&mut pending)).await.unwrap();
        }
    }
    sink.send(&pending).await.unwrap();
    let expected = truth.rows();

    let _aggregator = Service::start("aggregator", &["run"], &env, &dir.path().join("aggregator.log"));
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let first_day = schemas::time::parse_day(&expected[0].day).unwrap();
    loop {
        let mut stored = BTreeMap::new();
        for tenant in ["acme", "globex"] {
            let q = DailyMetricsQuery {
                tenant_id: tenant.into(),
                agent_id: None,
                from: first_day,
                to: first_day + time::Duration::days(31),
            };
            for r in store.daily_metrics(&q).await.unwrap_or_default() {
                stored.insert((r.tenant_id.clone(), r.agent_id.clone(), r.day.to_string()), r);
            }
        }
        match compare(&expected, &stored) {
            Ok(()) => break,
            Err(problem) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.path().join("aggregator.log")).unwrap_or_default();
                panic!(
                    "daily rows never matched the ground truth: {problem}\n{}",
                    &log[log.len().saturating_sub(3_000)..]
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    eprintln!(
        "{records} records ({} distinct events, {} duplicates, {poison} malformed) over 30 days; {} daily rows equal the ground truth",
        truth.distinct_events(),
        truth.duplicates(),
        expected.len()
    );
}

fn compare(
    expected: &[TruthRow],
    stored: &BTreeMap<(String, String, String), store::DailyMetric>,
) -> Result<(), String> {
    if stored.len() != expected.len() {
        return Err(format!(
            "{} rows stored, {} expected",
            stored.len(),
            expected.len()
        ));
    }
    for t in expected {
        let Some(r) = stored.get(&(t.tenant_id.clone(), t.agent_id.clone(), t.day.clone())) else {
            return Err(format!("missing row {}/{}/{}", t.tenant_id, t.agent_id, t.day));
        };
        let (got, want) = (r.counts, t.kpis.counts);
        if got != want {
            return Err(format!(
                "{}/{}/{}: counts {got:?}, want {want:?}",
                t.tenant_id, t.agent_id, t.day
            ));
        }
        let exact = t.kpis.latency.latency_p95_ms.unwrap() as f64;
        let p95 = r.latency.latency_p95_ms.unwrap();
        assert!(
            (p95 - exact).abs() / exact <= 0.01,
            "{}/{}/{}: P95 {p95} vs exact {exact}: more than 1% off",
            t.tenant_id,
            t.agent_id,
            t.day
        );
    }
    Ok(())
}

async fn stored_rows(db: &str, from: time::Date) -> BTreeMap<(String, String, String), store::DailyMetric> {
    let store = store::sqlite::SqliteStore::open(db).await.unwrap();
    let mut stored = BTreeMap::new();
    for tenant in ["acme", "globex"] {
        let q = DailyMetricsQuery {
            tenant_id: tenant.into(),
            agent_id: None,
            from,
            to: from + time::Duration::days(31),
        };
        for r in store.daily_metrics(&q).await.unwrap_or_default() {
            stored.insert((r.tenant_id.clone(), r.agent_id.clone(), r.day.to_string()), r);
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_lateness_are_diverted_and_recompute_folds_them_in() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    broker.create_topic(&topic, 2).await;
    let env = pipeline_env(&broker, &db, &topic, 500);
    let late_topic = env_value(&env, "AGENTOPS__KAFKA__TOPICS__LATE_EVENTS").to_string();
    // Created before the reader subscribes: a subscription to a topic that does not exist yet
    // only sees it after a metadata refresh (minutes).
    broker.create_topic(&late_topic, 1).await;
    let settings = settings::Settings::load(None, &env.iter().cloned().collect::<HashMap<_, _>>()).unwrap();
    let config = GenConfig {
        seed: 7,
        tenants: 2,
        agents_per_tenant: 2,
        control_agents_per_tenant: 0,
        days: 4,
        tasks_per_series_per_day: 300.0,
        very_late_rate: 0.01,
        malformed_rate: 0.0,
        incidents: false,
        ..GenConfig::default()
    };
    let generator = Generator::new(config).unwrap();
    let sink = KafkaSink::new(&settings).await.unwrap();
    let mut events: Vec<TaskEvent> = Vec::new();
    for batch in generator.hours() {
        events.extend(batch.iter().filter_map(|e| match &e.record {
            Record::Event(ev) => Some(ev.as_ref().clone()),
            _ => None,
        }));
        sink.send(&batch).await.unwrap();
    }
    let truth_of = |skip: &std::collections::HashSet<String>| {
        let mut t = GroundTruth::default();
        events
            .iter()
            .filter(|e| !skip.contains(&e.event_id))
            .for_each(|e| t.add(e));
        t.rows()
    };
    let all = truth_of(&Default::default());
    let first_day = schemas::time::parse_day(&all[0].day).unwrap();

    let aggregator = Service::start("aggregator", &["run"], &env, &dir.path().join("aggregator.log"));
    let late: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("late-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    late.subscribe(&[late_topic.as_str()]).unwrap();
    let decoder = schemas::codec::Decoder::<TaskEvent>::new();
    let mut diverted = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), late.recv()).await {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == kafka_io::header::CLASS))
                .and_then(|h| h.value);
            assert_eq!(reason, Some(&b"late"[..]), "late records carry their reason");
            diverted.insert(decoder.decode_sync(m.payload().unwrap()).unwrap().event_id);
        }
        match compare(&truth_of(&diverted), &stored_rows(&db, first_day).await) {
            Ok(()) if !diverted.is_empty() => break,
            Ok(()) => {}
            Err(problem) if Instant::now() > deadline => panic!(
                "streaming rows never matched: {problem}; {} diverted",
                diverted.len()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(diverted.len() >= 10, "only {} events diverted", diverted.len());
    assert_ne!(
        truth_of(&diverted),
        all,
        "the diverted events are missing from the streaming rows"
    );
    assert!(aggregator.terminate());

    let last_day = first_day + time::Duration::days(3);
    let out = run_bin(
        "aggregator",
        &[
            "recompute",
            "--from",
            &first_day.to_string(),
            "--to",
            &last_day.to_string(),
        ],
        &env,
    );
    compare(&all, &stored_rows(&db, first_day).await)
        .unwrap_or_else(|p| panic!("after recompute: {p}\n{out}"));
    eprintln!(
        "{} events, {} diverted as late, folded back in by recompute: {}",
        events.len(),
        diverted.len(),
        out.trim()
    );
}
