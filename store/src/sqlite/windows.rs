//! Anomaly verdicts and KPI windows on SQLite ([`WindowStore`]).

use async_trait::async_trait;
use rusqlite::params;
use schemas::time::now_ms;
use schemas::Anomaly;

use super::{kpis_at, with_kpis, KpiValues, SqliteStore};
use crate::json_columns::{explanation_from_json, explanation_to_json, features_from_json, features_to_json};
use crate::kpi_columns::kpi_columns;
use crate::model::{remaining_ttl_secs, WindowVerdict};
use crate::{AnomalyQuery, KpiWindowQuery, KpiWindowRow, Result, WindowStore};

const ANOMALY_COLUMNS: &str = "tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
    lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
    is_anomaly, top_features, model_version, scored_at, statistical_score, explanation";

const WINDOW_COLUMNS: &str = concat!(
    "tenant_id, window_start, agent_id, window_end, revision, ",
    kpi_columns!(),
    ", lstm_score, transformer_score, statistical_score, ensemble_score, threshold, is_anomaly, \
     model_version, explanation, updated_at"
);

/// A `kpi_windows` row and its explanation's JSON (decoded by the caller).
fn window_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(KpiWindowRow, Option<String>)> {
    let (counts, latency) = kpis_at(row, 5)?;
    let ensemble: Option<f64> = row.get(18)?;
    let verdict = match ensemble {
        None => None,
        Some(ensemble_score) => Some(WindowVerdict {
            lstm_score: row.get::<_, Option<f64>>(15)?.unwrap_or(f64::NAN),
            transformer_score: row.get::<_, Option<f64>>(16)?.unwrap_or(f64::NAN),
            statistical_score: row.get(17)?,
            ensemble_score,
            threshold: row.get::<_, Option<f64>>(19)?.unwrap_or(f64::NAN),
            is_anomaly: row.get::<_, Option<bool>>(20)?.unwrap_or(false),
            model_version: row.get::<_, Option<String>>(21)?.unwrap_or_default(),
            explanation: Vec::new(),
        }),
    };
    Ok((
        KpiWindowRow {
            tenant_id: row.get(0)?,
            window_start: row.get(1)?,
            agent_id: row.get(2)?,
            window_end: row.get(3)?,
            revision: row.get(4)?,
            counts,
            latency,
            verdict,
            updated_at_ms: row.get(23)?,
        },
        row.get(22)?,
    ))
}

#[async_trait]
impl WindowStore for SqliteStore {
    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()> {
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO anomalies ({ANOMALY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ))?;
                for a in &rows {
                    stmt.execute(params![
                        a.tenant_id,
                        a.window_start,
                        a.agent_id,
                        a.anomaly_id,
                        a.window_id,
                        a.window_end,
                        a.lstm_score,
                        a.transformer_score,
                        a.lstm_normalized,
                        a.transformer_normalized,
                        a.ensemble_score,
                        a.threshold,
                        a.is_anomaly,
                        features_to_json(&a.top_features),
                        a.model_version,
                        a.scored_at,
                        a.statistical_score,
                        explanation_to_json(&a.explanation),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>> {
        let q = query.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ?1 AND window_start >= ?2 \
                 AND window_start < ?3 AND ensemble_score >= ?4 AND (?5 = 0 OR is_anomaly = 1) \
                 ORDER BY window_start, agent_id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, q.from_ms, q.to_ms, q.min_score, q.only_flagged],
                    |row| {
                        Ok((
                            Anomaly {
                                tenant_id: row.get(0)?,
                                window_start: row.get(1)?,
                                agent_id: row.get(2)?,
                                anomaly_id: row.get(3)?,
                                window_id: row.get(4)?,
                                window_end: row.get(5)?,
                                lstm_score: row.get(6)?,
                                transformer_score: row.get(7)?,
                                lstm_normalized: row.get(8)?,
                                transformer_normalized: row.get(9)?,
                                ensemble_score: row.get(10)?,
                                threshold: row.get(11)?,
                                is_anomaly: row.get(12)?,
                                top_features: Vec::new(),
                                model_version: row.get(14)?,
                                scored_at: row.get(15)?,
                                statistical_score: row.get(16)?,
                                explanation: Vec::new(),
                            },
                            row.get::<_, String>(13)?,
                            row.get::<_, String>(17)?,
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut a, features, explanation)| {
                    a.top_features = features_from_json(&features)?;
                    a.explanation = explanation_from_json(&explanation)?;
                    Ok(a)
                })
                .collect()
        })
        .await
    }

    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()> {
        let now = now_ms();
        let rows: Vec<KpiWindowRow> = rows
            .iter()
            .filter(|r| remaining_ttl_secs(r.updated_at_ms, retention_secs, now).is_some())
            .cloned()
            .collect();
        let expired_before = now.saturating_sub(i64::from(retention_secs).saturating_mul(1_000));
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO kpi_windows ({WINDOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, \
                     ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
                ))?;
                for r in &rows {
                    let v = r.verdict.as_ref();
                    stmt.execute(with_kpis(
                        params![r.tenant_id, r.window_start, r.agent_id, r.window_end, r.revision],
                        &KpiValues::of(&r.counts, &r.latency),
                        params![
                            v.map(|v| v.lstm_score),
                            v.map(|v| v.transformer_score),
                            v.and_then(|v| v.statistical_score),
                            v.map(|v| v.ensemble_score),
                            v.map(|v| v.threshold),
                            v.map(|v| v.is_anomaly),
                            v.map(|v| v.model_version.as_str()),
                            v.map(|v| explanation_to_json(&v.explanation)),
                            r.updated_at_ms,
                        ],
                    ))?;
                }
                tx.prepare_cached("DELETE FROM kpi_windows WHERE updated_at <= ?1")?
                    .execute(params![expired_before])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>> {
        let q = query.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {WINDOW_COLUMNS} FROM kpi_windows WHERE tenant_id = ?1 AND window_start >= ?2 \
                 AND window_start < ?3 AND (?4 IS NULL OR agent_id = ?4) ORDER BY window_start, agent_id"
            ))?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, q.from_ms, q.to_ms, q.agent_id],
                    window_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut row, explanation)| {
                    if let (Some(v), Some(text)) = (row.verdict.as_mut(), explanation) {
                        v.explanation = explanation_from_json(&text)?;
                    }
                    Ok(row)
                })
                .collect()
        })
        .await
    }
}
