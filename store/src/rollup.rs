//! Tenant roll-ups (agent [`ALL_AGENTS`]): the merge of a tenant's agent rows of one day, and
//! how a writer keeps them true.
//!
//! A roll-up is derived data: counts add, digests merge, percentiles are read from the merged
//! digest (never averaged). Several writers (aggregator instances owning partitions of the same
//! tenant) write agent rows of the same (tenant, day); each must leave a roll-up that reflects
//! every agent row written before it, whatever the interleaving, or a stale roll-up would stay
//! once the day is final. [`upsert_with_rollups`] does that over any [`DayRows`]: it writes the
//! agent rows, then per tenant reads the agent rows of the touched days, writes their roll-ups
//! and reads again, until the rows it merged are the rows stored (a writer whose agent row
//! landed after that read merges it itself, after its own write). SQLite does the same in one
//! write transaction instead (one writer at a time: the read cannot be stale).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use schemas::kpi::{Counts, LatencyDigest};
use time::Date;

use crate::{DailyMetric, DailyMetricsQuery, Error, MetricsStore, Result, ALL_AGENTS};

/// The tenant-wide row of `day` from its agent rows (rows of other tenants or days, and roll-up
/// rows, are ignored): counts add, digests merge, final when every agent row is final,
/// `updated_at_ms` the latest of the agent rows'.
pub fn rollup(tenant_id: &str, day: Date, rows: &[DailyMetric]) -> Result<DailyMetric> {
    let mut counts = Counts::default();
    let mut latency = LatencyDigest::default();
    let mut is_final = true;
    let mut updated_at_ms = 0;
    for row in rows
        .iter()
        .filter(|r| r.tenant_id == tenant_id && r.day == day && r.agent_id != ALL_AGENTS)
    {
        counts.merge(&row.counts);
        latency.merge(
            &LatencyDigest::from_bytes(&row.latency_digest).map_err(|e| Error::Corrupt {
                column: "latency_digest",
                message: format!("{tenant_id}/{}/{day}: {e}", row.agent_id),
            })?,
        );
        is_final &= row.is_final;
        updated_at_ms = updated_at_ms.max(row.updated_at_ms);
    }
    Ok(DailyMetric {
        tenant_id: tenant_id.to_string(),
        agent_id: ALL_AGENTS.to_string(),
        day,
        counts,
        latency: latency.latencies(),
        latency_digest: latency.to_bytes(),
        is_final,
        updated_at_ms,
    })
}

/// The days each tenant's agent rows in `rows` touch (roll-up rows are not agent rows).
pub(crate) fn touched(rows: &[DailyMetric]) -> BTreeMap<String, BTreeSet<Date>> {
    let mut by_tenant: BTreeMap<String, BTreeSet<Date>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.agent_id != ALL_AGENTS) {
        by_tenant.entry(r.tenant_id.clone()).or_default().insert(r.day);
    }
    by_tenant
}

/// The roll-ups of `days` from the agent rows `stored` (of one tenant).
pub(crate) fn rollups_of(
    tenant_id: &str,
    days: &BTreeSet<Date>,
    stored: &[DailyMetric],
) -> Result<Vec<DailyMetric>> {
    days.iter().map(|day| rollup(tenant_id, *day, stored)).collect()
}

/// What [`upsert_with_rollups`] needs of a store.
#[async_trait]
pub trait DayRows: Send + Sync {
    /// Inserts or replaces rows as given.
    async fn put(&self, rows: &[DailyMetric]) -> Result<()>;
    /// The agent rows (not roll-ups) of a tenant with day in `[from, to]`, digests included.
    async fn agent_rows(&self, tenant_id: &str, from: Date, to: Date) -> Result<Vec<DailyMetric>>;
}

/// A [`MetricsStore`] as [`DayRows`] (what the default
/// [`MetricsStore::upsert_daily_metrics_with_rollups`] uses).
pub struct StoreRows<'a, S: ?Sized>(pub &'a S);

#[async_trait]
impl<S: MetricsStore + ?Sized> DayRows for StoreRows<'_, S> {
    async fn put(&self, rows: &[DailyMetric]) -> Result<()> {
        self.0.upsert_daily_metrics(rows).await
    }

    async fn agent_rows(&self, tenant_id: &str, from: Date, to: Date) -> Result<Vec<DailyMetric>> {
        let mut rows = self
            .0
            .daily_metrics(&DailyMetricsQuery {
                tenant_id: tenant_id.to_string(),
                agent_id: None,
                from,
                to,
            })
            .await?;
        rows.retain(|r| r.agent_id != ALL_AGENTS);
        Ok(rows)
    }
}

