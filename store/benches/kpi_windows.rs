//! What the scorer's KPI-window write costs: batches of `KpiWindowRow`s with verdicts and a
//! two-KPI explanation upserted into a SQLite file (the scorer writes each micro-batch once,
//! before its offset commit). Prints windows/s per batch size.
//! `cargo bench -p store --bench kpi_windows` (`STORE_BENCH_WINDOWS` windows per size, 20,000).

use std::time::Instant;

use schemas::kpi::{Counts, Latencies};
use schemas::KpiExplanation;
use store::{KpiWindowRow, WindowVerdict};

fn row(i: usize, now_ms: i64) -> KpiWindowRow {
    let series = i % 64;
    KpiWindowRow {
        tenant_id: format!("tenant-{}", series % 4),
        agent_id: format!("agent-{series}"),
        window_start: 1_759_276_800_000 + (i / 64) as i64 * 900_000,
        window_end: 1_759_276_800_000 + (i / 64 + 1) as i64 * 900_000,
        revision: 0,
        counts: Counts {
            tasks_total: 15,
            succeeded: 13,
            failed: 1,
            cancelled: 1,
            tasks_with_intervention: 1,
            interventions: 1,
            cost_micros: 45_000,
        },
        latency: Latencies {
            latency_p50_ms: Some(1_200.0),
            latency_p95_ms: Some(4_100.0),
            latency_p99_ms: Some(6_900.0),
        },
        verdict: Some(WindowVerdict {
            lstm_score: 0.4,
            transformer_score: 0.3,
            statistical_score: Some(0.0),
            ensemble_score: 0.25,
            threshold: 3.3,
            is_anomaly: false,
            model_version: "2026.12.03-2781b52c".into(),
            explanation: vec![
                KpiExplanation {
                    kpi: "success_rate".into(),
                    observed: 0.87,
                    expected: 0.86,
                    low: 0.7,
                    high: 1.0,
                    evidence: 0.1,
                };
                2
            ],
        }),
        updated_at_ms: now_ms,
    }
}

fn main() {
    let total: usize = std::env::var("STORE_BENCH_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for batch in [64usize, 256, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = runtime.block_on(store::open_migrated(&url)).expect("store");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let rows: Vec<KpiWindowRow> = (0..total).map(|i| row(i, now_ms)).collect();
        let started = Instant::now();
        for chunk in rows.chunks(batch) {
            runtime
                .block_on(store.upsert_kpi_windows(chunk, 90 * 86_400))
                .expect("upsert");
        }
        let secs = started.elapsed().as_secs_f64();
        let stored = runtime
            .block_on(store.kpi_windows(&store::KpiWindowQuery {
                tenant_id: "tenant-0".into(),
                agent_id: None,
                from_ms: 0,
                to_ms: i64::MAX,
            }))
            .expect("read")
            .len();
        assert_eq!(stored, total / 4, "every window of tenant-0 stored");
        println!(
            "SQLite file, batches of {batch:5}: {:8.0} windows/s ({:.1} us per window)",
            total as f64 / secs,
            secs * 1e6 / total as f64
        );
    }
}
