//! The store contract: one set of scenarios per store trait, run against every backend.
//!
//! A module per trait holds its scenarios, each generic over nothing but that trait:
//! [`schema`] ([`SchemaStore`]), [`metrics`] (`MetricsStore`), [`checkpoints`]
//! (`CheckpointStore`), [`windows`] (`WindowStore`), [`api_keys`] (`ApiKeyStore`), [`users`]
//! (`UserStore`), and the checks of one backend in that domain. [`contract_suite!`] runs each
//! scenario on each backend as `<backend>::<trait module>::<scenario>` (e.g.
//! `cargo nextest run -p store -E 'test(/::checkpoints::/)'` runs the checkpoint contract
//! everywhere):
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
//!   range read; `store/src/scylladb/windows.rs` reads them back from the double by partition.
//! - `scylla_real`: only when `SCYLLA_NODES` (e.g. `127.0.0.1:9042`) is set; every check, with
//!   LWT, in a fresh keyspace per test.

mod api_keys;
mod checkpoints;
mod metrics;
mod schema;
mod users;
mod windows;

use std::future::Future;

use store::scylladb::{ScyllaConfig, ScyllaStore};
use store::sqlite::SqliteStore;
use store::SchemaStore;

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

/// Applies the migrations before a scenario, unless its trait module starts from an empty
/// database (`MIGRATED == false`: the [`schema`] scenarios).
async fn prepare(store: &dyn SchemaStore, migrated: bool) {
    if migrated {
        store.migrate().await.unwrap();
    }
}

/// Runs every scenario of every trait module listed on every backend.
macro_rules! contract_suite {
    ($($domain:ident: [$($scenario:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $(mod $domain {
                $(
                    #[tokio::test]
                    async fn $scenario() {
                        let store = crate::SqliteStore::open(":memory:").await.unwrap();
                        crate::prepare(&store, crate::$domain::MIGRATED).await;
                        crate::$domain::$scenario(&store, crate::FULL).await;
                    }
                )*
            })*
        }

        /// A file database: reads on the reader connections, writes on the writer.
        mod sqlite_file {
            $(mod $domain {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $scenario() {
                        let dir = tempfile::tempdir().unwrap();
                        let path = dir.path().join("contract.db");
                        let store = crate::SqliteStore::open(path.to_str().unwrap()).await.unwrap();
                        crate::prepare(&store, crate::$domain::MIGRATED).await;
                        crate::$domain::$scenario(&store, crate::FULL).await;
                    }
                )*
            })*
        }

        mod cql_test_double {
            $(mod $domain {
                $(
                    #[tokio::test]
                    async fn $scenario() {
                        crate::with_cql_test_double(|store| async move {
                            crate::prepare(&store, crate::$domain::MIGRATED).await;
                            crate::$domain::$scenario(&store, crate::CQL_TEST_DOUBLE).await
                        })
                        .await;
                    }
                )*
            })*
        }

        mod scylla_real {
            $(mod $domain {
                $(
                    #[tokio::test(flavor = "multi_thread")]
                    async fn $scenario() {
                        let Some(store) = crate::real_scylla(stringify!($scenario)).await else { return };
                        crate::prepare(&store, crate::$domain::MIGRATED).await;
                        crate::$domain::$scenario(&store, crate::FULL).await;
                    }
                )*
            })*
        }
    };
}

contract_suite!(
    schema: [migrations_apply_once],
    metrics: [
        daily_upsert_replaces_complete_values,
        daily_query_filters_tenant_agent_and_days,
    ],
    checkpoints: [checkpoints_round_trip_and_never_go_back],
    windows: [
        anomalies_upsert_and_filter,
        anomalies_keep_statistical_score_and_explanation,
        kpi_windows_upsert_replace_and_read_by_range,
        kpi_windows_past_their_retention_are_not_kept,
    ],
    api_keys: [api_keys_create_find_list_revoke],
    users: [
        users_create_find_and_conflict_by_field,
        concurrent_registrations_of_one_email_make_one_user,
        tenant_grants_are_per_user,
        deleting_a_user_removes_its_grants,
    ],
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

/// A store (not migrated) in a fresh keyspace of the real cluster in `SCYLLA_NODES`, or `None` (skipped).
pub(crate) async fn real_scylla(test: &str) -> Option<ScyllaStore> {
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
