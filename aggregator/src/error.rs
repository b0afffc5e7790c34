use thiserror::Error;

/// An aggregator failure. Any of these stops the service: it restarts from its last checkpoint,
/// which is always consistent with what was written.
#[derive(Debug, Error)]
pub enum Error {
    /// Kafka failed (client creation, subscription, delivery of an output).
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Topic creation and other adapter failures.
    #[error(transparent)]
    KafkaIo(#[from] kafka_io::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A checkpoint in the store does not parse.
    #[error("checkpoint of partition {partition} is corrupt: {message}")]
    CorruptCheckpoint {
        /// The partition.
        partition: i32,
        /// What is wrong.
        message: String,
    },
    /// An output could not be encoded.
    #[error(transparent)]
    Encode(#[from] schemas::EncodeError),
    /// A stored digest does not parse.
    #[error(transparent)]
    Digest(#[from] schemas::kpi::DigestError),
}

/// Result of the aggregator.
pub type Result<T, E = Error> = std::result::Result<T, E>;
