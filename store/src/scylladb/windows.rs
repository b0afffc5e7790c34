//! Anomaly verdicts and KPI windows on ScyllaDB ([`WindowStore`]). Anomalies are partitioned by
//! tenant (a range read on window start); KPI windows by (tenant, UTC day), read a partition a
//! day ([`ScyllaStore::read_days`]) and written `USING TTL` the retention.

use async_trait::async_trait;
use schemas::time::{day_of_ms, now_ms};
use schemas::Anomaly;
use scylla::{DeserializeRow, SerializeRow};

use super::kpis::WithKpis;
use super::{markers, ScyllaStore};
use crate::json_columns::{explanation_from_json, explanation_to_json, features_from_json, features_to_json};
use crate::kpi_columns::kpi_columns;
use crate::model::{remaining_ttl_secs, WindowVerdict};
use crate::{AnomalyQuery, KpiWindowQuery, KpiWindowRow, Result, WindowStore};

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct AnomalyRow {
    tenant_id: String,
    window_start: i64,
    agent_id: String,
    anomaly_id: String,
    window_id: String,
    window_end: i64,
    lstm_score: f64,
    transformer_score: f64,
    lstm_normalized: f64,
    transformer_normalized: f64,
    ensemble_score: f64,
    threshold: f64,
    is_anomaly: bool,
    top_features: String,
    model_version: String,
    scored_at: i64,
    /// Null in rows written before migration 4 and when the statistical member did not score.
    statistical_score: Option<f64>,
    /// JSON array; null in rows written before migration 4.
    explanation: Option<String>,
}

impl AnomalyRow {
    fn new(a: &Anomaly) -> AnomalyRow {
        AnomalyRow {
            tenant_id: a.tenant_id.clone(),
            window_start: a.window_start,
            agent_id: a.agent_id.clone(),
            anomaly_id: a.anomaly_id.clone(),
            window_id: a.window_id.clone(),
            window_end: a.window_end,
            lstm_score: a.lstm_score,
            transformer_score: a.transformer_score,
            lstm_normalized: a.lstm_normalized,
            transformer_normalized: a.transformer_normalized,
            ensemble_score: a.ensemble_score,
            threshold: a.threshold,
            is_anomaly: a.is_anomaly,
            top_features: features_to_json(&a.top_features),
            model_version: a.model_version.clone(),
            scored_at: a.scored_at,
            statistical_score: a.statistical_score,
            explanation: Some(explanation_to_json(&a.explanation)),
        }
    }

    fn into_anomaly(self) -> Result<Anomaly> {
        Ok(Anomaly {
            top_features: features_from_json(&self.top_features)?,
            explanation: match &self.explanation {
                Some(json) => explanation_from_json(json)?,
                None => Vec::new(),
            },
            tenant_id: self.tenant_id,
            window_start: self.window_start,
            agent_id: self.agent_id,
            anomaly_id: self.anomaly_id,
            window_id: self.window_id,
            window_end: self.window_end,
            lstm_score: self.lstm_score,
            transformer_score: self.transformer_score,
            lstm_normalized: self.lstm_normalized,
            transformer_normalized: self.transformer_normalized,
            ensemble_score: self.ensemble_score,
            threshold: self.threshold,
            is_anomaly: self.is_anomaly,
            model_version: self.model_version,
            scored_at: self.scored_at,
            statistical_score: self.statistical_score,
        })
    }
}

/// A `kpi_windows` row: the KPIs ([`WithKpis`]), then these columns.
type WindowRow = WithKpis<WindowColumns>;

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct WindowColumns {
    tenant_id: String,
    day: i32,
    window_start: i64,
    agent_id: String,
    window_end: i64,
    revision: i32,
    lstm_score: Option<f64>,
    transformer_score: Option<f64>,
    statistical_score: Option<f64>,
    ensemble_score: Option<f64>,
    threshold: Option<f64>,
    is_anomaly: Option<bool>,
    model_version: Option<String>,
    explanation: Option<String>,
    updated_at: i64,
}

/// The UTC day (days since 1970-01-01) of an epoch-ms instant: the partition bucket of a window.
fn epoch_day(ms: i64) -> i32 {
    day_of_ms(ms) as i32
}

