//! The aggregator against a real broker: daily rows equal the ground truth computed straight
//! from the events (exact counts and cost, P95 within 1% of the exact nearest-rank P95),
//! while it is SIGKILLed mid-stream and restarted, while a second instance joins and leaves
//! (rebalances), with duplicates and poison messages mixed in.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use integration_tests::{pipeline_env, unique_topic, Service, TansuBroker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::Encoder;
use schemas::kpi::{exact_quantile, Counts};
use schemas::time::{date_of_day, day_index, day_of_ms, DAY_MS};
use schemas::{TaskEvent, TaskStatus};
use store::{DailyMetricsQuery, MetricsStore, ALL_AGENTS};

const T0: i64 = 1_763_510_400_000; // 2025-11-19T00:00:00Z

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Events over three days for 2 tenants x 4 agents: heavy-tailed latencies, per-agent success
/// and intervention rates, disorder within the allowed lateness, about 2% duplicates.
fn workload(n: usize, seed: u64) -> Vec<TaskEvent> {
    let mut rng = Rng(seed);
    let mut events = Vec::with_capacity(n + n / 50);
    for i in 0..n {
        let tenant = ["acme", "globex"][i % 2];
        let agent_no = (i / 2) % 4;
        let t = T0 + (i as i64 * 3 * DAY_MS) / n as i64 - (rng.unit() * 120_000.0) as i64;
        let normal: f64 = (0..6).map(|_| rng.unit()).sum::<f64>() - 3.0;
        let latency = (800.0 * (1.0 + agent_no as f64) * (normal * 0.9).exp()) as i64 + 1;
        let roll = rng.unit();
        let status = if roll < 0.80 + agent_no as f64 * 0.04 {
            TaskStatus::Succeeded
        } else if roll < 0.97 {
            TaskStatus::Failed
        } else {
            TaskStatus::Cancelled
        };
        let mut e = TaskEvent::example();
        e.event_id = format!("ev-{seed}-{i}");
        e.task_id = format!("task-{i}");
        e.tenant_id = tenant.into();
        e.agent_id = format!("agent-{agent_no}");
        e.status = status;
        e.human_interventions = if rng.unit() < 0.1 {
            1 + (rng.next() % 3) as i32
        } else {
            0
        };
        e.completed_at = t;
        e.started_at = t - latency;
        e.cost_micros = 500 + (rng.next() % 20_000) as i64;
        events.push(e.clone());
        if rng.unit() < 0.02 {
            events.push(e); // a producer retry: same event_id
        }
    }
    events
}

struct Truth {
    counts: Counts,
    latencies: Vec<i64>,
}

fn ground_truth(events: &[TaskEvent]) -> BTreeMap<(String, String, i64), Truth> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<(String, String, i64), Truth> = BTreeMap::new();
    for e in events.iter().filter(|e| seen.insert(e.event_id.clone())) {
        for agent in [e.agent_id.clone(), ALL_AGENTS.to_string()] {
            let t = out
                .entry((e.tenant_id.clone(), agent, day_of_ms(e.completed_at)))
                .or_insert(Truth {
                    counts: Counts::default(),
                    latencies: vec![],
                });
            t.counts.add(&e.view());
            t.latencies.push(e.latency_ms());
        }
    }
    out
}

