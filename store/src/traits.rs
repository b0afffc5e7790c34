//! The store traits, one per domain, and [`Store`], the sum of them.
//!
//! Code that needs one domain takes that trait (the gateway's API-key commands take an
//! [`ApiKeyStore`], the auth-api's user commands a [`UserStore`]); a service that needs several
//! holds an `Arc<dyn Store>`. Every backend implements each domain trait, and [`Store`] comes
//! with them (a blanket impl). Every write is an idempotent upsert of complete values.

use async_trait::async_trait;
use schemas::Anomaly;
use uuid::Uuid;

use crate::model::{
    AnomalyQuery, ApiKey, Checkpoint, DailyMetric, DailyMetricsQuery, KpiWindowQuery, KpiWindowRow, User,
};
use crate::{rollup, Result};

/// The schema: versioned migrations (see [`crate::migrations`]).
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// Applies the migrations not applied yet, in order; returns the versions it applied.
    async fn migrate(&self) -> Result<Vec<u32>>;

    /// The versions applied so far, ascending.
    async fn applied_migrations(&self) -> Result<Vec<u32>>;
}

/// Daily metrics per (tenant, day, agent) and the tenant roll-ups ([`crate::ALL_AGENTS`]).
#[async_trait]
pub trait MetricsStore: Send + Sync {
    /// Inserts or replaces daily rows (key: tenant, day, agent).
    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()>;

    /// Daily rows of a tenant (optionally one agent; [`crate::ALL_AGENTS`] is the tenant
    /// roll-up) whose day is in `[from, to]`, ordered by day then agent.
    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>>;

    /// [`MetricsStore::daily_metrics`] without the latency digests (`latency_digest` left
    /// empty): what a dashboard reads. A day's digest is up to 16 KB, most of its row; SQLite
    /// leaves it unread, the default reads the rows and drops it.
    async fn daily_summaries(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        let mut rows = self.daily_metrics(query).await?;
        for row in &mut rows {
            row.latency_digest = Vec::new();
        }
        Ok(rows)
    }

    /// Writes agent rows (roll-up rows given are ignored) and rebuilds the tenant roll-ups
    /// ([`crate::ALL_AGENTS`]) of the (tenant, day)s they touch from the stored agent rows, such
    /// that the roll-ups reflect every agent row written before, whatever the interleaving of
    /// concurrent writers (see [`rollup`]). The default reads each touched tenant's rows with
    /// [`MetricsStore::daily_metrics`] after the write and again after the roll-ups, until
    /// stable; SQLite does it in one write transaction.
    async fn upsert_daily_metrics_with_rollups(&self, rows: &[DailyMetric]) -> Result<()> {
        rollup::upsert_with_rollups(&rollup::StoreRows(self), rows).await
    }
}

/// Consumer checkpoints: per input partition, the next offset and the state that reflects
/// every record before it.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Saves the checkpoint of one input partition. The offset never goes back: saving an
    /// offset lower than the stored one fails with [`crate::Error::CheckpointRegression`] (a
    /// stale owner after a rebalance must not overwrite its successor's progress).
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;

    /// The checkpoint of one input partition, if any.
    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>>;
}

/// The scorer's output: anomaly verdicts and KPI windows with their verdicts.
#[async_trait]
pub trait WindowStore: Send + Sync {
    /// Inserts or replaces anomaly verdicts (key: tenant, window start, agent).
    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()>;

    /// Verdicts of a tenant with `window_start` in `[from_ms, to_ms)` and
    /// `ensemble_score >= min_score`, ordered by window start then agent.
    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>>;

    /// Inserts or replaces KPI windows with their verdicts (key: tenant, window start, agent),
    /// each kept for `retention_secs` after its `updated_at_ms`, which the writer stamps with the
    /// time it writes (rows already past it are not written, [`crate::remaining_ttl_secs`]).
    /// SQLite deletes the expired rows as it writes; ScyllaDB writes each row `USING TTL` the
    /// retention.
    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()>;

    /// KPI windows of a tenant (optionally one agent) with `window_start` in
    /// `[from_ms, to_ms)`, ordered by window start then agent.
    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>>;
}

/// Users of the auth-api and their tenant grants.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. Email and username are stored lowercase ([`crate::normalize_login`])
    /// and are unique, also under concurrent registrations: a taken one fails with
    /// [`crate::Error::Taken`] naming the field (`email` is checked first). SQLite: UNIQUE
    /// constraints; ScyllaDB: lightweight-transaction claims (see `schemas/cql/0003_users.cql`).
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

/// The ingest gateway's per-tenant API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new API key (its id must be new).
    async fn create_api_key(&self, key: &ApiKey) -> Result<()>;

    /// The API key with this id, revoked or not.
    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>>;

    /// Every API key, ordered by tenant then id.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;

    /// Marks a key revoked at `at_ms`; false when there is no such key. Revoking twice keeps
    /// the first time.
    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool>;
}

/// Everything the services persist: every domain trait. Implemented for each type that
/// implements them all; what [`crate::open`] returns.
pub trait Store:
    SchemaStore + MetricsStore + CheckpointStore + WindowStore + UserStore + ApiKeyStore + 'static
{
}

impl<T> Store for T where
    T: SchemaStore
        + MetricsStore
        + CheckpointStore
        + WindowStore
        + UserStore
        + ApiKeyStore
        + ?Sized
        + 'static
{
}
