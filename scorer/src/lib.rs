//! The scorer: scores `KpiWindow`s with an LSTM and a Transformer autoencoder in ONNX Runtime,
//! combines both into one ensemble score and publishes an `Anomaly` verdict for every scored
//! window (flagged ones are also stored for the dashboard).
//!
//! # Layout
//! - [`features`]: the KPI feature vector of a window and its robust normalization (pure).
//! - [`buffer`]: the last windows of each series, gap filling and revisions (pure).
//! - [`scoring`]: reconstruction errors, calibration, ensemble and feature contributions (pure).
//! - [`manifest`]: the model set's manifest and its checks.
//! - [`models`]: the ONNX Runtime adapter: both sessions of a model set, batched inference.
//! - [`offline`]: scoring a CSV series (`timestamp,value,...`) with a model set.
//! - [`service`]: the Kafka edge: consume windows, score in batches, publish and store.
//! - [`metrics`]: Prometheus metrics and the health endpoints.
#![deny(missing_docs)]

pub mod buffer;
mod error;
pub mod features;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod offline;
pub mod scoring;
pub mod service;

pub use error::{Error, Result};
