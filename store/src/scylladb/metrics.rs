//! Daily metrics on ScyllaDB ([`MetricsStore`]): partitioned by tenant, clustered by day and
//! agent; the tenant roll-ups by the trait's default (write, read, re-read until stable).

use async_trait::async_trait;
use scylla::{DeserializeRow, SerializeRow};

use super::{markers, ScyllaStore};
use crate::model::{day_text, parse_day};
use crate::{DailyMetric, DailyMetricsQuery, MetricsStore, Result};

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct DailyRow {
    tenant_id: String,
    day: String,
    agent_id: String,
    tasks_total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    tasks_with_intervention: i64,
    interventions: i64,
    cost_micros: i64,
    latency_p50_ms: Option<f64>,
    latency_p95_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_digest: Vec<u8>,
    is_final: bool,
    updated_at: i64,
}

impl DailyRow {
    fn new(r: &DailyMetric) -> DailyRow {
        DailyRow {
            tenant_id: r.tenant_id.clone(),
            day: day_text(r.day),
            agent_id: r.agent_id.clone(),
            tasks_total: r.tasks_total,
            succeeded: r.succeeded,
            failed: r.failed,
            cancelled: r.cancelled,
            tasks_with_intervention: r.tasks_with_intervention,
            interventions: r.interventions,
            cost_micros: r.cost_micros,
            latency_p50_ms: r.latency_p50_ms,
            latency_p95_ms: r.latency_p95_ms,
            latency_p99_ms: r.latency_p99_ms,
            latency_digest: r.latency_digest.clone(),
            is_final: r.is_final,
            updated_at: r.updated_at_ms,
        }
    }

    fn into_metric(self) -> Result<DailyMetric> {
        Ok(DailyMetric {
            day: parse_day(&self.day)?,
            tenant_id: self.tenant_id,
            agent_id: self.agent_id,
            tasks_total: self.tasks_total,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            tasks_with_intervention: self.tasks_with_intervention,
            interventions: self.interventions,
            cost_micros: self.cost_micros,
            latency_p50_ms: self.latency_p50_ms,
            latency_p95_ms: self.latency_p95_ms,
            latency_p99_ms: self.latency_p99_ms,
            latency_digest: self.latency_digest,
            is_final: self.is_final,
            updated_at_ms: self.updated_at,
        })
    }
}

const DAILY_COLUMNS: &str = "tenant_id, day, agent_id, tasks_total, succeeded, failed, cancelled, \
    tasks_with_intervention, interventions, cost_micros, latency_p50_ms, latency_p95_ms, latency_p99_ms, \
    latency_digest, is_final, updated_at";

#[async_trait]
impl MetricsStore for ScyllaStore {
    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()> {
        let statement = format!(
            "INSERT INTO daily_metrics ({DAILY_COLUMNS}) VALUES ({})",
            markers(16)
        );
        self.write_each(&statement, rows.iter().map(DailyRow::new)).await
    }

    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        let statement = format!(
            "SELECT {DAILY_COLUMNS} FROM daily_metrics WHERE tenant_id = ? AND day >= ? AND day <= ?"
        );
        let rows: Vec<DailyRow> = self
            .read_all(
                statement,
                (&query.tenant_id, day_text(query.from), day_text(query.to)),
            )
            .await?;
        rows.into_iter()
            .filter(|r| query.agent_id.as_ref().is_none_or(|a| *a == r.agent_id))
            .map(DailyRow::into_metric)
            .collect()
    }
}
