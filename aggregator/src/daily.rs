//! Daily rows: from the engine's [`DayRow`]s to store rows. Tenant-wide roll-ups (all agents of a
//! tenant) are the store's: [`store::rollup`].

use schemas::time::date_of_day;
use store::DailyMetric;
use time::Date;

use crate::engine::{Aggregate, DayRow};

fn metric(
    tenant_id: &str,
    agent_id: &str,
    day: Date,
    a: &Aggregate,
    is_final: bool,
    now_ms: i64,
) -> DailyMetric {
    DailyMetric {
        tenant_id: tenant_id.to_string(),
        agent_id: agent_id.to_string(),
        day,
        counts: a.counts,
        latency: a.latency.latencies(),
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
        date_of_day(row.day_index),
        &row.aggregate,
        row.is_final,
        now_ms,
    )
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
    fn a_store_row_carries_the_counts_quantiles_and_digest_of_its_day() {
        let latencies: Vec<i64> = (1..=100).collect();
        let row = day_row("bot", &latencies, true);
        let m = to_metric(&row, 7);
        assert_eq!((m.tenant_id.as_str(), m.agent_id.as_str()), ("acme", "bot"));
        assert_eq!(m.day, time::macros::date!(2025 - 11 - 23));
        assert_eq!(m.counts.tasks_total, 100);
        assert_eq!(m.counts.succeeded + m.counts.failed + m.counts.cancelled, 100);
        assert_eq!(m.latency.latency_p95_ms, row.aggregate.latency.quantile(0.95));
        assert_eq!(m.latency_digest, row.aggregate.latency.to_bytes());
        assert!(m.is_final);
        assert_eq!(m.updated_at_ms, 7);
    }
}
