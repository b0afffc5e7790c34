//! The ScyllaDB backend (`scylla` driver, prepared statements cached by `CachingSession`).
//!
//! - Keyspace created on connect with the configured replication factor.
//! - Every write is a plain upsert of complete values (idempotent on replay).
//! - Checkpoints never go back: with `lwt=true` (the default, for real clusters) through
//!   lightweight transactions (`IF NOT EXISTS`, `IF next_offset <= ?`); with `lwt=false` (the
//!   in-memory CQL test server, which rejects LWT) through read-then-write, which is not safe
//!   against two concurrent writers.
//! - Users: `email` and `username` are made unique by claim rows in `users_by_email` and
//!   `users_by_username`, taken with `INSERT ... IF NOT EXISTS` (Paxos per value: of concurrent
//!   registrations exactly one wins) and released with `DELETE ... IF user_id = ?` when the
//!   second claim fails; see `schemas/cql/0003_users.cql`. With `lwt=false` a read-then-write
//!   again, not safe against concurrent registrations.
//! - Range reads (`day >= ? AND day <= ?`) are used for dashboards; the CQL test server only
//!   supports equality, so those are checked against real ScyllaDB only.
//! - Migrations run their statements as written (`ALTER TABLE` included). The CQL test server
//!   has no `ALTER TABLE`: with `alter_table=false` the columns a migration adds are folded into
//!   the `CREATE TABLE` of the same run ([`migrations::fold_added_columns`]), which works for a
//!   fresh keyspace only.
//!
//! One file per domain trait: `metrics` ([`MetricsStore`](crate::MetricsStore)),
//! `checkpoints`, `windows` (anomalies and KPI windows), `users`, `api_keys`; [`ScyllaConfig`]
//! in `config`; here the session, the migrations runner ([`SchemaStore`]) and the read and
//! write helpers the domain files share.

mod api_keys;
mod checkpoints;
mod config;
mod kpis;
mod metrics;
mod users;
mod windows;

use std::ops::RangeInclusive;

use async_trait::async_trait;
use futures::TryStreamExt;
use schemas::time::now_ms;
use scylla::client::caching_session::CachingSession;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::Statement;

pub use self::config::ScyllaConfig;
use crate::migrations::{self, statements, Migration};
use crate::{Error, Result, SchemaStore};

/// The ScyllaDB store.
pub struct ScyllaStore {
    session: CachingSession,
    config: ScyllaConfig,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("config", &self.config)
            .finish()
    }
}

impl ScyllaStore {
    /// Connects, creates the keyspace if missing and uses it.
    pub async fn connect(config: ScyllaConfig) -> Result<ScyllaStore> {
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .auto_await_schema_agreement(config.schema_agreement)
            .refresh_metadata_on_auto_schema_agreement(config.schema_agreement)
            .fetch_schema_metadata(config.schema_agreement)
            .build()
            .await
            .map_err(Error::scylla)?;
        let create = format!(
            "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
            config.keyspace, config.replication_factor
        );
        session.query_unpaged(create, ()).await.map_err(Error::scylla)?;
        session
            .use_keyspace(&config.keyspace, false)
            .await
            .map_err(Error::scylla)?;
        Ok(ScyllaStore {
            session: CachingSession::from(session, 64),
            config,
        })
    }

