//! The scorer: scores `KpiWindow`s with an LSTM and a Transformer autoencoder in ONNX Runtime,
//! combines both into one ensemble score and publishes an `Anomaly` verdict for every scored
//! window (flagged ones are also stored for the dashboard).
//!
//! # Layout
//! - [`detector`]: per-series baselines, count-aware evidence per KPI and its CUSUM, the
//!   statistical member, expected values and ranges (pure).
//! - [`features`]: the model input of a window: the detector's evidence (pure).
//! - [`buffer`]: a series' detector and last windows, gap filling and revisions (pure).
//! - [`scoring`]: reconstruction errors, calibration, ensemble and feature contributions (pure).
//! - [`evaluation`]: the protocol a detector is judged by (pure).
//! - [`tuning`]: thresholds and ensemble weights on a tuning set, the evaluation table (pure).
//! - [`manifest`]: the model set's manifest and its checks.
//! - [`models`]: the ONNX Runtime adapter: both sessions of a model set, batched inference.
//! - [`offline`]: KPI windows from a CSV through the detector and the models.
//! - [`assess`]: `scorer tune` and `scorer evaluate` over data set directories.
//! - [`service`]: the Kafka edge: consume windows, score in batches, publish and store.
//! - [`metrics`]: Prometheus metrics and the health endpoints.
#![deny(missing_docs)]

pub mod assess;
pub mod buffer;
pub mod detector;
mod error;
pub mod evaluation;
pub mod features;
pub mod latency;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod offline;
pub mod scoring;
pub mod service;
pub mod tuning;

pub use error::{Error, Result};
