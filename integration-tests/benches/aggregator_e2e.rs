//! Bench binary: is the aggregator the bottleneck? On one Tansu broker (memory engine, 4
//! partitions) holding a generated data set, in the same run:
//! 1. the raw consume rate: an rdkafka consumer configured like the aggregator's reads every
//!    record of the topic (payloads touched, nothing decoded);
//! 2. the aggregator binary from a cold start: the rate at which it consumes (its
//!    `aggregator_events_in_total` reaching the record count), and the time until the stored
//!    daily rows hold every event (checkpoints every `aggregator.checkpoint_interval_ms`).
//!
//! Needs the release binaries (`cargo build --release --bins`) and Tansu
//! (`scripts/install-deps.sh`). Run: `cargo bench -p integration-tests --bench aggregator_e2e`
//! (`DAYS=N` for another size). Not part of CI.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ingest::generator::KafkaSink;
use ingest::generator::{GenConfig, Generator, Record};
use integration_tests::{free_port, pipeline_env, unique_topic, Service, TansuBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use store::{DailyMetricsQuery, MetricsStore, ALL_AGENTS};

const PARTITIONS: i32 = 4;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let days: u32 = std::env::var("DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(10);
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    broker.create_topic(&topic, PARTITIONS).await;
    let mut env = pipeline_env(&broker, &db, &topic, 2_000);
    let metrics_port = free_port();
    env.retain(|(k, _)| k != "AGENTOPS__AGGREGATOR__METRICS_LISTEN");
    env.extend([
        (
            "AGENTOPS__AGGREGATOR__METRICS_LISTEN".to_string(),
            format!("127.0.0.1:{metrics_port}"),
        ),
        ("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()),
    ]);
    for key in ["KPI_WINDOWS", "DEAD_LETTER", "LATE_EVENTS"] {
        let name = integration_tests::env_value(&env, &format!("AGENTOPS__KAFKA__TOPICS__{key}"));
        broker.create_topic(name, PARTITIONS).await;
    }
    let settings = settings::Settings::load(None, &env.iter().cloned().collect::<HashMap<_, _>>()).unwrap();

    // The data set: 32 series, `days` days, 4,000 tasks per series and day, no malformed records.
    let generator = Generator::new(GenConfig {
        days,
        tenants: 4,
        agents_per_tenant: 8,
        tasks_per_series_per_day: 4_000.0,
        malformed_rate: 0.0,
        ..GenConfig::default()
    })
    .unwrap();
    let sink = KafkaSink::new(&settings).await.unwrap();
    let mut records = 0usize;
    let mut distinct = std::collections::HashSet::new();
    let started = Instant::now();
    let mut pending = Vec::new();
    for batch in generator.hours() {
        for e in &batch {
            if let Record::Event(ev) = &e.record {
                distinct.insert(ev.event_id.clone());
            }
        }
        records += batch.len();
        pending.extend(batch);
        if pending.len() >= 20_000 {
            sink.send(&std::mem::take(&mut pending)).await.unwrap();
        }
    }
    sink.send(&pending).await.unwrap();
    println!(
        "produced {records} records ({} distinct events) in {:.1} s",
        distinct.len(),
        started.elapsed().as_secs_f64()
    );

    // 1. Raw consume rate, configured like the aggregator's consumer.
    let raw_topic = topic.clone();
    let consumer_settings = settings.kafka.clone();
    let raw = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            kafka_io::consumer_config(&consumer_settings, "bench-raw", &unique_topic("raw"))
                .create()
                .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            list.add_partition_offset(&raw_topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let started = Instant::now();
        let (mut n, mut bytes) = (0usize, 0usize);
        while n < records {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                bytes += std::hint::black_box(m.payload().map_or(0, <[u8]>::len));
                n += 1;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "raw rdkafka consume: {n} records ({:.0} MB) in {secs:.2} s = {:.0} records/s",
            bytes as f64 / 1e6,
            n as f64 / secs
        );
        n as f64 / secs
    })
    .await
    .unwrap();

    // 2. The aggregator from a cold start.
    let started = Instant::now();
    let _aggregator = Service::start("aggregator", &["run"], &env, &dir.path().join("aggregator.log"));
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let mut consumed_at = None;
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();
    let first = time::Date::from_calendar_date(2025, time::Month::October, 1).unwrap();
    let stored_at = loop {
        if consumed_at.is_none() {
            if let Ok(r) = reqwest::get(&url).await {
                let text = r.text().await.unwrap_or_default();
                if metric(&text, "aggregator_events_in_total") as usize >= records {
                    consumed_at = Some(started.elapsed().as_secs_f64());
                }
            }
        }
        let mut total = 0i64;
        for t in 0..4 {
            let q = DailyMetricsQuery {
                tenant_id: ["acme", "globex", "initech", "umbrella"][t].to_string(),
                agent_id: Some(ALL_AGENTS.to_string()),
                from: first,
                to: first + time::Duration::days(i64::from(days)),
            };
            total += store
                .daily_metrics(&q)
                .await
                .unwrap_or_default()
                .iter()
                .map(|r| r.counts.tasks_total)
                .sum::<i64>();
        }
        if total as usize >= distinct.len() {
            break started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the aggregator did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let consumed_at = consumed_at.unwrap_or(stored_at);
    let consume_rate = records as f64 / consumed_at;
    println!(
        "aggregator (cold start, decode + aggregate + windows out + checkpoints): all {records} records consumed after {consumed_at:.2} s = {consume_rate:.0} records/s ({:.2}x raw); daily rows complete in the store after {stored_at:.2} s = {:.0} records/s ({:.2}x raw)",
        consume_rate / raw,
        records as f64 / stored_at,
        records as f64 / stored_at / raw
    );
}
