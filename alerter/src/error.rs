//! The alerter's error type.

/// An alerter failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka client or delivery.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kafka adapter.
    #[error(transparent)]
    KafkaIo(#[from] kafka_io::Error),
    /// The store.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// A checkpoint's state does not parse.
    #[error("corrupt checkpoint of partition {partition}: {message}")]
    CorruptCheckpoint {
        /// The partition.
        partition: i32,
        /// The parser's message.
        message: String,
    },
    /// Stopped while a delivery was still being retried (nothing was checkpointed past it).
    #[error("stopped before the notifications were delivered")]
    Stopped,
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
