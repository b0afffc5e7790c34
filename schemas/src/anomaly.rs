//! [`Anomaly`]: the scorer's verdict on one KPI window.

use std::sync::LazyLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::{parse_embedded, AvroRecord, ID_NAMESPACE};

const SCHEMA_TEXT: &str = include_str!("../avro/anomaly.avsc");
static SCHEMA: LazyLock<Schema> = LazyLock::new(|| parse_embedded(SCHEMA_TEXT));

/// How much one KPI feature contributed to a window's reconstruction error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    /// Feature name from the model manifest (e.g. `success_rate`).
    pub feature: String,
    /// Share of the ensemble error (0..=1).
    pub contribution: f64,
}

/// The scorer's verdict on one KPI window (schema `avro/anomaly.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Deterministic: [`Anomaly::id_for`] of window id and model version.
    pub anomaly_id: String,
    /// The scored window.
    pub window_id: String,
    /// Tenant of the series.
    pub tenant_id: String,
    /// Agent of the series.
    pub agent_id: String,
    /// Window start (epoch ms).
    pub window_start: i64,
    /// Window end (epoch ms).
    pub window_end: i64,
    /// Raw LSTM autoencoder reconstruction error.
    pub lstm_score: f64,
    /// Raw Transformer autoencoder reconstruction error.
    pub transformer_score: f64,
    /// LSTM score on the common calibrated scale.
    pub lstm_normalized: f64,
    /// Transformer score on the common calibrated scale.
    pub transformer_normalized: f64,
    /// Weighted combination of the normalized scores.
    pub ensemble_score: f64,
    /// Decision threshold applied to the ensemble score.
    pub threshold: f64,
    /// Whether `ensemble_score >= threshold`.
    pub is_anomaly: bool,
    /// Features that contributed most, largest first.
    pub top_features: Vec<FeatureContribution>,
    /// Version of the model set that scored the window.
    pub model_version: String,
    /// When it was scored (epoch ms).
    pub scored_at: i64,
}

impl Anomaly {
    /// The deterministic id of the verdict of `model_version` on `window_id` (revision included
    /// in the window id's caller when windows are re-emitted).
    pub fn id_for(window_id: &str, revision: i32, model_version: &str) -> String {
        let name = format!("{window_id}\u{1f}{revision}\u{1f}{model_version}");
        uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
    }
}

impl AvroRecord for Anomaly {
    const FULL_NAME: &'static str = "ai.agentops.v1.Anomaly";

    fn schema() -> &'static Schema {
        &SCHEMA
    }

    fn schema_text() -> &'static str {
        SCHEMA_TEXT
    }
}