    /// Applies the migrations not applied yet up to version `last` (inclusive), in order;
    /// returns the versions it applied. [`SchemaStore::migrate`] applies all of them; a test of data
    /// written before a migration stops earlier. With `alter_table=false` the pending
    /// migrations' statements are [`migrations::fold_added_columns`].
    pub async fn migrate_to(&self, last: u32) -> Result<Vec<u32>> {
        self.ddl("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, applied_at bigint)")
            .await?;
        let done = self.applied_migrations().await?;
        let pending: Vec<Migration> = migrations::CQL
            .iter()
            .filter(|m| m.version <= last && !done.contains(&m.version))
            .copied()
            .collect();
        let scripts: Vec<Vec<String>> = if self.config.alter_table {
            pending.iter().map(|m| statements(m.script)).collect()
        } else {
            migrations::fold_added_columns(&pending)?
        };
        let mut newly = Vec::new();
        for (m, script) in pending.iter().zip(scripts) {
            for statement in script {
                self.ddl(&statement).await.map_err(|e| Error::Migration {
                    version: m.version,
                    name: m.name,
                    message: e.to_string(),
                })?;
            }
            self.session
                .execute_unpaged(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version as i32, m.name, now_ms()),
                )
                .await
                .map_err(Error::scylla)?;
            tracing::info!(version = m.version, name = m.name, "applied cql migration");
            newly.push(m.version);
        }
        Ok(newly)
    }

    async fn ddl(&self, statement: &str) -> Result<()> {
        self.session
            .get_session()
            .query_unpaged(statement, ())
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    /// Every row a paged read returns.
    async fn read_all<R>(&self, statement: impl Into<Statement>, values: impl SerializeRow) -> Result<Vec<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        self.session
            .execute_iter(statement, values)
            .await
            .map_err(Error::scylla)?
            .rows_stream::<R>()
            .map_err(Error::scylla)?
            .try_collect()
            .await
            .map_err(Error::scylla)
    }

    /// The first row of an unpaged read (a read by primary key), if any.
    async fn read_one<R>(
        &self,
        statement: impl Into<Statement>,
        values: impl SerializeRow,
    ) -> Result<Option<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(Error::scylla)?
            .into_rows_result()
            .map_err(Error::scylla)?
            .maybe_first_row::<R>()
            .map_err(Error::scylla)
    }

    /// Runs `statement` once per row of `rows`, concurrently (every write is an upsert of
    /// complete values, so their order does not matter).
    async fn write_each<R: SerializeRow>(
        &self,
        statement: &str,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<()> {
        let writes = rows.into_iter().map(|row| async move {
            self.session
                .execute_unpaged(statement, row)
                .await
                .map_err(Error::scylla)
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    /// The rows of a table partitioned by (tenant, UTC day) for every day of `days`: one
    /// equality read per partition (`statement` binds the tenant and the day), concurrently,
    /// concatenated in day order.
    async fn read_days<R>(
        &self,
        statement: &str,
        tenant_id: &str,
        days: RangeInclusive<i32>,
    ) -> Result<Vec<R>>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        let reads = days.map(|day| self.read_all::<R>(statement, (tenant_id, day)));
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}

/// `n` bind markers, comma-separated: the `VALUES (...)` of an insert of `n` columns.
fn markers(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Reads the `[applied]` column of a lightweight-transaction result.
fn applied(result: scylla::response::query_result::QueryResult) -> Result<bool> {
    let rows = result.into_rows_result().map_err(Error::scylla)?;
    let row = rows.first_row::<(bool,)>().or_else(|_| {
        // LWT results carry the current row after [applied]; read only the first column.
        rows.rows::<scylla::value::Row>()
            .map_err(Error::scylla)?
            .next()
            .ok_or_else(|| Error::Scylla("empty LWT result".into()))?
            .map_err(Error::scylla)
            .and_then(|row| match row.columns.first() {
                Some(Some(scylla::value::CqlValue::Boolean(b))) => Ok((*b,)),
                other => Err(Error::Scylla(format!("unexpected LWT result {other:?}"))),
            })
    })?;
    Ok(row.0)
}

#[async_trait]
impl SchemaStore for ScyllaStore {
    async fn migrate(&self) -> Result<Vec<u32>> {
        self.migrate_to(u32::MAX).await
    }

    async fn applied_migrations(&self) -> Result<Vec<u32>> {
        let result = self
            .session
            .get_session()
            .query_unpaged("SELECT version FROM schema_migrations", ())
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        let mut versions = rows
            .rows::<(i32,)>()
            .map_err(Error::scylla)?
            .map(|r| r.map(|(v,)| v as u32).map_err(Error::scylla))
            .collect::<Result<Vec<_>>>()?;
        versions.sort_unstable();
        Ok(versions)
    }
}

/// Runs `body` on a store connected to a fresh in-memory CQL test double (`lwt=false`,
/// `alter_table=false`; see the module docs).
#[cfg(test)]
async fn on_cql_test_double<F, Fut>(body: F)
where
    F: FnOnce(ScyllaStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut body = Some(body);
    kassandra_tester::KassandraTester::new(kassandra::session::KassandraSession::new())
        .in_scope(|addr| {
            let body = body.take().expect("the scope runs once");
            async move {
                let url = format!(
                    "scylla://{addr}/unit?replication_factor=1&lwt=false&schema_agreement=false&alter_table=false"
                );
                let store = ScyllaStore::connect(ScyllaConfig::from_url(&url).unwrap())
                    .await
                    .unwrap();
                body(store).await;
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .await
        .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_alter_table_a_migration_adding_columns_needs_a_fresh_keyspace() {
        on_cql_test_double(|store| async move {
            assert_eq!(store.migrate_to(3).await.unwrap(), vec![1, 2, 3]);
            let err = store.migrate().await.unwrap_err();
            assert!(matches!(err, Error::Migration { version: 4, .. }), "{err}");
            assert_eq!(store.applied_migrations().await.unwrap(), vec![1, 2, 3]);
        })
        .await;
    }
}
