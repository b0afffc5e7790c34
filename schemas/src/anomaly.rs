//! [`Anomaly`]: the scorer's verdict on one KPI window.

use std::sync::LazyLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::{parse_embedded, AvroRecord, ID_NAMESPACE};

const SCHEMA_TEXT: &str = include_str!("../avro/anomaly.avsc");
const SCHEMA_V1_TEXT: &str = include_str!("../avro/anomaly.v1.avsc");
/// The current schema first, then the older versions records may have been written with.
static SCHEMAS: LazyLock<[Schema; 2]> =
    LazyLock::new(|| [parse_embedded(SCHEMA_TEXT), parse_embedded(SCHEMA_V1_TEXT)]);

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
    /// The statistical member's score (largest per-KPI CUSUM); `None` in records written
    /// before it existed.
    #[serde(default)]
    pub statistical_score: Option<f64>,
    /// The KPIs with accumulated evidence, most first, each next to what is normal for the
    /// series.
    #[serde(default)]
    pub explanation: Vec<KpiExplanation>,
}

/// One KPI of a window next to what is normal for its series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiExplanation {
    /// `success_rate`, `intervention_rate`, `latency_p50_ms`, `latency_p95_ms`,
    /// `cost_per_task_micros` or `tasks`.
    pub kpi: String,
    /// The window's value.
    pub observed: f64,
    /// The series' baseline for this window.
    pub expected: f64,
    /// Lower end of the normal range for a window of this size.
    pub low: f64,
    /// Upper end of the normal range.
    pub high: f64,
    /// Accumulated evidence of this KPI, in standard deviations.
    pub evidence: f64,
}

impl KpiExplanation {
    /// One line for people: `success_rate 0.52, expected 0.86 (0.79-0.93)`.
    pub fn sentence(&self) -> String {
        let rate = self.kpi.ends_with("_rate");
        let v = |x: f64| {
            if rate {
                format!("{x:.2}")
            } else {
                format!("{x:.0}")
            }
        };
        format!(
            "{} {}, expected {} ({}-{})",
            self.kpi,
            v(self.observed),
            v(self.expected),
            v(self.low),
            v(self.high)
        )
    }
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
        &SCHEMAS[0]
    }

    fn schema_text() -> &'static str {
        SCHEMA_TEXT
    }

    fn writer_schemas() -> &'static [Schema] {
        &SCHEMAS[..]
    }
}

/// The first published version of the `Anomaly` schema (without the statistical score and the
/// explanation), for compatibility tests.
pub fn schema_v1() -> &'static Schema {
    &SCHEMAS[1]
}
