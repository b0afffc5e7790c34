//! The store contract: one set of scenarios, run against every backend.
//!
//! - `sqlite`: always, on a private in-memory database (one connection); `sqlite_file`: on a
//!   file, where reads run on the reader connections (and a file for durability).
//! - `cql_test_double`: always, against `kassandra-tester`, an in-memory **test double** of the
//!   CQL protocol (not a database). It cannot check: range reads (`day >= ?`, only equality is
//!   parsed), lightweight transactions (`IF NOT EXISTS`, `IF col <= ?`: "Error parsing
//!   request"), `NetworkTopologyStrategy` semantics, consistency levels. Scenarios skip those
//!   checks through [`Caps`] and the backend runs with `lwt=false` (so concurrent registrations
//!   of one email are only proven unique on SQLite and real ScyllaDB). It has no `ALTER TABLE`
//!   either: the backend runs with `alter_table=false`, which folds the columns migrations add
//!   into their `CREATE TABLE` (a fresh keyspace), so the upgrade of rows written before a
//!   migration is proven on SQLite and real ScyllaDB only. Anomalies are read back there by a
//!   range read; `store/src/scylladb.rs` reads them back from the double by partition.
//! - `scylla_real`: only when `SCYLLA_NODES` (e.g. `127.0.0.1:9042`) is set; every check, with
//!   LWT, in a fresh keyspace per test.

use std::future::Future;

use store::scylladb::{ScyllaConfig, ScyllaStore};
use store::sqlite::SqliteStore;
use store::Store;

/// What the backend under test can prove.
#[derive(Clone, Copy)]
pub(crate) struct Caps {
    range_reads: bool,
    /// Unique fields hold under concurrent writers (SQLite constraints, LWT claims).
    concurrent_uniqueness: bool,
}

const FULL: Caps = Caps {
    range_reads: true,
    concurrent_uniqueness: true,
};
const CQL_TEST_DOUBLE: Caps = Caps {
    range_reads: false,
    concurrent_uniqueness: false,
};

mod scenarios {
    use schemas::{Anomaly, FeatureContribution, KpiExplanation};
    use store::{
        AnomalyQuery, Checkpoint, DailyMetric, DailyMetricsQuery, Error, KpiWindowQuery, KpiWindowRow, Store,
        User, Uuid, WindowVerdict, ALL_AGENTS,
    };
    use time::macros::date;
    use time::Date;

    use super::Caps;

    fn daily(tenant: &str, agent: &str, day: Date, total: i64) -> DailyMetric {
        DailyMetric {
            tenant_id: tenant.into(),
            agent_id: agent.into(),
            day,
            tasks_total: total,
            succeeded: total - 2,
            failed: 1,
            cancelled: 1,
            tasks_with_intervention: 3,
            interventions: 5,
            cost_micros: total * 1_000,
            latency_p50_ms: Some(120.5),
            latency_p95_ms: Some(900.25),
            latency_p99_ms: None,
            latency_digest: vec![0, 1, 2, 255, 0],
            is_final: false,
            updated_at_ms: 1_700_000_000_000,
        }
    }

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

    pub(super) async fn migrations_apply_once(store: &dyn Store, _caps: Caps) {
        assert_eq!(store.migrate().await.unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            store.migrate().await.unwrap(),
            Vec::<u32>::new(),
            "second run applies nothing"
        );
        assert_eq!(store.applied_migrations().await.unwrap(), vec![1, 2, 3, 4, 5, 6]);
    }

