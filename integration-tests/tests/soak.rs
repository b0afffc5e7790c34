//! The soak (not in CI: `#[ignore]`, run by `scripts/soak.sh`): about a million events from the
//! workload generator through the HTTP gateway into Tansu on durable (SQLite) storage, the
//! aggregator and the scorer as their binaries, and between the workload's segments a SIGKILL of
//! the aggregator, of the scorer or of the broker (restarted on the same storage), in turn,
//! `SOAK_FAULTS` times (21 by default: 7 each). Afterwards the store's daily counts equal the
//! ground truth of the events sent, every row and roll-up (0 lost, 0 counted twice), and every
//! window's verdict is on the anomaly topic under one id (a replay after a scorer kill repeats
//! the same verdict under the same id). Sizes: `SOAK_DAYS` (14), `SOAK_TASKS_PER_DAY`
//! per series (6,000; 12 series).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ingest::generator::http_sink::{HttpSink, HttpStats};
use ingest::generator::{GenConfig, Generator, Record};
use ingest::truth::GroundTruth;
use integration_tests::{
    env_value, free_port, pipeline_env, read_topic, run_bin, unique_topic, Engine, Service, TansuBroker,
};
use rdkafka::message::Message;
use schemas::kpi::Counts;
use schemas::Anomaly;

const TENANTS: [&str; 2] = ["acme", "globex"];

fn env_number<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{key}: not a number")))
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    Aggregator,
    Scorer,
    Broker,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of about a million events: scripts/soak.sh"]
