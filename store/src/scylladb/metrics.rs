//! Daily metrics on ScyllaDB ([`MetricsStore`]): partitioned by tenant, clustered by day and
//! agent; the tenant roll-ups by the trait's default (write, read, re-read until stable).

use async_trait::async_trait;
use schemas::time::day_text;
use scylla::{DeserializeRow, SerializeRow};

use super::kpis::WithKpis;
use super::{markers, ScyllaStore};
use crate::kpi_columns::kpi_columns;
use crate::model::parse_stored_day;
use crate::{DailyMetric, DailyMetricsQuery, MetricsStore, Result};

/// A `daily_metrics` row: the KPIs ([`WithKpis`]), then these columns.
type DailyRow = WithKpis<DailyColumns>;

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct DailyColumns {
    tenant_id: String,
    day: String,
    agent_id: String,
    latency_digest: Vec<u8>,
    is_final: bool,
    updated_at: i64,
}

fn daily_row(r: &DailyMetric) -> DailyRow {
    WithKpis {
        counts: r.counts,
        latency: r.latency,
        rest: DailyColumns {
            tenant_id: r.tenant_id.clone(),
            day: day_text(r.day),
            agent_id: r.agent_id.clone(),
            latency_digest: r.latency_digest.clone(),
            is_final: r.is_final,
            updated_at: r.updated_at_ms,
        },
    }
}

fn into_metric(row: DailyRow) -> Result<DailyMetric> {
    let r = row.rest;
    Ok(DailyMetric {
        day: parse_stored_day(&r.day)?,
        tenant_id: r.tenant_id,
        agent_id: r.agent_id,
        counts: row.counts,
        latency: row.latency,
        latency_digest: r.latency_digest,
        is_final: r.is_final,
        updated_at_ms: r.updated_at,
    })
}

/// The columns of [`DailyRow`], in its order.
const DAILY_COLUMNS: &str = concat!(
    kpi_columns!(),
    ", tenant_id, day, agent_id, latency_digest, is_final, updated_at"
);

#[async_trait]
impl MetricsStore for ScyllaStore {
    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()> {
        let statement = format!(
            "INSERT INTO daily_metrics ({DAILY_COLUMNS}) VALUES ({})",
            markers(DAILY_COLUMNS.split(',').count())
        );
        self.write_each(&statement, rows.iter().map(daily_row)).await
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
            .filter(|r| query.agent_id.as_ref().is_none_or(|a| *a == r.rest.agent_id))
            .map(into_metric)
            .collect()
    }
}
