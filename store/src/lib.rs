//! The storage interface of the pipeline ([`Store`]) and its two backends:
//!
//! - [`sqlite::SqliteStore`]: embedded, durable, the default on a single machine
//!   (`sqlite://<path>`).
//! - [`scylladb::ScyllaStore`]: ScyllaDB through the `scylla` driver
//!   (`scylla://host:port[,host:port]/<keyspace>[?replication_factor=N]`).
//!
//! Both apply the versioned migrations in `schemas/sql` and `schemas/cql` (recorded in a
//! `schema_migrations` table) and pass one contract-test suite (`tests/contract.rs`).
//!
//! # Layout
//! - [`model`]: the rows: [`DailyMetric`], [`KpiWindowRow`], [`Checkpoint`], [`ApiKey`],
//!   [`User`], query types.
//! - [`migrations`]: the embedded migration files.
//! - [`rollup`]: tenant roll-ups (agent `*`), kept true under concurrent writers.
//! - [`sqlite`], [`scylladb`]: the backends.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> store::Result<()> {
//! let store = store::open("sqlite://data/agentops.db").await?;
//! store.migrate().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
pub mod migrations;
pub mod model;
pub mod rollup;
pub mod scylladb;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
pub use error::{Error, Result};
pub use model::{
    normalize_login, remaining_ttl_secs, AnomalyQuery, ApiKey, Checkpoint, DailyMetric, DailyMetricsQuery,
    KpiWindowQuery, KpiWindowRow, User, WindowVerdict, ALL_AGENTS,
};
use schemas::Anomaly;
pub use uuid::Uuid;

/// Everything the services persist. Every write is an idempotent upsert of complete values.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the migrations not applied yet, in order; returns the versions it applied.
    async fn migrate(&self) -> Result<Vec<u32>>;

    /// The versions applied so far, ascending.
    async fn applied_migrations(&self) -> Result<Vec<u32>>;

    /// Inserts or replaces daily rows (key: tenant, day, agent).
    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()>;

    /// Daily rows of a tenant (optionally one agent; [`ALL_AGENTS`] is the tenant roll-up)
    /// whose day is in `[from, to]`, ordered by day then agent.
    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>>;

    /// [`Store::daily_metrics`] without the latency digests (`latency_digest` left empty): what
    /// a dashboard reads. A day's digest is up to 16 KB, most of its row; SQLite leaves it
    /// unread, the default reads the rows and drops it.
    async fn daily_summaries(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        let mut rows = self.daily_metrics(query).await?;
        for row in &mut rows {
            row.latency_digest = Vec::new();
        }
        Ok(rows)
    }

    /// Writes agent rows (roll-up rows given are ignored) and rebuilds the tenant roll-ups
    /// ([`ALL_AGENTS`]) of the (tenant, day)s they touch from the stored agent rows, such that
    /// the roll-ups reflect every agent row written before, whatever the interleaving of
    /// concurrent writers (see [`rollup`]). The default reads each touched tenant's rows with
    /// [`Store::daily_metrics`] after the write and again after the roll-ups, until stable;
    /// SQLite does it in one write transaction.
    async fn upsert_daily_metrics_with_rollups(&self, rows: &[DailyMetric]) -> Result<()> {
        rollup::upsert_with_rollups(&rollup::StoreRows(self), rows).await
    }

    /// Saves the checkpoint of one input partition. The offset never goes back: saving an
    /// offset lower than the stored one fails with [`Error::CheckpointRegression`] (a stale
    /// owner after a rebalance must not overwrite its successor's progress).
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The checkpoint of one input partition, if any.
    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>>;

    /// Inserts or replaces anomaly verdicts (key: tenant, window start, agent).
    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()>;

    /// Verdicts of a tenant with `window_start` in `[from_ms, to_ms)` and
    /// `ensemble_score >= min_score`, ordered by window start then agent.
    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>>;

    /// Inserts or replaces KPI windows with their verdicts (key: tenant, window start, agent),
    /// each kept for `retention_secs` after its `updated_at_ms`, which the writer stamps with the
    /// time it writes (rows already past it are not written, [`remaining_ttl_secs`]). SQLite
    /// deletes the expired rows as it writes; ScyllaDB writes each row `USING TTL` the retention.
    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()>;

    /// KPI windows of a tenant (optionally one agent) with `window_start` in
    /// `[from_ms, to_ms)`, ordered by window start then agent.
    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>>;

    /// Stores a new API key (its id must be new).
    async fn create_api_key(&self, key: &ApiKey) -> Result<()>;

    /// The API key with this id, revoked or not.
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>>;

    /// Every API key, ordered by tenant then id.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;

    /// Marks a key revoked at `at_ms`; false when there is no such key. Revoking twice keeps
    /// the first time.
    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool>;

    /// Stores a new user. Email and username are stored lowercase ([`normalize_login`]) and are
    /// unique, also under concurrent registrations: a taken one fails with [`Error::Taken`]
    /// naming the field (`email` is checked first). SQLite: UNIQUE constraints; ScyllaDB:
    /// lightweight-transaction claims (see `schemas/cql/0003_users.cql`).
    async fn create_user(&self, user: &User) -> Result<()>;

    /// The user with this id.
    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>>;

    /// The user with this email (when `login` contains `@`) or username, case-insensitively.
    async fn user_by_login(&self, login: &str) -> Result<Option<User>>;

    /// Deletes a user with its tenant grants (and, on ScyllaDB, its email/username claims);
    /// false when there is no such user.
    async fn delete_user(&self, id: Uuid) -> Result<bool>;

    /// Lets a user read a tenant's dashboards (idempotent).
    async fn grant_tenant(&self, user_id: Uuid, tenant_id: &str, at_ms: i64) -> Result<()>;

    /// Withdraws a grant; false when there was none.
    async fn revoke_tenant(&self, user_id: Uuid, tenant_id: &str) -> Result<bool>;

    /// The tenants granted to a user, ascending.
    async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<String>>;
}

/// Opens the store named by `url` (see the crate docs for the URL forms).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::SqliteStore::open(path).await?))
    } else if url.starts_with("scylla://") {
        let config = scylladb::ScyllaConfig::from_url(url)?;
        Ok(Arc::new(scylladb::ScyllaStore::connect(config).await?))
    } else {
        Err(Error::BadUrl {
            url: url.to_string(),
            message: "expected sqlite:// or scylla://".into(),
        })
    }
}

/// Opens the store at `url` and applies pending migrations, as every service does at start.
pub async fn open_migrated(url: &str) -> Result<Arc<dyn Store>> {
    let store = open(url).await?;
    let applied = store.migrate().await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied store migrations");
    }
    Ok(store)
}
