//! Tenant roll-ups under two concurrent writers (two aggregator instances owning partitions of
//! the same tenant), each with its own connection to one SQLite file, as two processes would:
//! whatever the interleaving, the roll-up left at the end is the merge of the agent rows left.

use std::sync::Arc;

use schemas::kpi::{Counts, LatencyDigest};
use store::rollup::{rollup, upsert_with_rollups, StoreRows};
use store::sqlite::SqliteStore;
use store::{DailyMetric, DailyMetricsQuery, MetricsStore, SchemaStore, ALL_AGENTS};
use time::macros::date;
use time::Date;

const DAY: Date = date!(2025 - 11 - 23);
const ROUNDS: i64 = 40;

/// Agent `agent`'s row after `round` rounds: `round` tasks, final at the last round.
fn agent_row(agent: &str, round: i64, base_latency: i64) -> DailyMetric {
    let mut digest = LatencyDigest::default();
    for i in 0..round {
        digest.record(base_latency + i);
    }
    digest.flush();
    DailyMetric {
        tenant_id: "acme".into(),
        agent_id: agent.into(),
        day: DAY,
        counts: Counts {
            tasks_total: round,
            succeeded: round,
            failed: 0,
            cancelled: 0,
            tasks_with_intervention: 0,
            interventions: 0,
            cost_micros: 3 * round,
        },
        latency: digest.latencies(),
        latency_digest: digest.to_bytes(),
        is_final: round == ROUNDS,
        updated_at_ms: round,
    }
}

async fn rows(store: &dyn MetricsStore) -> (Vec<DailyMetric>, DailyMetric) {
    let all = store
        .daily_metrics(&DailyMetricsQuery {
            tenant_id: "acme".into(),
            agent_id: None,
            from: DAY,
            to: DAY,
        })
        .await
        .unwrap();
    let (rollups, agents): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.agent_id == ALL_AGENTS);
    assert_eq!(rollups.len(), 1);
    (agents, rollups.into_iter().next().unwrap())
}

/// Two writers, `bot` and `triage`, write their rows round after round, concurrently, with
/// `write`; then the roll-up must equal the merge of the final agent rows.
async fn race<F, Fut>(write: F)
where
    F: Fn(Arc<SqliteStore>, DailyMetric) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollups.db");
    let path = path.to_str().unwrap();
    let first = Arc::new(SqliteStore::open(path).await.unwrap());
    first.migrate().await.unwrap();
    let second = Arc::new(SqliteStore::open(path).await.unwrap());
    let writers = [(first.clone(), "bot", 100), (second, "triage", 10_000)].map(|(store, agent, base)| {
        tokio::spawn(async move {
            for round in 1..=ROUNDS {
                write(store.clone(), agent_row(agent, round, base)).await;
                tokio::task::yield_now().await;
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let (agents, stored) = rows(first.as_ref()).await;
    assert_eq!(agents.len(), 2);
    assert_eq!(stored, rollup("acme", DAY, &agents).unwrap());
    assert_eq!(stored.counts.tasks_total, 2 * ROUNDS);
    assert!(stored.is_final, "both agents' rows are final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rollups_are_the_merge_of_the_agent_rows_after_two_concurrent_writers() {
    race(|store, row| async move {
        store.upsert_daily_metrics_with_rollups(&[row]).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_write_then_verify_rollups_hold_under_two_concurrent_writers_too() {
    // What a backend without write transactions (ScyllaDB) runs, here over SQLite's plain
    // upserts and reads.
    race(|store, row| async move {
        upsert_with_rollups(&StoreRows(store.as_ref()), &[row])
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn only_the_touched_days_of_the_touched_tenants_get_rollups() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut other_tenant = agent_row("bot", 3, 1);
    other_tenant.tenant_id = "globex".into();
    let mut later = agent_row("bot", 2, 1);
    later.day = date!(2025 - 11 - 25);
    let given_rollup = DailyMetric {
        agent_id: ALL_AGENTS.into(),
        counts: Counts {
            tasks_total: 999,
            ..Counts::default()
        },
        ..agent_row("x", 1, 1)
    };
    store
        .upsert_daily_metrics_with_rollups(&[agent_row("bot", 5, 1), later, other_tenant, given_rollup])
        .await
        .unwrap();
    let read = |tenant: &str, from, to| DailyMetricsQuery {
        tenant_id: tenant.into(),
        agent_id: Some(ALL_AGENTS.into()),
        from,
        to,
    };
    let acme = store
        .daily_metrics(&read("acme", DAY, date!(2025 - 11 - 30)))
        .await
        .unwrap();
    assert_eq!(
        acme.iter()
            .map(|r| (r.day, r.counts.tasks_total))
            .collect::<Vec<_>>(),
        [(DAY, 5), (date!(2025 - 11 - 25), 2)],
        "the given roll-up row is not written; none for the day between"
    );
    let globex = store.daily_metrics(&read("globex", DAY, DAY)).await.unwrap();
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0].counts.tasks_total, 3);
}

/// The scorer and the aggregator of one deployment open the same new SQLite file at once: both
/// open it, each migration is applied once, by one of them, and neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_one_file_at_once_both_succeed() {
    for round in 0..32 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let path = path.to_str().unwrap().to_string();
        let runs = (0..2).map(|_| {
            let path = path.clone();
            tokio::spawn(async move {
                let store = SqliteStore::open(&path)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: open: {e}"));
                store.migrate().await
            })
        });
        let mut applied = Vec::new();
        for run in runs.collect::<Vec<_>>() {
            let versions = run
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            applied.extend(versions);
        }
        applied.sort_unstable();
        let all: Vec<u32> = store::migrations::SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(
            applied, all,
            "round {round}: every migration applied exactly once"
        );
    }
}
