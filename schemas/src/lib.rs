//! Event contracts of the pipeline: the Avro schemas (`avro/*.avsc`), the Rust types that match
//! them, and the two wire formats every producer and consumer speaks.
//!
//! This crate performs no I/O of its own except the optional schema-registry lookups
//! (feature `registry`); it has no Kafka, database or HTTP-server types.
//!
//! # Layout
//! - [`task_event`]: [`TaskEvent`], one finished agent task (the pipeline's input).
//! - [`kpi_window`]: [`KpiWindow`], the per-series window vector the aggregator publishes.
//! - [`kpi`]: the KPI formulas (success rate, intervention rate, cost per task) over
//!   [`kpi::Counts`], and [`kpi::LatencyDigest`], the mergeable latency sketch. Defined once,
//!   used by the aggregator, the scorer and the API.
//! - [`time`]: the clock in epoch ms, UTC days (`DAY_MS`, day indexes) and their
//!   `YYYY-MM-DD` text, defined once for every crate.
//! - [`validation`]: field checks beyond the schema, shared by every entry path.
//! - [`anomaly`]: [`Anomaly`], the scorer's verdict on a window.
//! - [`codec`]: Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint) and the
//!   Confluent frame (magic `0` + 4-byte schema id); [`codec::Decoder`] accepts both.
//! - [`fingerprint`]: the specification's Parsing Canonical Form and CRC-64-AVRO fingerprint
//!   (and the legacy fingerprint readers still accept).
//! - `registry` (feature `registry`): a Confluent schema-registry client built on
//!   `schema_registry_converter`.
//! - The CQL and SQL schemas (`cql/`, `sql/`) are the store migrations, embedded by the
//!   `store` crate.
//!
//! # Example
//! ```
//! use schemas::{codec::{Decoder, encode_single_object}, TaskEvent, TaskStatus};
//!
//! let event = TaskEvent::example();
//! let bytes = encode_single_object(&event).unwrap();
//! let decoder = Decoder::<TaskEvent>::new();
//! assert_eq!(decoder.decode_sync(&bytes).unwrap(), event);
//! ```
#![deny(missing_docs)]

pub mod anomaly;
pub mod codec;
mod error;
pub mod fingerprint;
pub mod kpi;
pub mod kpi_window;
#[cfg(feature = "registry")]
pub mod registry;
pub mod task_event;
pub mod time;
pub mod validation;

pub use anomaly::{Anomaly, FeatureContribution, KpiExplanation};
pub use error::{DecodeError, EncodeError};
pub use kpi_window::KpiWindow;
pub use task_event::{series_key, TaskEvent, TaskEventView, TaskStatus};

use apache_avro::Schema;

/// A Rust type that has an Avro schema in `avro/`.
pub trait AvroRecord: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The full name of the record (namespace + name), also the registry record name.
    const FULL_NAME: &'static str;
    /// The current (reader and writer) schema.
    fn schema() -> &'static Schema;
    /// The raw JSON text of the current schema.
    fn schema_text() -> &'static str;
    /// Every schema version this type was ever written with, the current one included.
    /// Decoders resolve data written with any of them into the current type.
    fn writer_schemas() -> &'static [Schema] {
        std::slice::from_ref(Self::schema())
    }
}

/// Parses one of the embedded `.avsc` files; they are compiled in, so failure is a build bug.
pub(crate) fn parse_embedded(text: &str) -> Schema {
    Schema::parse_str(text).expect("embedded .avsc must parse")
}

/// Namespace of the deterministic (UUID v5) ids of windows and anomalies.
pub const ID_NAMESPACE: uuid::Uuid = uuid::uuid!("6f1c2f0e-9d55-4c55-9b8e-5d8f6f0a7c11");