/// Writes the agent rows of `rows` (roll-up rows in it are ignored) and then the roll-ups of
/// the (tenant, day)s they touch, such that the last roll-up written reflects every agent row
/// written before it, whatever the interleaving of concurrent writers (see the module docs).
/// Two reads per tenant, plus one per retry.
pub async fn upsert_with_rollups<D: DayRows + ?Sized>(db: &D, rows: &[DailyMetric]) -> Result<()> {
    let agent_rows: Vec<DailyMetric> = rows
        .iter()
        .filter(|r| r.agent_id != ALL_AGENTS)
        .cloned()
        .collect();
    db.put(&agent_rows).await?;
    for (tenant, days) in touched(&agent_rows) {
        let (from, to) = (
            *days.first().expect("non-empty"),
            *days.last().expect("non-empty"),
        );
        let mut merged = db.agent_rows(&tenant, from, to).await?;
        loop {
            db.put(&rollups_of(&tenant, &days, &merged)?).await?;
            let stored = db.agent_rows(&tenant, from, to).await?;
            if stored == merged {
                break;
            }
            merged = stored;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use time::macros::date;

    use super::*;

    fn row(agent: &str, latencies: &[i64], is_final: bool, updated_at_ms: i64) -> DailyMetric {
        let mut digest = LatencyDigest::default();
        for l in latencies {
            digest.record(*l);
        }
        digest.flush();
        DailyMetric {
            tenant_id: "acme".into(),
            agent_id: agent.into(),
            day: date!(2025 - 11 - 23),
            counts: Counts {
                tasks_total: latencies.len() as i64,
                succeeded: latencies.len() as i64,
                tasks_with_intervention: 1,
                interventions: 2,
                cost_micros: 10 * latencies.len() as i64,
                ..Counts::default()
            },
            latency: digest.latencies(),
            latency_digest: digest.to_bytes(),
            is_final,
            updated_at_ms,
        }
    }

    #[test]
    fn rollup_adds_counts_and_merges_digests() {
        let a: Vec<i64> = (1..=900).collect();
        let b: Vec<i64> = (10_000..10_100).collect();
        let rows = [
            row("a", &a, true, 5),
            row("b", &b, false, 9),
            row("*", &[1], true, 99),
        ];
        let r = rollup("acme", date!(2025 - 11 - 23), &rows).unwrap();
        assert_eq!(r.agent_id, ALL_AGENTS);
        assert_eq!(
            r.counts.tasks_total, 1000,
            "the stored roll-up row is not an agent row"
        );
        assert_eq!((r.counts.interventions, r.counts.cost_micros), (4, 10_000));
        assert!(!r.is_final, "one agent row is still open");
        assert_eq!(r.updated_at_ms, 9);
        // The 95th percentile of the union lies in b's range; an average of P95s would not.
        let p95 = r.latency.latency_p95_ms.unwrap();
        assert!((10_000.0..10_100.0).contains(&p95), "{p95}");
        let avg = (rows[0].latency.latency_p95_ms.unwrap() + rows[1].latency.latency_p95_ms.unwrap()) / 2.0;
        assert!(avg < 10_000.0);
    }

    type Step = Box<dyn FnOnce(&Interleaved) + Send>;

    /// Rows in memory; `between` runs once, right after the first read of agent rows: another
    /// writer's step landing between a read and the roll-up write that uses it.
    #[derive(Default)]
    struct Interleaved {
        rows: Mutex<BTreeMap<(String, Date, String), DailyMetric>>,
        between: Mutex<Option<Step>>,
    }

    impl Interleaved {
        fn put_now(&self, rows: &[DailyMetric]) {
            let mut stored = self.rows.lock().unwrap();
            for r in rows {
                stored.insert((r.tenant_id.clone(), r.day, r.agent_id.clone()), r.clone());
            }
        }

        fn get(&self, agent: &str) -> DailyMetric {
            let stored = self.rows.lock().unwrap();
            stored.values().find(|r| r.agent_id == agent).unwrap().clone()
        }
    }

    #[async_trait]
    impl DayRows for Interleaved {
        async fn put(&self, rows: &[DailyMetric]) -> Result<()> {
            self.put_now(rows);
            Ok(())
        }

        async fn agent_rows(&self, tenant_id: &str, from: Date, to: Date) -> Result<Vec<DailyMetric>> {
            let rows: Vec<DailyMetric> = self
                .rows
                .lock()
                .unwrap()
                .values()
                .filter(|r| {
                    r.tenant_id == tenant_id && r.day >= from && r.day <= to && r.agent_id != ALL_AGENTS
                })
                .cloned()
                .collect();
            let between = self.between.lock().unwrap().take();
            if let Some(step) = between {
                step(self);
            }
            Ok(rows)
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn an_agent_row_written_between_the_read_and_the_rollup_write_is_merged() {
        // Instance A writes agent a and reads {a, b (old)}; instance B writes b (final) and its
        // roll-up right then; A's roll-up, from its stale read, lands last.
        let db = Interleaved::default();
        db.put_now(&[row("b", &[100], false, 1)]);
        *db.between.lock().unwrap() = Some(Box::new(|db: &Interleaved| {
            let b = row("b", &[100, 200, 300], true, 3);
            db.put_now(std::slice::from_ref(&b));
            let a = db.get("a");
            db.put_now(&[rollup("acme", a.day, &[a, b]).unwrap()]);
        }));
        block_on(upsert_with_rollups(&db, &[row("a", &[10, 20], true, 2)])).unwrap();
        let stored = db.get(ALL_AGENTS);
        assert_eq!(
            stored,
            rollup("acme", stored.day, &[db.get("a"), db.get("b")]).unwrap()
        );
        assert_eq!(stored.counts.tasks_total, 5);
        assert!(
            stored.is_final,
            "both agents are final: the day's roll-up must be too"
        );
    }

    #[test]
    fn rollup_rows_given_are_not_written_and_untouched_days_get_none() {
        let db = Interleaved::default();
        let mut other_day = row("a", &[7], false, 1);
        other_day.day = date!(2025 - 11 - 25);
        block_on(upsert_with_rollups(
            &db,
            &[
                row("a", &[1, 2], false, 1),
                other_day,
                row("*", &[1; 50], true, 1),
            ],
        ))
        .unwrap();
        let stored = db.rows.lock().unwrap().clone();
        let rollups: Vec<_> = stored.values().filter(|r| r.agent_id == ALL_AGENTS).collect();
        assert_eq!(rollups.len(), 2, "one per touched day, none for the day between");
        assert_eq!(
            rollups.iter().map(|r| r.counts.tasks_total).collect::<Vec<_>>(),
            [2, 1]
        );
    }
}
