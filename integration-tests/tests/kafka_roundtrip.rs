//! TaskEvents produced to Tansu through rdkafka in each wire format (Avro single-object, and
//! Confluent framing with a schema-registry **test double**) come back exactly as sent, once
//! each, through a consumer group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use integration_tests::{unique_topic, TansuBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use schemas::codec::{Decoder, Encoder};
use schemas::registry::Registry;
use schemas::{AvroRecord, TaskEvent, TaskStatus};
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn events(n: usize, tag: &str) -> Vec<TaskEvent> {
    (0..n)
        .map(|i| {
            let mut e = TaskEvent::example();
            e.event_id = format!("{tag}-{i}");
            e.task_id = format!("task-{i}");
            e.agent_id = format!("agent-{}", i % 7);
            e.status = TaskStatus::ALL[i % 3];
            e.human_interventions = (i % 4) as i32;
            e.completed_at += i as i64;
            e.cost_micros = i as i64 * 17;
            e
        })
        .collect()
}

async fn registry_test_double() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/subjects/.+-value/versions$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 5 })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/schemas/ids/5$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "schema": TaskEvent::schema_text() })))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_round_trip_in_both_wire_formats() {
    let broker = TansuBroker::start();
    let topic = unique_topic("roundtrip");
    broker.create_topic(&topic, 4).await;
    let registry_double = registry_test_double().await;
    let registry = Arc::new(Registry::new(&registry_double.uri()));

    let single = events(300, "so");
    let confluent = events(300, "cf");
    let producer: FutureProducer = broker
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let so_encoder = Encoder::<TaskEvent>::single_object();
    let schema_id = registry.register::<TaskEvent>(&topic).await.unwrap();
    let cf_encoder = Encoder::<TaskEvent>::confluent(schema_id);
    let mut sends = Vec::new();
    for (event, encoder) in single
        .iter()
        .map(|e| (e, &so_encoder))
        .chain(confluent.iter().map(|e| (e, &cf_encoder)))
    {
        let payload = encoder.encode(event).unwrap();
        let key = event.series_key();
        let producer = producer.clone();
        let topic = topic.clone();
        sends.push(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
    }
    for result in futures::future::join_all(sends).await {
        result.expect("broker acknowledged");
    }

    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let decoder = Decoder::<TaskEvent>::with_registry(registry);
    let mut received: BTreeMap<String, (TaskEvent, usize)> = BTreeMap::new();
    let expected = single.len() + confluent.len();
    let mut stream = consumer.stream();
    let mut count = 0;
    while count < expected {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("all records arrive within 60 s")
            .unwrap()
            .unwrap();
        let event = decoder.decode(message.payload().unwrap()).await.unwrap();
        assert_eq!(
            message.key().unwrap(),
            event.series_key().as_bytes(),
            "keyed by series"
        );
        received.entry(event.event_id.clone()).or_insert((event, 0)).1 += 1;
        count += 1;
    }
    // Nothing more arrives (no duplicates).
    assert!(tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .is_err());
    assert!(
        received.values().all(|(_, n)| *n == 1),
        "every record exactly once"
    );
    let got: Vec<TaskEvent> = received.into_values().map(|(e, _)| e).collect();
    let mut want: Vec<TaskEvent> = single.into_iter().chain(confluent).collect();
    want.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(got, want);
}
