//! The [`WindowStore`] contract: anomaly verdicts and KPI windows replaced whole, filtered and
//! read back in order; and the upgrade of verdicts stored before migration 4, on SQLite and
//! real ScyllaDB.

use schemas::kpi::{Counts, Latencies};
use schemas::time::{now_ms, DAY_MS};
use schemas::{Anomaly, FeatureContribution, KpiExplanation};
use store::scylladb::{ScyllaConfig, ScyllaStore};
use store::sqlite::SqliteStore;
use store::{AnomalyQuery, KpiWindowQuery, KpiWindowRow, SchemaStore, WindowStore, WindowVerdict};

use crate::Caps;

/// The scenarios start from a migrated database.
pub(crate) const MIGRATED: bool = true;

pub(crate) fn anomaly(tenant: &str, agent: &str, start: i64, score: f64) -> Anomaly {
    Anomaly {
        anomaly_id: Anomaly::id_for(&format!("{tenant}{agent}{start}"), 0, "m1"),
        window_id: format!("w-{start}"),
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        window_start: start,
        window_end: start + 60_000,
        lstm_score: 0.3,
        transformer_score: 0.2,
        lstm_normalized: score,
        transformer_normalized: score,
        ensemble_score: score,
        threshold: 3.0,
        is_anomaly: score >= 3.0,
        top_features: vec![FeatureContribution {
            feature: "success_rate".into(),
            contribution: 0.8,
        }],
        model_version: "m1".into(),
        scored_at: start + 61_000,
        statistical_score: Some(score * 1.5),
        explanation: vec![KpiExplanation {
            kpi: "success_rate".into(),
            observed: 0.52,
            expected: 0.86,
            low: 0.79,
            high: 0.93,
            evidence: score * 1.5,
        }],
    }
}

pub(crate) async fn anomalies_upsert_and_filter(store: &dyn WindowStore, caps: Caps) {
    let rows = vec![
        anomaly("acme", "bot", 0, 1.0),
        anomaly("acme", "bot", 60_000, 4.5),
        anomaly("acme", "triage", 60_000, 3.2),
        anomaly("acme", "bot", 120_000, 2.9),
        anomaly("globex", "bot", 60_000, 9.0),
    ];
    store.upsert_anomalies(&rows).await.unwrap();
    store.upsert_anomalies(&rows[1..2]).await.unwrap();
    if !caps.range_reads {
        return;
    }
    let q = |from_ms, to_ms, min_score, only_flagged| AnomalyQuery {
        tenant_id: "acme".into(),
        from_ms,
        to_ms,
        min_score,
        only_flagged,
    };
    let got = store.anomalies(&q(0, 180_000, 0.0, false)).await.unwrap();
    assert_eq!(
        got,
        vec![rows[0].clone(), rows[1].clone(), rows[2].clone(), rows[3].clone()]
    );
    let flagged = store.anomalies(&q(0, 180_000, 0.0, true)).await.unwrap();
    assert_eq!(flagged, vec![rows[1].clone(), rows[2].clone()]);
    let high = store.anomalies(&q(60_000, 120_000, 4.0, false)).await.unwrap();
    assert_eq!(
        high,
        vec![rows[1].clone()],
        "end is exclusive and min_score applies"
    );
}

pub(crate) async fn anomalies_keep_statistical_score_and_explanation(store: &dyn WindowStore, caps: Caps) {
    let mut explained = anomaly("acme", "bot", 0, 4.5);
    explained.statistical_score = Some(7.125);
    explained.explanation.push(KpiExplanation {
        kpi: "latency_p95_ms".into(),
        observed: 2_400.5,
        expected: 900.0,
        low: 612.25,
        high: 1_187.75,
        evidence: 3.0,
    });
    let mut bare = anomaly("acme", "crm", 0, 1.0);
    bare.statistical_score = None;
    bare.explanation = Vec::new();
    let mut zero = anomaly("acme", "ops", 0, 2.0);
    zero.statistical_score = Some(0.0);
    store
        .upsert_anomalies(&[explained.clone(), bare.clone(), zero.clone()])
        .await
        .unwrap();
    // A replacement is complete: a verdict without them clears both.
    let mut cleared = anomaly("acme", "bot", 60_000, 5.0);
    store
        .upsert_anomalies(std::slice::from_ref(&cleared))
        .await
        .unwrap();
    cleared.statistical_score = None;
    cleared.explanation = Vec::new();
    store
        .upsert_anomalies(std::slice::from_ref(&cleared))
        .await
        .unwrap();
    if !caps.range_reads {
        return;
    }
    let got = store
        .anomalies(&AnomalyQuery {
            tenant_id: "acme".into(),
            from_ms: 0,
            to_ms: 120_000,
            min_score: 0.0,
            only_flagged: false,
        })
        .await
        .unwrap();
    assert_eq!(got, vec![explained, bare, zero, cleared]);
}

