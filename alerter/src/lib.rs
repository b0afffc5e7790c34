//! The alerter: consumes the scorer's anomaly verdicts and turns them into alerts for people.
//! Consecutive flagged windows of a series become one alert per (tenant, agent, driving KPI),
//! resolved after a quiet period in event time; alerts go to Alertmanager (API v2, re-sent
//! while open), to signed generic webhooks and to PagerDuty Events v2; alert state and input
//! offsets are checkpointed together, so a crash neither loses nor duplicates an incident.
//!
//! # Layout
//! - [`grouping`]: the pure state machine ([`grouping::AlertBook`]): open, update, resolve.
//! - [`alertmanager`], [`webhook`], [`pagerduty`]: the payloads (pure), the webhook signature.
//! - [`retry`]: which answers are retried, and the backoff.
//! - [`receivers`]: the HTTP client delivering an [`receivers::Outbox`].
//! - [`service`]: the handler the shared consumer worker ([`kafka_io::worker`]) runs: verdicts
//!   into the books, the checkpoint steps (notifications, books with offsets).
//! - [`metrics`]: `/metrics` (served with `/healthz`, `/readyz` by `ops`).
//!
//! # Example
//! ```
//! use alerter::grouping::{AlertBook, GroupingConfig};
//! let config = GroupingConfig { quiet_ms: 3_600_000, critical_ratio: 2.0 };
//! let mut book = AlertBook::default();
//! # let verdict: schemas::Anomaly = serde_json::from_value(serde_json::json!({
//! #   "anomaly_id": "x", "window_id": "w", "tenant_id": "acme", "agent_id": "a1",
//! #   "window_start": 0, "window_end": 900000, "lstm_score": 0.0, "transformer_score": 0.0,
//! #   "lstm_normalized": 0.0, "transformer_normalized": 0.0, "ensemble_score": 3.0,
//! #   "threshold": 1.0, "is_anomaly": true, "top_features": [], "model_version": "m",
//! #   "scored_at": 0})).unwrap();
//! let changes = book.observe(&config, &verdict); // a flagged verdict opens an alert
//! assert_eq!(changes.len(), 1);
//! ```
#![deny(missing_docs)]

pub mod alertmanager;
mod error;
pub mod grouping;
pub mod metrics;
pub mod pagerduty;
pub mod receivers;
pub mod retry;
pub mod service;
pub mod webhook;

pub use error::{Error, Result};
