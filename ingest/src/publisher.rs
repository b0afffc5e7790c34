//! [`Publisher`]: the typed producer of `TaskEvent`s.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::codec::Encoder;
use schemas::TaskEvent;

use crate::{Error, Result};

/// The `TaskEvent` encoder of the configured wire format: Confluent framing with the schema
/// registered under the task-events topic when a registry is configured, Avro single-object
/// encoding otherwise. Every publishing path (publisher, gateway, generator) uses it.
pub async fn task_event_encoder(settings: &settings::Settings) -> Result<Encoder<TaskEvent>> {
    Ok(kafka_io::codec::Codecs::from_settings(&settings.schema_registry)
        .encoder::<TaskEvent>(&settings.kafka.topics.task_events)
        .await?)
}

/// Publishes valid `TaskEvent`s, Avro-encoded (Confluent framing when a registry is configured,
/// single-object encoding otherwise), keyed by series, with an idempotent `acks=all` producer.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    encoder: Arc<Encoder<TaskEvent>>,
    max_future_skew_ms: i64,
}

impl Publisher {
    /// A publisher for the configured task-events topic; registers the schema first when a
    /// registry is configured.
    pub async fn new(settings: &settings::Settings) -> Result<Publisher> {
        let topic = settings.kafka.topics.task_events.clone();
        let encoder = task_event_encoder(settings).await?;
        let producer = kafka_io::producer_config(&settings.kafka, "ingest")
            .create()
            .map_err(kafka_io::Error::from)?;
        Ok(Publisher {
            producer,
            topic,
            encoder: Arc::new(encoder),
            max_future_skew_ms: settings.events.max_future_skew_ms(),
        })
    }

    /// Validates one event ([`schemas::validation`], `completed_at` at most
    /// `events.max_future_skew_secs` ahead of the clock), publishes it and waits until the
    /// broker acknowledged it.
    pub async fn publish(&self, event: &TaskEvent) -> Result<()> {
        schemas::validation::validate(event)?;
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        schemas::validation::validate_not_future(event.completed_at, now, self.max_future_skew_ms)?;
        let payload = self.encoder.encode(event)?;
        let key = event.series_key();
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| Error::Delivery(e))
    }

    /// Publishes all events concurrently; one result per event, in order.
    pub async fn publish_all(&self, events: &[TaskEvent]) -> Vec<Result<()>> {
        futures::future::join_all(events.iter().map(|e| self.publish(e))).await
    }
}