/// 2026-11-20T00:00Z.
pub(crate) const DAY0: i64 = 1_795_132_800_000;
const WINDOW: i64 = 900_000;
const WEEK_SECS: u32 = 7 * 86_400;

pub(crate) fn window(tenant: &str, agent: &str, start: i64, total: i64, scored: bool) -> KpiWindowRow {
    KpiWindowRow {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        window_start: start,
        window_end: start + WINDOW,
        revision: 0,
        counts: Counts {
            tasks_total: total,
            succeeded: total - 3,
            failed: 2,
            cancelled: 1,
            tasks_with_intervention: 4,
            interventions: 6,
            cost_micros: total * 2_500,
        },
        latency: Latencies {
            latency_p50_ms: (total > 0).then_some(410.5),
            latency_p95_ms: (total > 0).then_some(1_900.25),
            latency_p99_ms: (total > 0).then_some(4_000.0),
        },
        verdict: scored.then(|| WindowVerdict {
            lstm_score: 0.5,
            transformer_score: -0.25,
            statistical_score: Some(6.5),
            ensemble_score: 3.75,
            threshold: 3.0,
            is_anomaly: true,
            model_version: "m1".into(),
            explanation: vec![KpiExplanation {
                kpi: "cost_per_task".into(),
                observed: 0.061,
                expected: 0.02,
                low: 0.015,
                high: 0.025,
                evidence: 6.5,
            }],
        }),
        updated_at_ms: now_ms(),
    }
}

pub(crate) async fn kpi_windows_upsert_replace_and_read_by_range(store: &dyn WindowStore, _caps: Caps) {
    let mut unscored = window("acme", "bot", DAY0, 40, false);
    unscored.verdict = None;
    let rows = vec![
        unscored,
        window("acme", "triage", DAY0, 0, true),
        window("acme", "bot", DAY0 + WINDOW, 41, true),
        // The last window of the day and the first of the next (another partition on ScyllaDB).
        window("acme", "bot", DAY0 + DAY_MS - WINDOW, 42, true),
        window("acme", "bot", DAY0 + DAY_MS, 43, true),
        window("globex", "bot", DAY0, 99, true),
    ];
    store.upsert_kpi_windows(&rows, WEEK_SECS).await.unwrap();
    // A replay is harmless; a revision replaces the whole row (here: now scored, new counts).
    store.upsert_kpi_windows(&rows, WEEK_SECS).await.unwrap();
    let mut revised = window("acme", "bot", DAY0, 45, true);
    revised.revision = 1;
    revised.verdict.as_mut().unwrap().statistical_score = None;
    revised.verdict.as_mut().unwrap().explanation.clear();
    store
        .upsert_kpi_windows(std::slice::from_ref(&revised), WEEK_SECS)
        .await
        .unwrap();
    let read = |agent: Option<&str>, from_ms, to_ms| {
        let q = KpiWindowQuery {
            tenant_id: "acme".into(),
            agent_id: agent.map(String::from),
            from_ms,
            to_ms,
        };
        async move { store.kpi_windows(&q).await.unwrap() }
    };
    let all = read(None, DAY0, DAY0 + DAY_MS + WINDOW).await;
    assert_eq!(
        all,
        vec![
            revised.clone(),
            rows[1].clone(),
            rows[2].clone(),
            rows[3].clone(),
            rows[4].clone()
        ],
        "ordered by window start then agent; the other tenant's row left out"
    );
    assert_eq!(
        read(Some("bot"), DAY0, DAY0 + DAY_MS).await,
        vec![revised, rows[2].clone(), rows[3].clone()],
        "one agent; the end is exclusive"
    );
    assert_eq!(
        read(None, DAY0 + WINDOW, DAY0 + 2 * WINDOW).await,
        vec![rows[2].clone()]
    );
    assert!(read(None, DAY0 + 1, DAY0 + WINDOW).await.is_empty());
    assert!(read(None, DAY0, DAY0).await.is_empty(), "an empty range");
    assert!(read(Some("nobody"), DAY0, DAY0 + DAY_MS).await.is_empty());
}

pub(crate) async fn kpi_windows_past_their_retention_are_not_kept(store: &dyn WindowStore, _caps: Caps) {
    let fresh = window("acme", "bot", DAY0, 40, true);
    let mut expired = window("acme", "crm", DAY0, 40, true);
    expired.updated_at_ms = now_ms() - 3_601_000;
    store
        .upsert_kpi_windows(&[fresh.clone(), expired], 3_600)
        .await
        .unwrap();
    let q = KpiWindowQuery {
        tenant_id: "acme".into(),
        agent_id: None,
        from_ms: DAY0,
        to_ms: DAY0 + WINDOW,
    };
    assert_eq!(store.kpi_windows(&q).await.unwrap(), vec![fresh]);
}

