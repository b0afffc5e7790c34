//! Daily metrics and tenant roll-ups on SQLite ([`MetricsStore`]).

use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::params;
use schemas::time::day_text;

use super::{kpis_at, with_kpis, KpiValues, SqliteStore};
use crate::kpi_columns::kpi_columns;
use crate::model::parse_stored_day;
use crate::{DailyMetric, DailyMetricsQuery, MetricsStore, Result};

impl SqliteStore {
    /// Daily rows of `query` by `sql` ([`daily_sql`]).
    async fn daily_rows(&self, query: &DailyMetricsQuery, sql: &'static str) -> Result<Vec<DailyMetric>> {
        let q = query.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, day_text(q.from), day_text(q.to), q.agent_id],
                    daily_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(day, mut row)| {
                    row.day = parse_stored_day(&day)?;
                    Ok(row)
                })
                .collect()
        })
        .await
    }
}

/// The daily-rows query reading `columns` (all of them, or the digest as an empty blob) through
/// `index` (empty: the table).
fn daily_sql(columns: &str, index: &str) -> String {
    format!(
        "SELECT {columns} FROM daily_metrics {index} WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 \
         AND (?4 IS NULL OR agent_id = ?4) ORDER BY day, agent_id"
    )
}

/// Inserts or replaces daily rows inside `tx`.
fn insert_daily(tx: &rusqlite::Transaction<'_>, rows: &[DailyMetric]) -> Result<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO daily_metrics ({DAILY_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    for r in rows {
        stmt.execute(with_kpis(
            params![r.tenant_id, day_text(r.day), r.agent_id],
            &KpiValues::of(&r.counts, &r.latency),
            params![r.latency_digest, r.is_final, r.updated_at_ms],
        ))?;
    }
    Ok(())
}

fn daily_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, DailyMetric)> {
    let (counts, latency) = kpis_at(row, 3)?;
    Ok((
        row.get::<_, String>(1)?,
        DailyMetric {
            tenant_id: row.get(0)?,
            day: time::Date::MIN,
            agent_id: row.get(2)?,
            counts,
            latency,
            latency_digest: row.get(13)?,
            is_final: row.get(14)?,
            updated_at_ms: row.get(15)?,
        },
    ))
}

const DAILY_COLUMNS: &str = concat!(
    "tenant_id, day, agent_id, ",
    kpi_columns!(),
    ", latency_digest, is_final, updated_at"
);

/// [`DAILY_COLUMNS`] with an empty blob in place of the digest: all of them are in the index
/// `daily_metrics_summary` (migration 5), which holds no digest.
const SUMMARY_COLUMNS: &str = concat!(
    "tenant_id, day, agent_id, ",
    kpi_columns!(),
    ", X'', is_final, updated_at"
);

#[async_trait]
impl MetricsStore for SqliteStore {
    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()> {
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            insert_daily(&tx, &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// One write transaction, begun IMMEDIATE: it holds the database's write lock from the
    /// start, so no other writer (another connection or process) commits between the agent
    /// rows' write, the read of the touched tenant-days and the roll-ups' write. One read per
    /// touched tenant.
    async fn upsert_daily_metrics_with_rollups(&self, rows: &[DailyMetric]) -> Result<()> {
        let rows: Vec<DailyMetric> = rows
            .iter()
            .filter(|r| r.agent_id != crate::ALL_AGENTS)
            .cloned()
            .collect();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert_daily(&tx, &rows)?;
            let mut rollups = Vec::new();
            {
                static SQL: LazyLock<String> = LazyLock::new(|| daily_sql(DAILY_COLUMNS, ""));
                let mut stmt = tx.prepare_cached(&SQL)?;
                for (tenant, days) in crate::rollup::touched(&rows) {
                    let (from, to) = (days.first().expect("non-empty"), days.last().expect("non-empty"));
                    let stored = stmt
                        .query_map(
                            params![tenant, day_text(*from), day_text(*to), None::<String>],
                            daily_from_row,
                        )?
                        .map(|row| {
                            let (day, mut row) = row?;
                            row.day = parse_stored_day(&day)?;
                            Ok(row)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    rollups.extend(crate::rollup::rollups_of(&tenant, &days, &stored)?);
                }
            }
            insert_daily(&tx, &rollups)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        static SQL: LazyLock<String> = LazyLock::new(|| daily_sql(DAILY_COLUMNS, ""));
        self.daily_rows(query, &SQL).await
    }

    async fn daily_summaries(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| daily_sql(SUMMARY_COLUMNS, "INDEXED BY daily_metrics_summary"));
        self.daily_rows(query, &SQL).await
    }
}
