//! The storage interface of the pipeline, one trait per domain ([`MetricsStore`],
//! [`CheckpointStore`], [`WindowStore`], [`UserStore`], [`ApiKeyStore`], [`SchemaStore`]; a
//! service that needs them all holds a [`Store`]), and its two backends:
//!
//! - [`sqlite::SqliteStore`]: embedded, durable, the default on a single machine
//!   (`sqlite://<path>`).
//! - [`scylladb::ScyllaStore`]: ScyllaDB through the `scylla` driver
//!   (`scylla://host:port[,host:port]/<keyspace>[?replication_factor=N]`).
//!
//! Both apply the versioned migrations in `schemas/sql` and `schemas/cql` (recorded in a
//! `schema_migrations` table) and pass one contract-test suite, a module per trait
//! (`tests/contract/`).
//!
//! # Layout
//! - `traits`: the traits per domain and [`Store`], re-exported here.
//! - [`model`]: the rows: [`DailyMetric`], [`KpiWindowRow`], [`Checkpoint`], [`ApiKey`],
//!   [`User`], query types.
//! - [`migrations`]: the embedded migration files.
//! - [`rollup`]: tenant roll-ups (agent `*`), kept true under concurrent writers.
//! - [`sqlite`], [`scylladb`]: the backends, each a folder with a file per domain trait
//!   (`metrics`, `checkpoints`, `windows`, `users`, `api_keys`) beside its connection and
//!   migrations runner (`mod.rs`).
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
mod json_columns;
mod kpi_columns;
pub mod migrations;
pub mod model;
pub mod rollup;
pub mod scylladb;
pub mod sqlite;
mod traits;

use std::sync::Arc;

pub use error::{Error, Result};
pub use model::{
    normalize_login, remaining_ttl_secs, AnomalyQuery, ApiKey, Checkpoint, DailyMetric, DailyMetricsQuery,
    KpiWindowQuery, KpiWindowRow, User, WindowVerdict, ALL_AGENTS,
};
pub use traits::{ApiKeyStore, CheckpointStore, MetricsStore, SchemaStore, Store, UserStore, WindowStore};
pub use uuid::Uuid;

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
