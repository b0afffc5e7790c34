//! The [`MetricsStore`] contract: daily rows replaced whole, read back by tenant, agent and days
//! (the tenant roll-ups under concurrent writers are in `tests/rollups.rs`).

use schemas::kpi::{Counts, Latencies};
use store::{DailyMetric, DailyMetricsQuery, MetricsStore, ALL_AGENTS};
use time::macros::date;
use time::Date;

use crate::Caps;

/// The scenarios start from a migrated database.
pub(crate) const MIGRATED: bool = true;

fn daily(tenant: &str, agent: &str, day: Date, total: i64) -> DailyMetric {
    DailyMetric {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        day,
        counts: Counts {
            tasks_total: total,
            succeeded: total - 2,
            failed: 1,
            cancelled: 1,
            tasks_with_intervention: 3,
            interventions: 5,
            cost_micros: total * 1_000,
        },
        latency: Latencies {
            latency_p50_ms: Some(120.5),
            latency_p95_ms: Some(900.25),
            latency_p99_ms: None,
        },
        latency_digest: vec![0, 1, 2, 255, 0],
        is_final: false,
        updated_at_ms: 1_700_000_000_000,
    }
}

pub(crate) async fn daily_upsert_replaces_complete_values(store: &dyn MetricsStore, caps: Caps) {
    let first = daily("acme", "bot", date!(2026 - 11 - 20), 10);
    store
        .upsert_daily_metrics(std::slice::from_ref(&first))
        .await
        .unwrap();
    let mut second = daily("acme", "bot", date!(2026 - 11 - 20), 12);
    second.is_final = true;
    second.latency.latency_p99_ms = Some(2000.0);
    // A digest the size of a real day's (larger than a page).
    second.latency_digest = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    store.upsert_daily_metrics(&[second.clone()]).await.unwrap();
    // Replaying the same write is harmless.
    store.upsert_daily_metrics(&[second.clone()]).await.unwrap();
    if caps.range_reads {
        let q = DailyMetricsQuery {
            tenant_id: "acme".into(),
            agent_id: None,
            from: date!(2026 - 11 - 20),
            to: date!(2026 - 11 - 20),
        };
        assert_eq!(read(store, &q).await, vec![second]);
    }
}

/// [`Store::daily_metrics`] of `q`, checked against [`Store::daily_summaries`]: the same
/// rows, in the same order, without their digests.
async fn read(store: &dyn MetricsStore, q: &DailyMetricsQuery) -> Vec<DailyMetric> {
    let full = store.daily_metrics(q).await.unwrap();
    let summaries = store.daily_summaries(q).await.unwrap();
    let expected: Vec<DailyMetric> = full
        .iter()
        .map(|r| DailyMetric {
            latency_digest: Vec::new(),
            ..r.clone()
        })
        .collect();
    assert_eq!(summaries, expected, "{q:?}");
    full
}

pub(crate) async fn daily_query_filters_tenant_agent_and_days(store: &dyn MetricsStore, caps: Caps) {
    let rows = vec![
        daily("acme", "bot", date!(2026 - 11 - 19), 1),
        daily("acme", "bot", date!(2026 - 11 - 20), 2),
        daily("acme", ALL_AGENTS, date!(2026 - 11 - 20), 3),
        daily("acme", "bot", date!(2026 - 11 - 21), 4),
        daily("acme", "triage", date!(2026 - 11 - 20), 5),
        daily("globex", "bot", date!(2026 - 11 - 20), 6),
    ];
    store.upsert_daily_metrics(&rows).await.unwrap();
    if !caps.range_reads {
        return;
    }
    let q = |agent: Option<&str>, from, to| DailyMetricsQuery {
        tenant_id: "acme".into(),
        agent_id: agent.map(String::from),
        from,
        to,
    };
    let totals = |rows: Vec<DailyMetric>| rows.iter().map(|r| r.counts.tasks_total).collect::<Vec<_>>();
    let all = read(store, &q(None, date!(2026 - 11 - 19), date!(2026 - 11 - 21))).await;
    assert_eq!(
        totals(all),
        vec![1, 3, 2, 5, 4],
        "ordered by day then agent ('*' sorts first)"
    );
    let bot = read(
        store,
        &q(Some("bot"), date!(2026 - 11 - 20), date!(2026 - 11 - 21)),
    )
    .await;
    assert_eq!(totals(bot), vec![2, 4]);
    let rollup = read(
        store,
        &q(Some(ALL_AGENTS), date!(2026 - 11 - 1), date!(2026 - 11 - 30)),
    )
    .await;
    assert_eq!(totals(rollup), vec![3]);
    let none = read(store, &q(None, date!(2026 - 12 - 1), date!(2026 - 12 - 31))).await;
    assert!(none.is_empty());
}
