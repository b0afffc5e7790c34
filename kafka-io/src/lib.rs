//! The rdkafka adapters every service shares, so that each client is configured the same way:
//!
//! - [`producer_config`]: idempotent, `acks=all` producers (accepted means durable).
//! - [`consumer_config`]: consumer-group members that never auto-commit or auto-store offsets
//!   (offsets are stored only after the write that covers them) and join groups fast.
//! - [`ensure_topics`]: creates the pipeline's topics if missing.
//! - [`dead_letter_headers`]: the Kafka Connect (KIP-298) style headers of a dead-lettered record.
#![deny(missing_docs)]

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::ClientConfig;

/// A Kafka adapter failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be created or a request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating a topic failed.
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings shared by every client.
pub fn base_config(kafka: &settings::Kafka, role: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", format!("{}-{role}", kafka.client_id))
        .set("log_level", "4");
    config
}

/// An idempotent producer: `acks=all`, retries without duplicates or reordering.
pub fn producer_config(kafka: &settings::Kafka, role: &str) -> ClientConfig {
    let mut config = base_config(kafka, role);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000");
    config
}

/// A consumer-group member that stores and commits offsets only when told to.
pub fn consumer_config(kafka: &settings::Kafka, role: &str, group: &str) -> ClientConfig {
    let mut config = base_config(kafka, role);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", kafka.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", kafka.heartbeat_interval_ms.to_string())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed");
    config
}

/// Creates `topics` with the configured partitions and replication; existing ones are kept.
pub async fn ensure_topics(kafka: &settings::Kafka, topics: &[&str]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(kafka, "admin").create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                kafka.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// Where a dead-lettered record came from and why it was rejected.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Stable error class (e.g. `malformed_avro`).
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
}

/// Header names of dead-lettered records (Kafka Connect's KIP-298 convention).
pub mod header {
    /// Source topic.
    pub const TOPIC: &str = "__connect.errors.topic";
    /// Source partition.
    pub const PARTITION: &str = "__connect.errors.partition";
    /// Source offset.
    pub const OFFSET: &str = "__connect.errors.offset";
    /// Error class.
    pub const CLASS: &str = "__connect.errors.exception.class.name";
    /// Error message.
    pub const MESSAGE: &str = "__connect.errors.exception.message";
}

/// The headers of a dead-lettered record; its key and value stay the original bytes.
pub fn dead_letter_headers(dl: &DeadLetter<'_>) -> OwnedHeaders {
    let partition = dl.partition.to_string();
    let offset = dl.offset.to_string();
    OwnedHeaders::new()
        .insert(Header {
            key: header::TOPIC,
            value: Some(dl.topic),
        })
        .insert(Header {
            key: header::PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: header::OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: header::CLASS,
            value: Some(dl.reason),
        })
        .insert(Header {
            key: header::MESSAGE,
            value: Some(dl.message),
        })
}