    pub(super) async fn daily_upsert_replaces_complete_values(store: &dyn Store, caps: Caps) {
        store.migrate().await.unwrap();
        let first = daily("acme", "bot", date!(2026 - 11 - 20), 10);
        store
            .upsert_daily_metrics(std::slice::from_ref(&first))
            .await
            .unwrap();
        let mut second = daily("acme", "bot", date!(2026 - 11 - 20), 12);
        second.is_final = true;
        second.latency_p99_ms = Some(2000.0);
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
    async fn read(store: &dyn Store, q: &DailyMetricsQuery) -> Vec<DailyMetric> {
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

    pub(super) async fn daily_query_filters_tenant_agent_and_days(store: &dyn Store, caps: Caps) {
        store.migrate().await.unwrap();
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
        let totals = |rows: Vec<DailyMetric>| rows.iter().map(|r| r.tasks_total).collect::<Vec<_>>();
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

    pub(super) async fn checkpoints_round_trip_and_never_go_back(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        assert_eq!(store.load_checkpoint("g", "events", 0).await.unwrap(), None);
        let cp = |partition, next_offset, state: &[u8]| Checkpoint {
            consumer_group: "g".into(),
            topic: "events".into(),
            partition,
            next_offset,
            state: state.to_vec(),
            updated_at_ms: 42,
        };
        store.save_checkpoint(&cp(0, 100, b"state-100")).await.unwrap();
        store.save_checkpoint(&cp(1, 7, b"p1")).await.unwrap();
        store
            .save_checkpoint(&cp(0, 250, b"state-250\0bytes"))
            .await
            .unwrap();
        store
            .save_checkpoint(&cp(0, 250, b"state-250\0bytes"))
            .await
            .unwrap(); // same offset: idempotent
        let err = store.save_checkpoint(&cp(0, 200, b"stale")).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::CheckpointRegression {
                    stored: 250,
                    attempted: 200,
                    partition: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            store.load_checkpoint("g", "events", 0).await.unwrap(),
            Some(cp(0, 250, b"state-250\0bytes"))
        );
        assert_eq!(
            store.load_checkpoint("g", "events", 1).await.unwrap(),
            Some(cp(1, 7, b"p1"))
        );
        assert_eq!(store.load_checkpoint("other", "events", 0).await.unwrap(), None);
    }

    pub(super) async fn anomalies_upsert_and_filter(store: &dyn Store, caps: Caps) {
        store.migrate().await.unwrap();
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

    pub(super) async fn anomalies_keep_statistical_score_and_explanation(store: &dyn Store, caps: Caps) {
        store.migrate().await.unwrap();
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
            tasks_total: total,
            succeeded: total - 3,
            failed: 2,
            cancelled: 1,
            tasks_with_intervention: 4,
            interventions: 6,
            cost_micros: total * 2_500,
            latency_p50_ms: (total > 0).then_some(410.5),
            latency_p95_ms: (total > 0).then_some(1_900.25),
            latency_p99_ms: (total > 0).then_some(4_000.0),
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
            updated_at_ms: store_now_ms(),
        }
    }

    fn store_now_ms() -> i64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub(super) async fn kpi_windows_upsert_replace_and_read_by_range(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let mut unscored = window("acme", "bot", DAY0, 40, false);
        unscored.verdict = None;
        let rows = vec![
            unscored,
            window("acme", "triage", DAY0, 0, true),
            window("acme", "bot", DAY0 + WINDOW, 41, true),
            // The last window of the day and the first of the next (another partition on ScyllaDB).
            window("acme", "bot", DAY0 + 86_400_000 - WINDOW, 42, true),
            window("acme", "bot", DAY0 + 86_400_000, 43, true),
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
        let all = read(None, DAY0, DAY0 + 86_400_000 + WINDOW).await;
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
            read(Some("bot"), DAY0, DAY0 + 86_400_000).await,
            vec![revised, rows[2].clone(), rows[3].clone()],
            "one agent; the end is exclusive"
        );
        assert_eq!(
            read(None, DAY0 + WINDOW, DAY0 + 2 * WINDOW).await,
            vec![rows[2].clone()]
        );
        assert!(read(None, DAY0 + 1, DAY0 + WINDOW).await.is_empty());
        assert!(read(None, DAY0, DAY0).await.is_empty(), "an empty range");
        assert!(read(Some("nobody"), DAY0, DAY0 + 86_400_000).await.is_empty());
    }

    pub(super) async fn kpi_windows_past_their_retention_are_not_kept(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let fresh = window("acme", "bot", DAY0, 40, true);
        let mut expired = window("acme", "crm", DAY0, 40, true);
        expired.updated_at_ms = store_now_ms() - 3_601_000;
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

    pub(super) async fn api_keys_create_find_list_revoke(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let key = |id: &str, tenant: &str| store::ApiKey {
            key_id: id.into(),
            tenant_id: tenant.into(),
            secret_sha256: format!("{:0>64}", id),
            label: format!("label of {id}"),
            created_at_ms: 1_000,
            revoked_at_ms: None,
        };
        store.create_api_key(&key("k2", "globex")).await.unwrap();
        store.create_api_key(&key("k1", "acme")).await.unwrap();
        assert!(
            matches!(
                store.create_api_key(&key("k1", "globex")).await,
                Err(store::Error::Conflict(_))
            ),
            "an id is never reused"
        );
        assert_eq!(store.api_key("k1").await.unwrap(), Some(key("k1", "acme")));
        assert_eq!(store.api_key("nope").await.unwrap(), None);
        assert_eq!(
            store.api_keys().await.unwrap(),
            vec![key("k1", "acme"), key("k2", "globex")]
        );
        assert!(store.revoke_api_key("k1", 5_000).await.unwrap());
        assert!(store.revoke_api_key("k1", 9_000).await.unwrap());
        assert!(!store.revoke_api_key("nope", 5_000).await.unwrap());
        let revoked = store.api_key("k1").await.unwrap().unwrap();
        assert_eq!(
            revoked.revoked_at_ms,
            Some(5_000),
            "the first revocation time is kept"
        );
        assert_eq!(store.api_key("k2").await.unwrap().unwrap().revoked_at_ms, None);
    }

    fn user(email: &str, username: Option<&str>) -> User {
        User {
            id: Uuid::new_v4(),
            email: email.into(),
            username: username.map(String::from),
            password_hash: "$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01".into(),
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
        }
    }

    pub(super) async fn users_create_find_and_conflict_by_field(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let ada = user("Ada@Example.COM", Some("Ada_L"));
        store.create_user(&ada).await.unwrap();
        let stored = User {
            email: "ada@example.com".into(),
            username: Some("ada_l".into()),
            ..ada.clone()
        };
        assert_eq!(
            store.user_by_id(ada.id).await.unwrap(),
            Some(stored.clone()),
            "stored lowercase"
        );
        for login in ["ada@example.com", "ADA@example.com", "ada_l", "Ada_L"] {
            assert_eq!(
                store.user_by_login(login).await.unwrap(),
                Some(stored.clone()),
                "{login}"
            );
        }
        assert_eq!(store.user_by_login("nobody@example.com").await.unwrap(), None);
        assert_eq!(store.user_by_login("nobody").await.unwrap(), None);
        assert_eq!(store.user_by_id(Uuid::new_v4()).await.unwrap(), None);

        let same_email = user("ADA@example.com", Some("other"));
        let err = store.create_user(&same_email).await.unwrap_err();
        assert!(matches!(err, Error::Taken { field: "email" }), "{err}");
        let same_name = user("grace@example.com", Some("ADA_L"));
        let err = store.create_user(&same_name).await.unwrap_err();
        assert!(matches!(err, Error::Taken { field: "username" }), "{err}");
        // The failed registrations left nothing behind: their other values are still free.
        assert_eq!(store.user_by_id(same_email.id).await.unwrap(), None);
        assert_eq!(store.user_by_id(same_name.id).await.unwrap(), None);
        assert_eq!(store.user_by_login("other").await.unwrap(), None);
        assert_eq!(store.user_by_login("grace@example.com").await.unwrap(), None);
        let grace = user("grace@example.com", Some("other"));
        store.create_user(&grace).await.unwrap();

        // Users without a username do not collide with each other.
        store.create_user(&user("x@example.com", None)).await.unwrap();
        store.create_user(&user("y@example.com", None)).await.unwrap();

        // Deleting frees the values and the login.
        assert!(store.delete_user(ada.id).await.unwrap());
        assert!(!store.delete_user(ada.id).await.unwrap());
        assert_eq!(store.user_by_id(ada.id).await.unwrap(), None);
        assert_eq!(store.user_by_login("ada@example.com").await.unwrap(), None);
        assert_eq!(store.user_by_login("ada_l").await.unwrap(), None);
        store
            .create_user(&user("ada@example.com", Some("ada_l")))
            .await
            .unwrap();
    }

    pub(super) async fn concurrent_registrations_of_one_email_make_one_user(store: &dyn Store, caps: Caps) {
        store.migrate().await.unwrap();
        if !caps.concurrent_uniqueness {
            return;
        }
        let attempts: Vec<User> = (0..16)
            .map(|i| user("race@example.com", Some(&format!("racer{i}"))))
            .collect();
        let results = futures::future::join_all(attempts.iter().map(|u| store.create_user(u))).await;
        let won: Vec<&User> = attempts
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(u, _)| u)
            .collect();
        assert_eq!(won.len(), 1, "{results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(r, Err(Error::Taken { field: "email" })), "{r:?}");
        }
        let found = store.user_by_login("race@example.com").await.unwrap().unwrap();
        assert_eq!(found.id, won[0].id);
    }

    pub(super) async fn tenant_grants_are_per_user(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(store.tenants_of_user(a).await.unwrap().is_empty());
        store.grant_tenant(a, "globex", 1).await.unwrap();
        store.grant_tenant(a, "acme", 1).await.unwrap();
        store.grant_tenant(a, "acme", 2).await.unwrap(); // idempotent
        store.grant_tenant(b, "initech", 1).await.unwrap();
        assert_eq!(store.tenants_of_user(a).await.unwrap(), vec!["acme", "globex"]);
        assert_eq!(store.tenants_of_user(b).await.unwrap(), vec!["initech"]);
        assert!(store.revoke_tenant(a, "acme").await.unwrap());
        assert!(!store.revoke_tenant(a, "acme").await.unwrap());
        assert!(!store.revoke_tenant(b, "globex").await.unwrap());
        assert_eq!(store.tenants_of_user(a).await.unwrap(), vec!["globex"]);
        assert_eq!(store.tenants_of_user(b).await.unwrap(), vec!["initech"]);
    }

    pub(super) async fn deleting_a_user_removes_its_grants(store: &dyn Store, _caps: Caps) {
        store.migrate().await.unwrap();
        let u = user("gone@example.com", None);
        store.create_user(&u).await.unwrap();
        store.grant_tenant(u.id, "acme", 1).await.unwrap();
        assert!(store.delete_user(u.id).await.unwrap());
        assert!(store.tenants_of_user(u.id).await.unwrap().is_empty());
    }
}

macro_rules! contract_suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let store = super::SqliteStore::open(":memory:").await.unwrap();
                    super::scenarios::$scenario(&store, super::FULL).await;
                }
            )*
        }

        /// A file database: reads on the reader connections, writes on the writer.
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("contract.db");
                    let store = super::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
                    super::scenarios::$scenario(&store, super::FULL).await;
                }
            )*
        }

        mod cql_test_double {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::with_cql_test_double(|store| async move {
                        super::scenarios::$scenario(&store, super::CQL_TEST_DOUBLE).await
                    })
                    .await;
                }
            )*
        }

        mod scylla_real {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    let Some(store) = super::real_scylla(stringify!($scenario)).await else { return };
                    super::scenarios::$scenario(&store, super::FULL).await;
                }
            )*
        }
    };
}

