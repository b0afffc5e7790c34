//! Getting task events into the pipeline, and realistic data to test it with.
//!
//! - [`producer::TaskEventProducer`]: the one Kafka producer of task events (Avro in the
//!   configured wire format, keyed by series, idempotent `acks=all`); every publishing path
//!   below goes through it.
//! - [`publisher::Publisher`]: publishing from a library caller, validated first
//!   ([`schemas::validation`]).
//! - [`gateway`]: the HTTP gateway (warp) with per-tenant API keys ([`api_key`]), in
//!   `gateway/` (handler, response, sink, metrics); [`otlp`]: its OpenTelemetry traces route
//!   (GenAI agent spans -> task events).
//! - [`generator`]: the deterministic workload generator with labelled incidents (pure), and
//!   its sinks: [`generator::KafkaSink`] and [`generator::http_sink`] (the gateway).
//! - [`truth`]: exact daily metrics of a set of events, the reference for every later stage.
//! - [`dataset`]: a generated data set on disk (events as JSON lines, incident labels, ground
//!   truth, manifest).
#![deny(missing_docs)]

pub mod api_key;
pub mod dataset;
pub mod gateway;
pub mod generator;
pub mod otlp;
pub mod producer;
pub mod publisher;
pub mod truth;

/// A publishing failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the producer or a topic failed.
    #[error(transparent)]
    Kafka(#[from] kafka_io::Error),
    /// The broker did not acknowledge a record.
    #[error("broker did not acknowledge: {0}")]
    Delivery(rdkafka::error::KafkaError),
    /// The producer's queue is full (a caller that does not wait backs off).
    #[error("the producer's queue is full")]
    QueueFull,
    /// Encoding or schema registration failed.
    #[error(transparent)]
    Encode(#[from] schemas::EncodeError),
    /// Talking to the HTTP gateway failed.
    #[error("http: {0}")]
    Http(String),
    /// The store (API keys) failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The event breaks a field rule; nothing was published.
    #[error("invalid event: {0}")]
    Invalid(#[from] schemas::validation::ValidationError),
    /// Writing or reading a data set failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A data-set file holds something else than expected.
    #[error("{path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