fn window_row(r: &KpiWindowRow) -> WindowRow {
    let v = r.verdict.as_ref();
    WithKpis {
        counts: r.counts,
        latency: r.latency,
        rest: WindowColumns {
            tenant_id: r.tenant_id.clone(),
            day: epoch_day(r.window_start),
            window_start: r.window_start,
            agent_id: r.agent_id.clone(),
            window_end: r.window_end,
            revision: r.revision,
            lstm_score: v.map(|v| v.lstm_score),
            transformer_score: v.map(|v| v.transformer_score),
            statistical_score: v.and_then(|v| v.statistical_score),
            ensemble_score: v.map(|v| v.ensemble_score),
            threshold: v.map(|v| v.threshold),
            is_anomaly: v.map(|v| v.is_anomaly),
            model_version: v.map(|v| v.model_version.clone()),
            explanation: v.map(|v| explanation_to_json(&v.explanation)),
            updated_at: r.updated_at_ms,
        },
    }
}

fn into_window(row: WindowRow) -> Result<KpiWindowRow> {
    let r = row.rest;
    let verdict = match r.ensemble_score {
        None => None,
        Some(ensemble_score) => Some(WindowVerdict {
            lstm_score: r.lstm_score.unwrap_or(f64::NAN),
            transformer_score: r.transformer_score.unwrap_or(f64::NAN),
            statistical_score: r.statistical_score,
            ensemble_score,
            threshold: r.threshold.unwrap_or(f64::NAN),
            is_anomaly: r.is_anomaly.unwrap_or(false),
            model_version: r.model_version.unwrap_or_default(),
            explanation: match &r.explanation {
                Some(json) => explanation_from_json(json)?,
                None => Vec::new(),
            },
        }),
    };
    Ok(KpiWindowRow {
        tenant_id: r.tenant_id,
        agent_id: r.agent_id,
        window_start: r.window_start,
        window_end: r.window_end,
        revision: r.revision,
        counts: row.counts,
        latency: row.latency,
        verdict,
        updated_at_ms: r.updated_at,
    })
}

/// The columns of [`WindowRow`], in its order.
const WINDOW_COLUMNS: &str = concat!(
    kpi_columns!(),
    ", tenant_id, day, window_start, agent_id, window_end, revision, lstm_score, transformer_score, \
     statistical_score, ensemble_score, threshold, is_anomaly, model_version, explanation, updated_at"
);
const ANOMALY_COLUMNS: &str = "tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
    lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
    is_anomaly, top_features, model_version, scored_at, statistical_score, explanation";