contract_suite!(
    migrations_apply_once,
    daily_upsert_replaces_complete_values,
    daily_query_filters_tenant_agent_and_days,
    checkpoints_round_trip_and_never_go_back,
    anomalies_upsert_and_filter,
    anomalies_keep_statistical_score_and_explanation,
    kpi_windows_upsert_replace_and_read_by_range,
    kpi_windows_past_their_retention_are_not_kept,
    api_keys_create_find_list_revoke,
    users_create_find_and_conflict_by_field,
    concurrent_registrations_of_one_email_make_one_user,
    tenant_grants_are_per_user,
    deleting_a_user_removes_its_grants,
);

/// Runs `body` against a `ScyllaStore` connected to a fresh in-memory CQL test double.
async fn with_cql_test_double<F, Fut>(body: F)
where
    F: Fn(ScyllaStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let tester = kassandra_tester::KassandraTester::new(kassandra::session::KassandraSession::new());
    tester
        .in_scope(|addr| {
            let body = &body;
            async move {
                let config = ScyllaConfig::from_url(&format!(
                    "scylla://{addr}/contract?replication_factor=1&lwt=false&schema_agreement=false&alter_table=false"
                ))
                .unwrap();
                let store = ScyllaStore::connect(config)
                    .await
                    .expect("connect to the CQL test double");
                body(store).await;
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .await
        .unwrap();
}

/// A store in a fresh keyspace of the real cluster in `SCYLLA_NODES`, or `None` (skipped).
async fn real_scylla(test: &str) -> Option<ScyllaStore> {
    let Ok(nodes) = std::env::var("SCYLLA_NODES") else {
        eprintln!("SCYLLA_NODES not set: skipping the real-ScyllaDB run of {test}");
        return None;
    };
    let keyspace = format!("contract_{}_{}", test, std::process::id());
    let url = format!("scylla://{nodes}/{keyspace}?replication_factor=1");
    Some(
        ScyllaStore::connect(ScyllaConfig::from_url(&url).unwrap())
            .await
            .expect("connect to SCYLLA_NODES"),
    )
}

/// An anomaly as stored before migration 4, and as it reads back after: no statistical score,
/// no explanation.
fn anomaly_of_migration_3() -> (schemas::Anomaly, schemas::Anomaly) {
    let written = scenarios::anomaly("acme", "bot", 60_000, 4.5);
    let read = schemas::Anomaly {
        statistical_score: None,
        explanation: Vec::new(),
        ..written.clone()
    };
    (written, read)
}

fn all_of_acme() -> store::AnomalyQuery {
    store::AnomalyQuery {
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

#[tokio::test]
async fn sqlite_file_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/agentops.db");
    let path = path.to_str().unwrap();
    {
        let store = SqliteStore::open(path).await.unwrap();
        scenarios::checkpoints_round_trip_and_never_go_back(&store, FULL).await;
    }
    let reopened = SqliteStore::open(path).await.unwrap();
    assert_eq!(
        reopened.migrate().await.unwrap(),
        Vec::<u32>::new(),
        "migrations are recorded"
    );
    assert_eq!(
        reopened
            .load_checkpoint("g", "events", 0)
            .await
            .unwrap()
            .unwrap()
            .next_offset,
        250
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_connections_racing_for_one_email_make_one_user() {
    // Two stores on one file stand for two processes (the server and the CLI).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let path = path.to_str().unwrap();
    let first = SqliteStore::open(path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(path).await.unwrap();
    let user = |i: usize| store::User {
        id: store::Uuid::new_v4(),
        email: "race@example.com".into(),
        username: None,
        password_hash: "x".into(),
        created_at_ms: i as i64,
        updated_at_ms: i as i64,
    };
    let attempts = (0..20).map(|i| {
        let (a, b) = (first.clone(), second.clone());
        tokio::spawn(async move {
            let store = if i % 2 == 0 { a } else { b };
            store.create_user(&user(i)).await
        })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, store::Error::Taken { field: "email" })));
}

/// SQLite deletes the rows past the retention as it writes (ScyllaDB lets their TTL expire).
#[tokio::test]
async fn sqlite_deletes_kpi_windows_past_the_retention_when_it_writes() {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut older = scenarios::window("acme", "crm", scenarios::DAY0, 40, true);
    older.updated_at_ms -= 600_000;
    store
        .upsert_kpi_windows(std::slice::from_ref(&older), 3_600)
        .await
        .unwrap();
    let q = store::KpiWindowQuery {
        tenant_id: "acme".into(),
        agent_id: None,
        from_ms: scenarios::DAY0,
        to_ms: scenarios::DAY0 + 900_000,
    };
    assert_eq!(store.kpi_windows(&q).await.unwrap(), vec![older]);
    // A write with a retention of 5 minutes: the row written 10 minutes ago goes.
    let newer = scenarios::window("acme", "bot", scenarios::DAY0, 41, false);
    store
        .upsert_kpi_windows(std::slice::from_ref(&newer), 300)
        .await
        .unwrap();
    assert_eq!(store.kpi_windows(&q).await.unwrap(), vec![newer]);
}