async fn a_million_events_through_twenty_one_sigkills_lose_and_double_nothing() {
    let started = Instant::now();
    let days: u32 = env_number("SOAK_DAYS", 14);
    let per_day: f64 = env_number("SOAK_TASKS_PER_DAY", 6_000.0);
    let n_faults: usize = env_number("SOAK_FAULTS", 21);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TansuBroker::start_with(Engine::Sqlite(dir.path().join("tansu.db")));
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let mut env = pipeline_env(&broker, &db, &topic, 500);
    let gateway_port = free_port();
    env.extend(
        [("AGENTOPS__INGEST__LISTEN", format!("127.0.0.1:{gateway_port}"))].map(|(k, v)| (k.to_string(), v)),
    );
    env.extend(integration_tests::own_all_partitions(&["aggregator", "scorer"]));
    integration_tests::prepare_pipeline(&broker, &env, 4, 2).await;
    let keys: BTreeMap<String, String> = TENANTS
        .iter()
        .map(|t| {
            let key = run_bin("ingest", &["api-key", "create", "--tenant", t], &env);
            (t.to_string(), key.trim().to_string())
        })
        .collect();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let _gateway = Service::start("ingest", &["serve"], &env, &log("gateway"));
    let start = |name: &str| Service::start(name, &["run"], &env, &log(name));
    let mut aggregator = Some(start("aggregator"));
    let mut scorer = Some(start("scorer"));
    let base = format!("http://127.0.0.1:{gateway_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let generator = Generator::new(GenConfig {
        seed: 77,
        tenants: TENANTS.len() as u32,
        agents_per_tenant: 6,
        control_agents_per_tenant: 2,
        days,
        tasks_per_series_per_day: per_day,
        ..GenConfig::default()
    })
    .unwrap();
    let sink = HttpSink::new(&base, keys, 500, 4);
    let hours: Vec<_> = generator.hours().collect();
    let segments: Vec<_> = hours.chunks(hours.len().div_ceil(n_faults + 1)).collect();
    let cycle = [Kill::Aggregator, Kill::Scorer, Kill::Broker];
    let mut truth = GroundTruth::default();
    let mut stats = HttpStats::default();
    let (mut records, mut faults) = (0usize, Vec::new());
    for (i, segment) in segments.iter().enumerate() {
        for batch in segment.iter() {
            for e in batch {
                if let Record::Event(event) = &e.record {
                    truth.add(event);
                }
            }
            records += batch.len();
            let sent = sink.send(batch).await.unwrap_or_else(|e| {
                let log = std::fs::read_to_string(log("gateway")).unwrap_or_default();
                panic!("segment {i}: {e}\n{}", &log[log.len().saturating_sub(3_000)..])
            });
            stats.merge(sent);
        }
        if i >= n_faults {
            continue;
        }
        // The services are in the middle of this segment's records: break one of them.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let fault = cycle[i % cycle.len()];
        match fault {
            Kill::Aggregator => {
                aggregator.take().expect("running").kill();
                aggregator = Some(start("aggregator"));
            }
            Kill::Scorer => {
                scorer.take().expect("running").kill();
                scorer = Some(start("scorer"));
            }
            Kill::Broker => broker.restart(),
        }
        faults.push(fault);
    }
    let sent_at = started.elapsed();

    // Counted exactly once: the store's daily counts equal the ground truth, rows and roll-ups.
    let expected: BTreeMap<(String, String, String), Counts> = truth
        .rows()
        .into_iter()
        .map(|r| {
            (
                (r.tenant_id.clone(), r.agent_id.clone(), r.day.clone()),
                r.kpis.counts,
            )
        })
        .collect();
    let store = store::open_migrated(&format!("sqlite://{db}")).await.unwrap();
    let (from, to) = {
        let days: Vec<&String> = expected.keys().map(|k| &k.2).collect();
        let parse = |d: &str| schemas::time::parse_day(d).unwrap();
        (
            parse(days.iter().min().unwrap()),
            parse(days.iter().max().unwrap()),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let mismatch = loop {
        let mut stored = BTreeMap::new();
        for tenant in TENANTS {
            let query = store::DailyMetricsQuery {
                tenant_id: tenant.to_string(),
                agent_id: None,
                from,
                to,
            };
            for m in store.daily_metrics(&query).await.unwrap() {
                stored.insert(
                    (m.tenant_id.clone(), m.agent_id.clone(), m.day.to_string()),
                    m.counts,
                );
            }
        }
        let differing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| stored.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v, stored.get(k).copied()))
            .collect();
        if differing.is_empty() && stored.len() == expected.len() {
            break None;
        }
        if Instant::now() > deadline {
            break Some((differing, stored.len()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    if let Some((differing, stored)) = mismatch {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(log(name)).unwrap_or_default();
            text[text.len().saturating_sub(3_000)..].to_string()
        };
        panic!(
            "{} of {} daily rows differ from the ground truth ({stored} stored), e.g. {:?}\naggregator:\n{}",
            differing.len(),
            expected.len(),
            &differing[..differing.len().min(3)],
            tail("aggregator")
        );
    }
    let counted_at = started.elapsed();

    // Every verdict once: scored windows of every series, each under one id. A scorer killed
    // between publishing verdicts and committing its input re-scores those windows after the
    // restart (its detectors rebuilt by replay) and publishes them again under the same
    // deterministic id: such a replay must say what the first one said (same window, verdict
    // and scores up to the last bits of a differently sized inference batch), so a consumer
    // keyed by id (the store, the alerter) sees each verdict once.
    let anomalies = env_value(&env, "AGENTOPS__KAFKA__TOPICS__ANOMALIES").to_string();
    let decoder = schemas::codec::Decoder::<Anomaly>::new();
    let series = (TENANTS.len() * 6) as i64;
    let windows_per_day = schemas::time::DAY_MS / integration_tests::window_ms();
    let expected_min = (series * (i64::from(days) * windows_per_day - 16 - 4)) as usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (verdict_records, by_id, differing) = loop {
        let messages = read_topic(&broker, &anomalies, Duration::from_secs(60));
        let mut by_id: BTreeMap<String, Anomaly> = BTreeMap::new();
        let mut differing = Vec::new();
        for m in &messages {
            let a = decoder.decode_sync(m.payload().unwrap()).unwrap();
            match by_id.get(&a.anomaly_id) {
                None => {
                    by_id.insert(a.anomaly_id.clone(), a);
                }
                Some(first) => {
                    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(1.0);
                    let same = first.window_id == a.window_id
                        && first.is_anomaly == a.is_anomaly
                        && first.model_version == a.model_version
                        && close(first.ensemble_score, a.ensemble_score)
                        && close(
                            first.statistical_score.unwrap_or_default(),
                            a.statistical_score.unwrap_or_default(),
                        );
                    if !same {
                        differing.push((first.clone(), a));
                    }
                }
            }
        }
        if by_id.len() >= expected_min || Instant::now() > deadline {
            break (messages.len(), by_id, differing);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    eprintln!(
        "soak: {records} records sent ({} distinct events, {} duplicates, {} rejected, {} retries) in {:.0} s; faults {}: {faults:?}; daily rows = ground truth ({} rows) after {:.0} s; {} verdicts ({} flagged), {verdict_records} records on the anomaly topic ({} replays after kills, all equal to the first), total {:.0} s",
        truth.distinct_events(),
        truth.duplicates(),
        stats.rejected,
        stats.retries,
        sent_at.as_secs_f64(),
        faults.len(),
        expected.len(),
        counted_at.as_secs_f64(),
        by_id.len(),
        by_id.values().filter(|a| a.is_anomaly).count(),
        verdict_records - by_id.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        by_id.len() >= expected_min,
        "{} verdicts, expected at least {expected_min}",
        by_id.len()
    );
    assert!(
        differing.is_empty(),
        "{} replayed verdicts differ from the first, e.g. {:?}",
        differing.len(),
        differing.first()
    );
    assert!(truth.distinct_events() >= 1_000_000 || days < 14 || per_day < 6_000.0);
    drop((aggregator, scorer));
}
