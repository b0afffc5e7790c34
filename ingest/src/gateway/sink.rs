//! Where the gateway's accepted events go: the [`EventSink`] seam, and [`KafkaEventSink`] over
//! the one [`TaskEventProducer`].

use async_trait::async_trait;
use schemas::TaskEvent;
use warp::http::StatusCode;

use crate::producer::{Role, TaskEventProducer, WhenFull};

/// Why the sink did not deliver an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The producer queue is full: back off.
    QueueFull,
    /// The broker did not acknowledge (down, timeout, error).
    Unavailable(String),
}

impl SinkError {
    /// The machine-readable reason (the `failed` reason and the `cause` label).
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::QueueFull => "queue_full",
            SinkError::Unavailable(_) => "broker_unavailable",
        }
    }

    /// A sentence for the client.
    pub fn message(&self) -> String {
        match self {
            SinkError::QueueFull => "the gateway is saturated; retry later".to_string(),
            SinkError::Unavailable(m) => format!("not acknowledged by the broker: {m}"),
        }
    }

    /// The status of a request this failure ends, with its `Retry-After` in seconds: `429` after
    /// 1 s for a full queue, `503` after 5 s for a broker that did not acknowledge.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            SinkError::QueueFull => (StatusCode::TOO_MANY_REQUESTS, "1"),
            SinkError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "5"),
        }
    }

    /// The failure a request answers with: the first full queue, else the first broker
    /// failure.
    pub fn worst<'a>(failures: impl IntoIterator<Item = &'a SinkError>) -> Option<&'a SinkError> {
        let mut worst: Option<&SinkError> = None;
        for e in failures {
            match (worst, e) {
                (Some(SinkError::QueueFull), _) | (Some(_), SinkError::Unavailable(_)) => {}
                _ => worst = Some(e),
            }
        }
        worst
    }
}

impl From<crate::Error> for SinkError {
    fn from(e: crate::Error) -> SinkError {
        match e {
            crate::Error::QueueFull => SinkError::QueueFull,
            crate::Error::Delivery(e) => SinkError::Unavailable(e.to_string()),
            other => SinkError::Unavailable(other.to_string()),
        }
    }
}

/// Where accepted events go. Implemented by [`KafkaEventSink`]; tests of the HTTP surface use
/// a test double.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publishes the events in order; one outcome per event, `Ok` only once acknowledged.
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>>;
    /// Whether the broker is reachable.
    async fn ready(&self) -> bool;
}

/// The Kafka sink: the [`TaskEventProducer`] in its [`Role::Gateway`] (deliveries bounded by
/// `ingest.delivery_timeout_ms`), failing fast when its queue is full.
pub struct KafkaEventSink {
    producer: TaskEventProducer,
}

impl KafkaEventSink {
    /// A sink for the configured task-events topic.
    pub async fn new(settings: &settings::Settings) -> crate::Result<KafkaEventSink> {
        Ok(KafkaEventSink {
            producer: TaskEventProducer::new(settings, Role::Gateway).await?,
        })
    }
}

#[async_trait]
impl EventSink for KafkaEventSink {
    async fn publish(&self, events: &[TaskEvent]) -> Vec<Result<(), SinkError>> {
        self.producer
            .publish(events, WhenFull::Fail)
            .await
            .into_iter()
            .map(|outcome| outcome.map_err(SinkError::from))
            .collect()
    }

    async fn ready(&self) -> bool {
        self.producer.ready().await
    }
}
