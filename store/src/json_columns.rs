//! The columns both backends store as JSON text: an anomaly's `top_features` and the
//! `explanation` of an anomaly or a KPI window's verdict.

use schemas::{FeatureContribution, KpiExplanation};

use crate::{Error, Result};

pub(crate) fn features_to_json(features: &[FeatureContribution]) -> String {
    serde_json::to_string(features).expect("feature contributions serialize")
}

pub(crate) fn features_from_json(text: &str) -> Result<Vec<FeatureContribution>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        column: "top_features",
        message: e.to_string(),
    })
}

pub(crate) fn explanation_to_json(explanation: &[KpiExplanation]) -> String {
    serde_json::to_string(explanation).expect("kpi explanations serialize")
}

pub(crate) fn explanation_from_json(text: &str) -> Result<Vec<KpiExplanation>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        column: "explanation",
        message: e.to_string(),
    })
}
