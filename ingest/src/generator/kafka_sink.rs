//! The generator's Kafka sink.

use crate::generator::{Emitted, Record};
use crate::producer::{Role, TaskEventProducer, WhenFull};
use crate::Result;

/// Publishes generated records as they are, poison included (invalid events Avro-encoded,
/// garbage as raw bytes), keyed by series, through the one [`TaskEventProducer`] in its
/// [`Role::Generator`]; waits while the producer's queue is full. Unlike
/// [`crate::publisher::Publisher`] it does not validate: injecting poison is its job.
pub struct KafkaSink {
    producer: TaskEventProducer,
}

impl KafkaSink {
    /// A sink for the configured task-events topic.
    pub async fn new(settings: &settings::Settings) -> Result<KafkaSink> {
        Ok(KafkaSink {
            producer: TaskEventProducer::new(settings, Role::Generator).await?,
        })
    }

    /// Publishes a batch in order and waits for every acknowledgement; the first failure.
    pub async fn send(&self, batch: &[Emitted]) -> Result<()> {
        let records = batch
            .iter()
            .map(|e| match &e.record {
                Record::Event(event) | Record::Invalid { event, .. } => self.producer.record(event),
                Record::Garbage(bytes) => Ok(("garbage".to_string(), bytes.clone())),
            })
            .collect::<Result<Vec<_>>>()?;
        self.producer
            .send(records.into_iter().map(Ok), WhenFull::Wait)
            .await
            .into_iter()
            .collect()
    }
}
