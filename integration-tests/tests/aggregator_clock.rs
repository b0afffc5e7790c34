//! The scheduled day finalization against a real broker. A partition whose series went quiet
//! keeps its watermark (its latest event time) short of the end of their last day, so the
//! watermark alone would never make that day final. Once the aggregator has read the partition
//! to its end and the clock is past the day's end plus the allowed lateness, the row becomes
//! final; an event of that day that comes afterwards goes to the late-events topic with the
//! reason `day_final` and changes no row.

use std::time::{Duration, Instant};

use integration_tests::{env_value, pipeline_env, read_topic, unique_topic, Service, TansuBroker};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::Encoder;
use schemas::time::{date_of_day, day_of_ms, now_ms, DAY_MS};
use schemas::TaskEvent;
use store::{DailyMetric, DailyMetricsQuery, MetricsStore};

fn event(i: usize, completed_at: i64) -> TaskEvent {
    let mut e = TaskEvent::example();
    e.event_id = format!("clock-{i}");
    e.task_id = format!("task-{i}");
    e.tenant_id = "acme".into();
    e.agent_id = "triage".into();
    e.completed_at = completed_at;
    e.started_at = completed_at - 1_000 - i as i64;
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

async fn row(store: &store::sqlite::SqliteStore, day: time::Date) -> Option<DailyMetric> {
    let query = DailyMetricsQuery {
        tenant_id: "acme".into(),
        agent_id: Some("triage".into()),
        from: day,
        to: day,
    };
    store.daily_metrics(&query).await.ok()?.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_partitions_ended_day_is_finalized_by_the_clock() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let mut env = pipeline_env(&broker, &db, &topic, 300);
    env.retain(|(k, _)| k != "AGENTOPS__AGGREGATOR__FINALIZE_DAYS_BY_CLOCK");
    env.extend([
        (
            "AGENTOPS__AGGREGATOR__FINALIZE_DAYS_BY_CLOCK".to_string(),
            "true".to_string(),
        ),
        ("AGENTOPS__AGGREGATOR__ASSIGNMENT".to_string(), "all".to_string()),
    ]);
    broker.create_topic(&topic, 1).await;
    let late_topic = env_value(&env, "AGENTOPS__KAFKA__TOPICS__LATE_EVENTS").to_string();
    broker.create_topic(&late_topic, 1).await;

    // The day before yesterday (UTC): it ended at least a day ago, far more than the allowed
    // lateness (300 s). Its events end two minutes before midnight, so the watermark stays
    // inside the day: by event time alone the day would stay open.
    let day_index = day_of_ms(now_ms()) - 2;
    let day = date_of_day(day_index);
    let day_end = (day_index + 1) * DAY_MS;
    let events: Vec<TaskEvent> = (0..20)
        .map(|i| event(i, day_end - 120_000 - (20 - i as i64) * 60_000))
        .collect();
    let producer: FutureProducer = broker.client_config().create().unwrap();
    produce(&producer, &topic, &events).await;

    let aggregator = Service::start("aggregator", &["run"], &env, &dir.path().join("aggregator.log"));
    let store = store::sqlite::SqliteStore::open(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let finalized = loop {
        match row(&store, day).await {
            Some(r) if r.is_final => break r,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the day was not finalized by the clock; last row: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        finalized.counts.tasks_total, 20,
        "every event counted before the day closed"
    );

    // An event of the finalized day, within the lateness of the partition's watermark: only
    // the clock makes it late.
    produce(&producer, &topic, &[event(20, day_end - 60_000)]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let diverted = loop {
        let late = read_topic(&broker, &late_topic, Duration::from_secs(10));
        if let Some(m) = late.first() {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "the event was not diverted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let reason = diverted
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == kafka_io::header::CLASS))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).to_string());
    assert_eq!(reason.as_deref(), Some("day_final"));
    assert_eq!(
        schemas::codec::Decoder::<TaskEvent>::new()
            .decode_sync(diverted.payload().unwrap())
            .unwrap()
            .event_id,
        "clock-20"
    );
    assert!(aggregator.terminate(), "the aggregator exits cleanly on SIGTERM");
    let after = row(&store, day).await.unwrap();
    assert_eq!(
        (after.counts.tasks_total, after.is_final),
        (20, true),
        "the final row is unchanged"
    );
}
