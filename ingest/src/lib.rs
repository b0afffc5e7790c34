//! Publishing task events to Kafka.
//!
//! Built so far: [`publisher::Publisher`], the typed producer every publishing path uses (Avro
//! in the configured wire format, keyed by series, idempotent `acks=all`). To come (issue 3):
//! validation, the HTTP gateway and the workload generator.
#![deny(missing_docs)]

pub mod publisher;

/// A publishing failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the producer or a topic failed.
    #[error(transparent)]
    Kafka(#[from] kafka_io::Error),
    /// The broker did not acknowledge a record.
    #[error("broker did not acknowledge: {0}")]
    Delivery(rdkafka::error::KafkaError),
    /// Encoding or schema registration failed.
    #[error(transparent)]
    Encode(#[from] schemas::EncodeError),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