#[async_trait]
impl WindowStore for ScyllaStore {
    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()> {
        let statement = format!(
            "INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES ({})",
            markers(18)
        );
        self.write_each(&statement, rows.iter().map(AnomalyRow::new))
            .await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>> {
        let statement = format!(
            "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ? AND window_start >= ? AND window_start < ?"
        );
        let rows: Vec<AnomalyRow> = self
            .read_all(statement, (&query.tenant_id, query.from_ms, query.to_ms))
            .await?;
        rows.into_iter()
            .filter(|r| r.ensemble_score >= query.min_score && (!query.only_flagged || r.is_anomaly))
            .map(AnomalyRow::into_anomaly)
            .collect()
    }

    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()> {
        // The TTL is the retention, counted from the write: the writer stamps `updated_at` with
        // the time it writes (a bind marker for the TTL would be exact for any `updated_at`,
        // but the CQL test double does not parse one; one literal keeps one prepared statement).
        let statement = format!(
            "INSERT INTO kpi_windows ({WINDOW_COLUMNS}) VALUES ({}) USING TTL {}",
            markers(WINDOW_COLUMNS.split(',').count()),
            retention_secs.min(i32::MAX as u32)
        );
        let now = now_ms();
        let live = rows
            .iter()
            .filter(|r| remaining_ttl_secs(r.updated_at_ms, retention_secs, now).is_some());
        self.write_each(&statement, live.map(window_row)).await
    }

    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>> {
        if query.to_ms <= query.from_ms {
            return Ok(Vec::new());
        }
        let statement = format!("SELECT {WINDOW_COLUMNS} FROM kpi_windows WHERE tenant_id = ? AND day = ?");
        let days = epoch_day(query.from_ms)..=epoch_day(query.to_ms - 1);
        let rows: Vec<WindowRow> = self.read_days(&statement, &query.tenant_id, days).await?;
        let mut out = rows
            .into_iter()
            .filter(|r| {
                (query.from_ms..query.to_ms).contains(&r.rest.window_start)
                    && query.agent_id.as_ref().is_none_or(|a| *a == r.rest.agent_id)
            })
            .map(into_window)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (a.window_start, &a.agent_id).cmp(&(b.window_start, &b.agent_id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use schemas::{FeatureContribution, KpiExplanation};

    use super::*;
    use crate::migrations;
    use crate::scylladb::on_cql_test_double;
    use crate::{Error, SchemaStore};

    fn anomaly(agent: &str, statistical_score: Option<f64>, explanation: Vec<KpiExplanation>) -> Anomaly {
        Anomaly {
            anomaly_id: Anomaly::id_for(agent, 0, "m1"),
            window_id: format!("w-{agent}"),
            tenant_id: "acme".into(),
            agent_id: agent.into(),
            window_start: 900_000,
            window_end: 1_800_000,
            lstm_score: 0.3,
            transformer_score: 0.2,
            lstm_normalized: 4.5,
            transformer_normalized: 3.5,
            ensemble_score: 4.0,
            threshold: 3.0,
            is_anomaly: true,
            top_features: vec![FeatureContribution {
                feature: "success_rate".into(),
                contribution: 0.8,
            }],
            model_version: "m1".into(),
            scored_at: 1_801_000,
            statistical_score,
            explanation,
        }
    }

    fn explanation() -> Vec<KpiExplanation> {
        vec![
            KpiExplanation {
                kpi: "success_rate".into(),
                observed: 0.52,
                expected: 0.86,
                low: 0.79,
                high: 0.93,
                evidence: 7.25,
            },
            KpiExplanation {
                kpi: "latency_p95_ms".into(),
                observed: 2_400.0,
                expected: 900.5,
                low: 600.0,
                high: 1_201.0,
                evidence: 3.0,
            },
        ]
    }

    #[test]
    fn rows_without_the_columns_of_migration_4_read_back_empty() {
        let mut row = AnomalyRow::new(&anomaly("bot", Some(6.5), explanation()));
        assert_eq!(
            row.explanation
                .as_deref()
                .map(|j| explanation_from_json(j).unwrap()),
            Some(explanation())
        );
        row.statistical_score = None;
        row.explanation = None;
        let read = row.into_anomaly().unwrap();
        assert_eq!(read, anomaly("bot", None, Vec::new()));
        let mut corrupt = AnomalyRow::new(&anomaly("bot", None, Vec::new()));
        corrupt.explanation = Some("{not json".into());
        let err = corrupt.into_anomaly().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    column: "explanation",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The contract suite cannot read anomalies back on the CQL test double (their query is a
    /// range read): here they are read by partition (equality) and decoded as `anomalies` does.
    #[tokio::test]
    async fn the_cql_test_double_stores_the_statistical_score_and_explanation() {
        on_cql_test_double(|store| async move {
            let all: Vec<u32> = migrations::CQL.iter().map(|m| m.version).collect();
            assert_eq!(store.migrate().await.unwrap(), all);
            let with = anomaly("bot", Some(6.5), explanation());
            let without = anomaly("crm", None, Vec::new());
            store
                .upsert_anomalies(&[with.clone(), without.clone()])
                .await
                .unwrap();
            // A row as written before migration 4: only the columns of migration 1.
            let old = AnomalyRow::new(&anomaly("old", Some(1.0), explanation()));
            let old_columns = ANOMALY_COLUMNS
                .strip_suffix(", statistical_score, explanation")
                .unwrap();
            store
                .session
                .execute_unpaged(
                    format!("INSERT INTO anomalies ({old_columns}) VALUES ({})", markers(16)),
                    (
                        &old.tenant_id,
                        old.window_start,
                        &old.agent_id,
                        &old.anomaly_id,
                        &old.window_id,
                        old.window_end,
                        old.lstm_score,
                        old.transformer_score,
                        old.lstm_normalized,
                        old.transformer_normalized,
                        old.ensemble_score,
                        old.threshold,
                        old.is_anomaly,
                        &old.top_features,
                        &old.model_version,
                        old.scored_at,
                    ),
                )
                .await
                .unwrap();
            let rows: Vec<AnomalyRow> = store
                .read_all(
                    format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ?"),
                    ("acme",),
                )
                .await
                .unwrap();
            let mut read: Vec<Anomaly> = rows.into_iter().map(|r| r.into_anomaly().unwrap()).collect();
            read.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
            assert_eq!(read, vec![with, without, anomaly("old", None, Vec::new())]);
        })
        .await;
    }
}