/// The environment of an instance that owns every partition without group coordination:
/// Tansu 0.6 never expires a SIGKILLed group member, so in group mode its partitions would
/// stay with the dead member (see README, "Tansu gaps").
/// It also resumes exactly at its checkpoint (no rewind), so that resuming mid-batch, which
/// Tansu answers with the next batch, exercises the driver's gap repair.
fn owning_all(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.push(("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()));
    env.push((
        "AGENTOPS__AGGREGATOR__RESUME_REWIND_RECORDS".to_string(),
        "0".to_string(),
    ));
    env
}

struct Fixture {
    broker: TansuBroker,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    topic: String,
    db: String,
}

async fn fixture() -> Fixture {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let env = pipeline_env(&broker, &db, &topic, 300);
    broker.create_topic(&topic, 4).await;
    Fixture {
        broker,
        dir,
        env,
        topic,
        db,
    }
}

async fn produce(f: &Fixture, events: &[TaskEvent], poison: usize) {
    let producer: FutureProducer = f.broker.client_config().set("linger.ms", "20").create().unwrap();
    let encoder = Encoder::<TaskEvent>::single_object();
    let mut pending = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let payload = encoder.encode(e).unwrap();
        let key = e.series_key();
        pending.push(
            producer
                .send_result(FutureRecord::to(&f.topic).key(key.as_bytes()).payload(&payload))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
        if poison > 0 && i % (events.len() / poison) == 0 {
            let bytes = format!("{{\"not avro\": {i}}}");
            pending.push(
                producer
                    .send_result(
                        FutureRecord::to(&f.topic)
                            .key(key.as_bytes())
                            .payload(bytes.as_bytes()),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap(),
            );
        }
        if pending.len() >= 5_000 {
            for d in pending.drain(..) {
                d.await.unwrap().unwrap();
            }
        }
    }
    for d in pending {
        d.await.unwrap().unwrap();
    }
}

/// Waits until the stored daily rows equal the ground truth; panics with the last difference.
async fn assert_matches_truth(
    f: &Fixture,
    truth: &BTreeMap<(String, String, i64), Truth>,
    timeout: Duration,
) {
    let store = store::sqlite::SqliteStore::open(&f.db).await.unwrap();
    let deadline = Instant::now() + timeout;
    let from = date_of_day(day_of_ms(T0) - 1);
    let to = from + time::Duration::days(5);
    loop {
        let mut problem = None;
        let mut rows = BTreeMap::new();
        for tenant in ["acme", "globex"] {
            let q = DailyMetricsQuery {
                tenant_id: tenant.into(),
                agent_id: None,
                from,
                to,
            };
            for r in store.daily_metrics(&q).await.unwrap_or_default() {
                let day = day_index(r.day);
                rows.insert((r.tenant_id.clone(), r.agent_id.clone(), day), r);
            }
        }
        if rows.len() != truth.len() {
            problem = Some(format!("{} rows, want {}", rows.len(), truth.len()));
        }
        for (key, t) in truth {
            let Some(r) = rows.get(key) else {
                problem.get_or_insert(format!("missing row {key:?}"));
                continue;
            };
            let (got, want) = (r.counts, t.counts);
            if got != want {
                let p = problem.get_or_insert_with(String::new);
                p.push_str(&format!("\n{key:?}: counts {got:?}, want {want:?}"));
                continue;
            }
            let exact = exact_quantile(&mut t.latencies.clone(), 0.95).unwrap() as f64;
            let p95 = r.latency.latency_p95_ms.unwrap();
            assert!(
                (p95 - exact).abs() / exact <= 0.01,
                "{key:?}: P95 {p95} vs exact {exact}: more than 1% off"
            );
        }
        match problem {
            None => return,
            Some(p) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(f.dir.path().join("aggregator.log")).unwrap_or_default();
                let _ = std::fs::write(std::env::temp_dir().join("aggregator-failure.log"), &log);
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains(" INFO ") || l.contains("assigned"))
                    .collect();
                panic!("daily rows never matched the ground truth: {p}\naggregator log (warnings, assignments):\n{}", tail[tail.len().saturating_sub(60)..].join("\n"))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_rows_equal_ground_truth_across_sigkills_with_duplicates_and_poison() {
    let f = std::sync::Arc::new(fixture().await);
    let events = workload(60_000, 7);
    let truth = ground_truth(&events);
    // Produce in 12 chunks over about 6 s while the aggregator is killed and restarted, so every
    // kill lands mid-stream.
    let producer = {
        let (f, events) = (f.clone(), events.clone());
        tokio::spawn(async move {
            for chunk in events.chunks(events.len() / 12 + 1) {
                produce(&f, chunk, 2).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let log = f.dir.path().join("aggregator.log");
    let mut kills = 0;
    for round in 0..5u64 {
        let agg = Service::start("aggregator", &["run"], &owning_all(&f.env), &log);
        tokio::time::sleep(Duration::from_millis(900 + round * 250)).await;
        agg.kill();
        kills += 1;
    }
    let _agg = Service::start("aggregator", &["run"], &owning_all(&f.env), &log);
    producer.await.unwrap();
    assert_matches_truth(&f, &truth, Duration::from_secs(120)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let repairs = text.matches("seeking further back").count();
    let gaps = text.matches("skipped records mid-stream").count();
    eprintln!(
        "{} events ({} distinct), about 24 poison records, {kills} SIGKILLs mid-stream, {} starts, \
         {repairs} resumes repaired after the broker skipped records, {gaps} gaps mid-stream \
         refetched; {} daily rows equal",
        events.len(),
        events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len(),
        kills + 1,
        truth.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_rows_equal_ground_truth_when_a_second_instance_joins_and_leaves() {
    let f = fixture().await;
    let events = workload(20_000, 11);
    let truth = ground_truth(&events);
    produce(&f, &events, 0).await;
    let log = f.dir.path().join("aggregator.log");
    let first = Service::start("aggregator", &["run"], &f.env, &log);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = Service::start("aggregator", &["run"], &f.env, &log); // joins: rebalance
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    assert!(second.terminate(), "second instance stops cleanly on SIGTERM"); // leaves: rebalance
    assert_matches_truth(&f, &truth, Duration::from_secs(120)).await;
    drop(first);
}

/// Resuming inside the *last* batch of a partition: Tansu answers a fetch from the middle of a
/// batch with the next batch, and there is none, so the fetch returns nothing, no first record
/// is ever checked, and without the worker's stall check the rest of the batch would never be
/// read (the partition shows a lag and its last records are missing from the rows). The
/// checkpoint is planted at offset 5 of one 10-record batch with an empty state, so the rows
/// must count exactly records 5 to 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_inside_the_last_batch_reads_the_rest_of_it() {
    let f = fixture().await;
    let mut events = workload(10, 23);
    events.truncate(10);
    let producer: FutureProducer = f.broker.client_config().set("linger.ms", "200").create().unwrap();
    let encoder = Encoder::<TaskEvent>::single_object();
    let pending: Vec<_> = events
        .iter()
        .map(|e| {
            let bytes = encoder.encode(e).unwrap();
            producer
                .send_result(FutureRecord::to(&f.topic).partition(0).key("k").payload(&bytes))
                .map_err(|(e, _)| e)
                .unwrap()
        })
        .collect();
    let mut offsets = Vec::new();
    for d in pending {
        offsets.push(d.await.unwrap().unwrap().offset);
    }
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<i64>>(),
        "one partition, offsets 0..9"
    );

    integration_tests::run_bin("aggregator", &["migrate"], &f.env);
    let store = store::sqlite::SqliteStore::open(&f.db).await.unwrap();
    store::CheckpointStore::save_checkpoint(
        &store,
        &store::Checkpoint {
            consumer_group: integration_tests::env_value(&f.env, "AGENTOPS__AGGREGATOR__CONSUMER_GROUP")
                .to_string(),
            topic: f.topic.clone(),
            partition: 0,
            next_offset: 5,
            state: aggregator::engine::PartitionState::default().to_bytes(),
            updated_at_ms: 0,
        },
    )
    .await
    .unwrap();
    let truth = ground_truth(&events[5..]);
    let log = f.dir.path().join("aggregator.log");
    let _agg = Service::start("aggregator", &["run"], &owning_all(&f.env), &log);
    assert_matches_truth(&f, &truth, Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "stall repairs: {}",
        text.matches("no records from the broker although the log holds some")
            .count()
    );
}
