//! [`TaskEventProducer`]: the one Kafka producer of `TaskEvent`s. Every publishing path goes
//! through it: the gateway's JSON and OTLP routes ([`crate::gateway::KafkaEventSink`]), the
//! validating [`crate::publisher::Publisher`] and the generator's `--to kafka` sink
//! ([`crate::generator::KafkaSink`]). They differ only in their [`Role`] (client id and the
//! few producer settings tuned for it) and in what they do when the queue is full
//! ([`WhenFull`]).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use schemas::codec::Encoder;
use schemas::TaskEvent;

use crate::{Error, Result};

/// The `TaskEvent` encoder of the configured wire format: Confluent framing with the schema
/// registered under the task-events topic when a registry is configured, Avro single-object
/// encoding otherwise.
pub async fn task_event_encoder(settings: &settings::Settings) -> Result<Encoder<TaskEvent>> {
    Ok(kafka_io::codec::Codecs::from_settings(&settings.schema_registry)
        .encoder::<TaskEvent>(&settings.kafka.topics.task_events)
        .await?)
}

/// Which publishing path a producer serves; each is an idempotent `acks=all` producer
/// ([`kafka_io::producer_config`]) with these differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP gateway: a delivery gives up after `ingest.delivery_timeout_ms` (the client is
    /// waiting) and the queue holds 200,000 records.
    Gateway,
    /// The workload generator's bulk load: batches linger 20 ms.
    Generator,
    /// A library caller ([`crate::publisher::Publisher`]): the defaults.
    Publisher,
}

impl Role {
    fn client_id(self) -> &'static str {
        match self {
            Role::Gateway => "ingest-gateway",
            Role::Generator => "ingest-gen",
            Role::Publisher => "ingest",
        }
    }

    fn config(self, settings: &settings::Settings) -> rdkafka::ClientConfig {
        let mut config = kafka_io::producer_config(&settings.kafka, self.client_id());
        match self {
            Role::Gateway => config
                .set(
                    "message.timeout.ms",
                    settings.ingest.delivery_timeout_ms.to_string(),
                )
                .set("queue.buffering.max.messages", "200000"),
            Role::Generator => config.set("linger.ms", "20"),
            Role::Publisher => &mut config,
        };
        config
    }
}

/// What [`TaskEventProducer::send`] does when the producer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Fail this record and every later one of the call with [`Error::QueueFull`] (the gateway:
    /// its client backs off and retries).
    Fail,
    /// Wait (5 ms at a time) for deliveries to drain the queue (bulk loads).
    Wait,
}

/// The one producer of `TaskEvent`s on the configured task-events topic: Avro in the configured
/// wire format, keyed by series.
pub struct TaskEventProducer {
    producer: FutureProducer,
    topic: String,
    encoder: Encoder<TaskEvent>,
}

impl TaskEventProducer {
    /// A producer for `role`; registers the schema first when a registry is configured.
    pub async fn new(settings: &settings::Settings, role: Role) -> Result<TaskEventProducer> {
        let encoder = task_event_encoder(settings).await?;
        let producer = role.config(settings).create().map_err(kafka_io::Error::from)?;
        Ok(TaskEventProducer {
            producer,
            topic: settings.kafka.topics.task_events.clone(),
            encoder,
        })
    }

    /// The record of one event: its series key and its encoded payload.
    pub fn record(&self, event: &TaskEvent) -> Result<(String, Vec<u8>)> {
        Ok((event.series_key(), self.encoder.encode(event)?))
    }

    /// Publishes `events` in order and waits for every acknowledgement; one outcome per event,
    /// `Ok` only once the broker acknowledged it. An event that cannot be encoded fails alone.
    pub async fn publish(&self, events: &[TaskEvent], when_full: WhenFull) -> Vec<Result<()>> {
        let records: Vec<Result<(String, Vec<u8>)>> = events.iter().map(|e| self.record(e)).collect();
        self.send(records, when_full).await
    }

    /// Sends `(key, payload)` records as they are (the generator's poison included) in order
    /// and waits for every acknowledgement; one outcome per record. An `Err` record is passed
    /// through as its outcome.
    pub async fn send(
        &self,
        records: impl IntoIterator<Item = Result<(String, Vec<u8>)>>,
        when_full: WhenFull,
    ) -> Vec<Result<()>> {
        let mut pending: Vec<Result<DeliveryFuture>> = Vec::new();
        let mut full = false;
        for record in records {
            let enqueued = match record {
                Err(e) => Err(e),
                Ok(_) if full => Err(Error::QueueFull),
                Ok((key, payload)) => {
                    let enqueued = self.enqueue(&key, &payload, when_full).await;
                    full = matches!(enqueued, Err(Error::QueueFull));
                    enqueued
                }
            };
            pending.push(enqueued);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        for p in pending {
            outcomes.push(match p {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(Error::Delivery(e)),
                    Err(_) => Err(Error::Delivery(KafkaError::Canceled)),
                },
                Err(e) => Err(e),
            });
        }
        outcomes
    }

    async fn enqueue(&self, key: &str, payload: &[u8], when_full: WhenFull) -> Result<DeliveryFuture> {
        loop {
            match self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(key).payload(payload))
            {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => match when_full {
                    WhenFull::Fail => return Err(Error::QueueFull),
                    WhenFull::Wait => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                Err((e, _)) => return Err(Error::Delivery(e)),
            }
        }
    }

    /// Whether the broker answers with the task-events topic and its partitions (2 s at most).
    pub async fn ready(&self) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                })
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::gateway::{EventSink as _, KafkaEventSink, SinkError};

    fn settings(brokers: &str) -> settings::Settings {
        let mut s = settings::Settings::load(None, &Default::default()).expect("defaults");
        s.kafka.brokers = brokers.to_string();
        s
    }

    fn events(n: usize) -> Vec<TaskEvent> {
        (0..n)
            .map(|i| {
                let mut e = TaskEvent::example();
                e.event_id = format!("e{i}");
                e
            })
            .collect()
    }

    #[tokio::test]
    async fn every_record_is_acknowledged_and_a_record_that_failed_before_sending_stays_failed() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let s = settings(&cluster.bootstrap_servers());
        cluster
            .create_topic(&s.kafka.topics.task_events, 2, 1)
            .expect("topic");
        let producer = TaskEventProducer::new(&s, Role::Generator).await.unwrap();
        let outcomes = producer.publish(&events(5), WhenFull::Wait).await;
        assert_eq!(outcomes.len(), 5);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let records = vec![
            Ok(("garbage".to_string(), b"not avro".to_vec())),
            Err(Error::QueueFull),
            producer.record(&events(1)[0]),
        ];
        let outcomes = producer.send(records, WhenFull::Wait).await;
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        assert!(matches!(outcomes[1], Err(Error::QueueFull)));
        assert!(producer.ready().await);
    }

    #[tokio::test]
    async fn the_gateway_sink_reports_an_unreachable_broker_per_event() {
        // Nothing listens on port 1; deliveries give up after the gateway's delivery timeout.
        let mut s = settings("127.0.0.1:1");
        s.ingest.delivery_timeout_ms = 200;
        let sink = KafkaEventSink::new(&s).await.unwrap();
        let outcomes = sink.publish(&events(3)).await;
        assert_eq!(outcomes.len(), 3);
        for outcome in outcomes {
            let Err(e @ SinkError::Unavailable(_)) = outcome else {
                panic!("{outcome:?}");
            };
            assert_eq!(e.reason(), "broker_unavailable");
            assert!(e.message().starts_with("not acknowledged by the broker: "));
        }
    }
}
