//! The aggregator: consumes `TaskEvent`s, keeps event-time windows per tenant/agent, writes
//! daily metrics to the store and publishes `KpiWindow`s for the scorer, with exactly-once
//! effect across crashes, restarts and rebalances.
//!
//! # Layout
//! - [`engine`]: the pure core: windows, watermark, lateness, de-duplication, checkpointable
//!   state of one partition.
//! - [`daily`]: daily store rows and tenant roll-ups (merged digests).
//! - [`driver`]: the handler the shared consumer worker ([`kafka_io::worker`]) runs: records
//!   into the engine, the checkpoint steps (outputs, daily rows, state with offsets).
//! - [`metrics`]: Prometheus metrics and the health endpoints.
//! - [`recompute`]: the batch rebuild of a day range from the topic (folds in late events).
#![deny(missing_docs)]

pub mod daily;
pub mod driver;
pub mod engine;
mod error;
pub mod metrics;
pub mod recompute;

pub use error::{Error, Result};