/// An anomaly as stored before migration 4, and as it reads back after: no statistical score,
/// no explanation.
fn anomaly_of_migration_3() -> (Anomaly, Anomaly) {
    let written = anomaly("acme", "bot", 60_000, 4.5);
    let read = Anomaly {
        statistical_score: None,
        explanation: Vec::new(),
        ..written.clone()
    };
    (written, read)
}

fn all_of_acme() -> AnomalyQuery {
    AnomalyQuery {
        tenant_id: "acme".into(),
        from_ms: 0,
        to_ms: 180_000,
        min_score: 0.0,
        only_flagged: false,
    }
}

#[tokio::test]
async fn sqlite_anomalies_written_before_migration_4_read_back_without_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.db");
    let path = path.to_str().unwrap();
    let store = SqliteStore::open(path).await.unwrap();
    assert_eq!(store.migrate_to(3).await.unwrap(), vec![1, 2, 3]);
    let (a, expected) = anomaly_of_migration_3();
    // Written by the release before: the 16 columns of migration 1.
    let old = rusqlite::Connection::open(path).unwrap();
    old.execute(
        "INSERT INTO anomalies (tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
         lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
         is_anomaly, top_features, model_version, scored_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        rusqlite::params![
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
            r#"[{"feature":"success_rate","contribution":0.8}]"#,
            a.model_version,
            a.scored_at,
        ],
    )
    .unwrap();
    drop(old);
    assert_eq!(store.migrate().await.unwrap(), vec![4, 5, 6]);
    assert_eq!(store.anomalies(&all_of_acme()).await.unwrap(), vec![expected]);
}

#[tokio::test(flavor = "multi_thread")]
async fn scylla_real_anomalies_written_before_migration_4_read_back_without_its_fields() {
    let Ok(nodes) = std::env::var("SCYLLA_NODES") else {
        eprintln!("SCYLLA_NODES not set: skipping the real-ScyllaDB upgrade of anomalies");
        return;
    };
    let keyspace = format!("contract_upgrade_{}", std::process::id());
    let url = format!("scylla://{nodes}/{keyspace}?replication_factor=1");
    let store = ScyllaStore::connect(ScyllaConfig::from_url(&url).unwrap())
        .await
        .expect("connect to SCYLLA_NODES");
    assert_eq!(store.migrate_to(3).await.unwrap(), vec![1, 2, 3]);
    let (a, expected) = anomaly_of_migration_3();
    let old = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes.split(','))
        .build()
        .await
        .unwrap();
    old.use_keyspace(&keyspace, false).await.unwrap();
    old.query_unpaged(
        "INSERT INTO anomalies (tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
         lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
         is_anomaly, top_features, model_version, scored_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            &a.tenant_id,
            a.window_start,
            &a.agent_id,
            &a.anomaly_id,
            &a.window_id,
            a.window_end,
            a.lstm_score,
            a.transformer_score,
            a.lstm_normalized,
            a.transformer_normalized,
            a.ensemble_score,
            a.threshold,
            a.is_anomaly,
            r#"[{"feature":"success_rate","contribution":0.8}]"#,
            &a.model_version,
            a.scored_at,
        ),
    )
    .await
    .unwrap();
    assert_eq!(store.migrate().await.unwrap(), vec![4, 5, 6]);
    assert_eq!(store.anomalies(&all_of_acme()).await.unwrap(), vec![expected]);
}

/// SQLite deletes the rows past the retention as it writes (ScyllaDB lets their TTL expire).
#[tokio::test]
async fn sqlite_deletes_kpi_windows_past_the_retention_when_it_writes() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut older = window("acme", "crm", DAY0, 40, true);
    older.updated_at_ms -= 600_000;
    store
        .upsert_kpi_windows(std::slice::from_ref(&older), 3_600)
        .await
        .unwrap();
    let q = KpiWindowQuery {
        tenant_id: "acme".into(),
        agent_id: None,
        from_ms: DAY0,
        to_ms: DAY0 + 900_000,
    };
    assert_eq!(store.kpi_windows(&q).await.unwrap(), vec![older]);
    // A write with a retention of 5 minutes: the row written 10 minutes ago goes.
    let newer = window("acme", "bot", DAY0, 41, false);
    store
        .upsert_kpi_windows(std::slice::from_ref(&newer), 300)
        .await
        .unwrap();
    assert_eq!(store.kpi_windows(&q).await.unwrap(), vec![newer]);
}
