use thiserror::Error;

/// A scorer failure.
#[derive(Debug, Error)]
pub enum Error {
    /// The model set (manifest or ONNX files) is missing, malformed or inconsistent.
    #[error("model set {dir}: {message}")]
    Model {
        /// The model directory.
        dir: String,
        /// What is wrong, naming the file or manifest key.
        message: String,
    },
    /// ONNX Runtime failed to load or run.
    #[error("onnx runtime: {0}")]
    Ort(String),
    /// An offline-mode input does not parse.
    #[error("{path}:{line}: {message}")]
    Input {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Topic creation and other adapter failures.
    #[error(transparent)]
    KafkaIo(#[from] kafka_io::Error),
    /// An output was not delivered.
    #[error("delivery: {0}")]
    Delivery(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// An output could not be encoded.
    #[error(transparent)]
    Encode(#[from] schemas::EncodeError),
    /// The configuration does not fit the model set.
    #[error("config {key}: {message}")]
    Config {
        /// The settings key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Ort(e.to_string())
    }
}

/// Result of the scorer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
