//! Daily rows: from the engine's [`DayRow`]s to store rows, and tenant-wide roll-ups (all agents
//! of a tenant) as merges of the per-agent rows: counts add, digests merge, percentiles are read
//! from the merged digest, never averaged.

use schemas::kpi::{Counts, LatencyDigest};
use store::{DailyMetric, ALL_AGENTS};
use time::Date;

use crate::engine::{Aggregate, DayRow};

/// The UTC date of a day index (days since the Unix epoch).
pub fn date_of(day_index: i64) -> Date {
    Date::from_julian_day(2_440_588 + day_index as i32).expect("day index in range")
}

fn metric(
    tenant_id: &str,
    agent_id: &str,
    day: Date,
    a: &Aggregate,
    is_final: bool,
    now_ms: i64,
) -> DailyMetric {
    let c = &a.counts;
    DailyMetric {
        tenant_id: tenant_id.to_string(),
        agent_id: agent_id.to_string(),
        day,
        tasks_total: c.tasks_total,
        succeeded: c.succeeded,
        failed: c.failed,
        cancelled: c.cancelled,
        tasks_with_intervention: c.tasks_with_intervention,
        interventions: c.interventions,
        cost_micros: c.cost_micros,
        latency_p50_ms: a.latency.quantile(0.50),
        latency_p95_ms: a.latency.quantile(0.95),
        latency_p99_ms: a.latency.quantile(0.99),
        latency_digest: a.latency.to_bytes(),
        is_final,
        updated_at_ms: now_ms,
    }
}

/// The store row of an engine day row.
pub fn to_metric(row: &DayRow, now_ms: i64) -> DailyMetric {
    metric(
        row.series.tenant_id(),
        row.series.agent_id(),
        date_of(row.day_index),
        &row.aggregate,
        row.is_final,
        now_ms,
    )
}

/// The tenant-wide row of one day from its per-agent rows (rows of other tenants or days, and
/// existing roll-up rows, are ignored). Final when every agent row is final.
pub fn rollup(
    tenant_id: &str,
    day: Date,
    rows: &[DailyMetric],
    now_ms: i64,
) -> Result<DailyMetric, schemas::kpi::DigestError> {
    let mut aggregate = Aggregate {
        counts: Counts::default(),
        latency: LatencyDigest::default(),
    };
    let mut is_final = true;
    for row in rows
        .iter()
        .filter(|r| r.tenant_id == tenant_id && r.day == day && r.agent_id != ALL_AGENTS)
    {
        aggregate.counts.merge(&Counts {
            tasks_total: row.tasks_total,
            succeeded: row.succeeded,
            failed: row.failed,
            cancelled: row.cancelled,
            tasks_with_intervention: row.tasks_with_intervention,
            interventions: row.interventions,
            cost_micros: row.cost_micros,
        });
        aggregate
            .latency
            .merge(&LatencyDigest::from_bytes(&row.latency_digest)?);
        is_final &= row.is_final;
    }
    Ok(metric(tenant_id, ALL_AGENTS, day, &aggregate, is_final, now_ms))
}

#[cfg(test)]
mod tests {
    use schemas::{TaskEvent, TaskStatus};

    use super::*;
    use crate::engine::Series;

    fn day_row(agent: &str, latencies: &[i64], is_final: bool) -> DayRow {
        let mut aggregate = Aggregate::default();
        for (i, l) in latencies.iter().enumerate() {
            let mut e = TaskEvent::example();
            e.started_at = e.completed_at - l;
            e.status = TaskStatus::ALL[i % 3];
            aggregate.counts.add(&e.view());
            aggregate.latency.record(*l);
        }
        DayRow {
            series: Series::new("acme", agent),
            day_index: 20_415,
            aggregate,
            is_final,
        }
    }

    #[test]
    fn day_index_maps_to_utc_date() {
        assert_eq!(date_of(0), time::macros::date!(1970 - 01 - 01));
        assert_eq!(date_of(20_415), time::macros::date!(2025 - 11 - 23));
    }

    #[test]
    fn rollup_adds_counts_and_merges_digests() {
        let a: Vec<i64> = (1..=900).collect();
        let b: Vec<i64> = (10_000..10_100).collect();
        let rows = [
            to_metric(&day_row("a", &a, true), 0),
            to_metric(&day_row("b", &b, false), 0),
        ];
        let r = rollup("acme", date_of(20_415), &rows, 7).unwrap();
        assert_eq!(r.agent_id, ALL_AGENTS);
        assert_eq!(r.tasks_total, 1000);
        assert_eq!(r.succeeded, rows[0].succeeded + rows[1].succeeded);
        assert!(!r.is_final, "one agent row is still open");
        // The 95th percentile of the union lies in b's range; an average of P95s would not.
        let p95 = r.latency_p95_ms.unwrap();
        assert!((10_000.0..10_100.0).contains(&p95), "{p95}");
        let avg = (rows[0].latency_p95_ms.unwrap() + rows[1].latency_p95_ms.unwrap()) / 2.0;
        assert!(avg < 10_000.0);
    }
}
