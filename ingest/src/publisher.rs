//! [`Publisher`]: publishing `TaskEvent`s from a library caller, validated first.

use schemas::TaskEvent;

use crate::producer::{Role, TaskEventProducer, WhenFull};
use crate::Result;

/// Publishes valid `TaskEvent`s through the one [`TaskEventProducer`] (Avro in the configured
/// wire format, keyed by series, idempotent `acks=all`).
pub struct Publisher {
    producer: TaskEventProducer,
    max_future_skew_ms: i64,
}

impl Publisher {
    /// A publisher for the configured task-events topic; registers the schema first when a
    /// registry is configured.
    pub async fn new(settings: &settings::Settings) -> Result<Publisher> {
        Ok(Publisher {
            producer: TaskEventProducer::new(settings, Role::Publisher).await?,
            max_future_skew_ms: settings.events.max_future_skew_ms(),
        })
    }

    /// Validates one event ([`schemas::validation`], `completed_at` at most
    /// `events.max_future_skew_secs` ahead of the clock), publishes it and waits until the
    /// broker acknowledged it.
    pub async fn publish(&self, event: &TaskEvent) -> Result<()> {
        self.publish_all(std::slice::from_ref(event))
            .await
            .pop()
            .expect("one outcome per event")
    }

    /// Validates every event, publishes the valid ones and waits for their acknowledgements;
    /// one result per event, in order.
    pub async fn publish_all(&self, events: &[TaskEvent]) -> Vec<Result<()>> {
        let now = schemas::time::now_ms();
        let records = events.iter().map(|event| {
            schemas::validation::validate(event)?;
            schemas::validation::validate_not_future(event.completed_at, now, self.max_future_skew_ms)?;
            self.producer.record(event)
        });
        self.producer.send(records, WhenFull::Wait).await
    }
}
