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

use async_trait::async_trait;
use futures::TryStreamExt;
use schemas::Anomaly;
use scylla::client::caching_session::CachingSession;
use scylla::client::session_builder::SessionBuilder;
use scylla::{DeserializeRow, SerializeRow};

use crate::migrations::{self, statements, Migration};
use crate::model::normalize_login;
use crate::model::{day_text, parse_day};
use crate::model::{remaining_ttl_secs, KpiWindowQuery, KpiWindowRow, WindowVerdict};
use crate::sqlite::{
    explanation_from_json, explanation_to_json, features_from_json, features_to_json, now_ms,
};
use crate::{AnomalyQuery, ApiKey, Checkpoint, DailyMetric, DailyMetricsQuery, Error, Result, Store, User};
use uuid::Uuid;

/// How to reach and use a ScyllaDB cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace (created if missing).
    pub keyspace: String,
    /// Replication factor of a created keyspace (`NetworkTopologyStrategy`).
    pub replication_factor: u32,
    /// Use lightweight transactions for checkpoint fencing.
    pub lwt: bool,
    /// Wait for schema agreement after DDL (real clusters: yes).
    pub schema_agreement: bool,
    /// The server runs `ALTER TABLE` (real clusters: yes). `false` only for the in-memory CQL
    /// test server, which has none: migrations then fold added columns into `CREATE TABLE`.
    pub alter_table: bool,
}

impl ScyllaConfig {
    /// Parses
    /// `scylla://host:port[,host:port]/keyspace[?replication_factor=N&lwt=B&schema_agreement=B&alter_table=B]`.
    pub fn from_url(url: &str) -> Result<ScyllaConfig> {
        let bad = |message: &str| Error::BadUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| bad("expected scylla://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').ok_or_else(|| bad("missing /<keyspace>"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if nodes.is_empty() {
            return Err(bad("no hosts"));
        }
        if keyspace.is_empty() || !keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("keyspace must be non-empty [A-Za-z0-9_]"));
        }
        let mut config = ScyllaConfig {
            nodes,
            keyspace: keyspace.to_string(),
            replication_factor: 3,
            lwt: true,
            schema_agreement: true,
            alter_table: true,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameters are key=value"))?;
            let flag = || {
                value
                    .parse::<bool>()
                    .map_err(|_| bad(&format!("{key} must be true or false")))
            };
            match key {
                "replication_factor" => {
                    config.replication_factor = value
                        .parse()
                        .map_err(|_| bad("replication_factor must be a positive integer"))?
                }
                "lwt" => config.lwt = flag()?,
                "schema_agreement" => config.schema_agreement = flag()?,
                "alter_table" => config.alter_table = flag()?,
                other => return Err(bad(&format!("unknown parameter `{other}`"))),
            }
        }
        Ok(config)
    }
}

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

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct DailyRow {
    tenant_id: String,
    day: String,
    agent_id: String,
    tasks_total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    tasks_with_intervention: i64,
    interventions: i64,
    cost_micros: i64,
    latency_p50_ms: Option<f64>,
    latency_p95_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_digest: Vec<u8>,
    is_final: bool,
    updated_at: i64,
}

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct ApiKeyRow {
    key_id: String,
    tenant_id: String,
    secret_sha256: String,
    label: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> ApiKey {
        ApiKey {
            key_id: r.key_id,
            tenant_id: r.tenant_id,
            secret_sha256: r.secret_sha256,
            label: r.label,
            created_at_ms: r.created_at,
            revoked_at_ms: r.revoked_at,
        }
    }
}

const API_KEY_COLUMNS: &str = "key_id, tenant_id, secret_sha256, label, created_at, revoked_at";

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct UserRow {
    id: Uuid,
    email: String,
    username: Option<String>,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            email: r.email,
            username: r.username,
            password_hash: r.password_hash,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        }
    }
}

const USER_COLUMNS: &str = "id, email, username, password_hash, created_at, updated_at";

/// A unique-value claim table of users: (table, key column, field named in [`Error::Taken`]).
#[derive(Clone, Copy)]
struct ClaimTable {
    table: &'static str,
    column: &'static str,
    field: &'static str,
}

const EMAIL_CLAIMS: ClaimTable = ClaimTable {
    table: "users_by_email",
    column: "email",
    field: "email",
};
const USERNAME_CLAIMS: ClaimTable = ClaimTable {
    table: "users_by_username",
    column: "username",
    field: "username",
};

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct AnomalyRow {
    tenant_id: String,
    window_start: i64,
    agent_id: String,
    anomaly_id: String,
    window_id: String,
    window_end: i64,
    lstm_score: f64,
    transformer_score: f64,
    lstm_normalized: f64,
    transformer_normalized: f64,
    ensemble_score: f64,
    threshold: f64,
    is_anomaly: bool,
    top_features: String,
    model_version: String,
    scored_at: i64,
    /// Null in rows written before migration 4 and when the statistical member did not score.
    statistical_score: Option<f64>,
    /// JSON array; null in rows written before migration 4.
    explanation: Option<String>,
}

impl AnomalyRow {
    fn new(a: &Anomaly) -> AnomalyRow {
        AnomalyRow {
            tenant_id: a.tenant_id.clone(),
            window_start: a.window_start,
            agent_id: a.agent_id.clone(),
            anomaly_id: a.anomaly_id.clone(),
            window_id: a.window_id.clone(),
            window_end: a.window_end,
            lstm_score: a.lstm_score,
            transformer_score: a.transformer_score,
            lstm_normalized: a.lstm_normalized,
            transformer_normalized: a.transformer_normalized,
            ensemble_score: a.ensemble_score,
            threshold: a.threshold,
            is_anomaly: a.is_anomaly,
            top_features: features_to_json(&a.top_features),
            model_version: a.model_version.clone(),
            scored_at: a.scored_at,
            statistical_score: a.statistical_score,
            explanation: Some(explanation_to_json(&a.explanation)),
        }
    }

    fn into_anomaly(self) -> Result<Anomaly> {
        Ok(Anomaly {
            top_features: features_from_json(&self.top_features)?,
            explanation: match &self.explanation {
                Some(json) => explanation_from_json(json)?,
                None => Vec::new(),
            },
            tenant_id: self.tenant_id,
            window_start: self.window_start,
            agent_id: self.agent_id,
            anomaly_id: self.anomaly_id,
            window_id: self.window_id,
            window_end: self.window_end,
            lstm_score: self.lstm_score,
            transformer_score: self.transformer_score,
            lstm_normalized: self.lstm_normalized,
            transformer_normalized: self.transformer_normalized,
            ensemble_score: self.ensemble_score,
            threshold: self.threshold,
            is_anomaly: self.is_anomaly,
            model_version: self.model_version,
            scored_at: self.scored_at,
            statistical_score: self.statistical_score,
        })
    }
}

#[derive(DeserializeRow, SerializeRow)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct WindowRow {
    tenant_id: String,
    day: i32,
    window_start: i64,
    agent_id: String,
    window_end: i64,
    revision: i32,
    tasks_total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    tasks_with_intervention: i64,
    interventions: i64,
    cost_micros: i64,
    latency_p50_ms: Option<f64>,
    latency_p95_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    lstm_score: Option<f64>,
    transformer_score: Option<f64>,
    statistical_score: Option<f64>,
    ensemble_score: Option<f64>,
    threshold: Option<f64>,
    is_anomaly: Option<bool>,
    model_version: Option<String>,
    explanation: Option<String>,
    updated_at: i64,
}

/// The UTC day (days since 1970-01-01) of an epoch-ms instant: the partition bucket of a window.
fn epoch_day(ms: i64) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

impl WindowRow {
    fn new(r: &KpiWindowRow) -> WindowRow {
        let v = r.verdict.as_ref();
        WindowRow {
            tenant_id: r.tenant_id.clone(),
            day: epoch_day(r.window_start),
            window_start: r.window_start,
            agent_id: r.agent_id.clone(),
            window_end: r.window_end,
            revision: r.revision,
            tasks_total: r.tasks_total,
            succeeded: r.succeeded,
            failed: r.failed,
            cancelled: r.cancelled,
            tasks_with_intervention: r.tasks_with_intervention,
            interventions: r.interventions,
            cost_micros: r.cost_micros,
            latency_p50_ms: r.latency_p50_ms,
            latency_p95_ms: r.latency_p95_ms,
            latency_p99_ms: r.latency_p99_ms,
            lstm_score: v.map(|v| v.lstm_score),
            transformer_score: v.map(|v| v.transformer_score),
            statistical_score: v.and_then(|v| v.statistical_score),
            ensemble_score: v.map(|v| v.ensemble_score),
            threshold: v.map(|v| v.threshold),
            is_anomaly: v.map(|v| v.is_anomaly),
            model_version: v.map(|v| v.model_version.clone()),
            explanation: v.map(|v| explanation_to_json(&v.explanation)),
            updated_at: r.updated_at_ms,
        }
    }

    fn into_window(self) -> Result<KpiWindowRow> {
        let verdict = match self.ensemble_score {
            None => None,
            Some(ensemble_score) => Some(WindowVerdict {
                lstm_score: self.lstm_score.unwrap_or(f64::NAN),
                transformer_score: self.transformer_score.unwrap_or(f64::NAN),
                statistical_score: self.statistical_score,
                ensemble_score,
                threshold: self.threshold.unwrap_or(f64::NAN),
                is_anomaly: self.is_anomaly.unwrap_or(false),
                model_version: self.model_version.unwrap_or_default(),
                explanation: match &self.explanation {
                    Some(json) => explanation_from_json(json)?,
                    None => Vec::new(),
                },
            }),
        };
        Ok(KpiWindowRow {
            tenant_id: self.tenant_id,
            agent_id: self.agent_id,
            window_start: self.window_start,
            window_end: self.window_end,
            revision: self.revision,
            tasks_total: self.tasks_total,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            tasks_with_intervention: self.tasks_with_intervention,
            interventions: self.interventions,
            cost_micros: self.cost_micros,
            latency_p50_ms: self.latency_p50_ms,
            latency_p95_ms: self.latency_p95_ms,
            latency_p99_ms: self.latency_p99_ms,
            verdict,
            updated_at_ms: self.updated_at,
        })
    }
}

const WINDOW_COLUMNS: &str = "tenant_id, day, window_start, agent_id, window_end, revision, tasks_total, \
    succeeded, failed, cancelled, tasks_with_intervention, interventions, cost_micros, latency_p50_ms, \
    latency_p95_ms, latency_p99_ms, lstm_score, transformer_score, statistical_score, ensemble_score, \
    threshold, is_anomaly, model_version, explanation, updated_at";
const TWENTY_FIVE_MARKERS: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

const DAILY_COLUMNS: &str = "tenant_id, day, agent_id, tasks_total, succeeded, failed, cancelled, \
    tasks_with_intervention, interventions, cost_micros, latency_p50_ms, latency_p95_ms, latency_p99_ms, \
    latency_digest, is_final, updated_at";
const ANOMALY_COLUMNS: &str = "tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
    lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
    is_anomaly, top_features, model_version, scored_at, statistical_score, explanation";
const SIXTEEN_MARKERS: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
const EIGHTEEN_MARKERS: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

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
    /// returns the versions it applied. [`Store::migrate`] applies all of them; a test of data
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

    async fn stored_offset(&self, cp: &Checkpoint) -> Result<Option<i64>> {
        let result = self
            .session
            .execute_unpaged(
                "SELECT next_offset FROM checkpoints WHERE consumer_group = ? AND topic = ? AND partition_id = ?",
                (&cp.consumer_group, &cp.topic, cp.partition),
            )
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        let first = rows.maybe_first_row::<(i64,)>().map_err(Error::scylla)?;
        Ok(first.map(|(offset,)| offset))
    }

    async fn conditional_checkpoint(&self, cp: &Checkpoint) -> Result<bool> {
        let values = (
            &cp.consumer_group,
            &cp.topic,
            cp.partition,
            cp.next_offset,
            &cp.state,
            cp.updated_at_ms,
        );
        let inserted = self
            .session
            .execute_unpaged(
                "INSERT INTO checkpoints (consumer_group, topic, partition_id, next_offset, state, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                values,
            )
            .await
            .map_err(Error::scylla)?;
        if applied(inserted)? {
            return Ok(true);
        }
        let updated = self
            .session
            .execute_unpaged(
                "UPDATE checkpoints SET next_offset = ?, state = ?, updated_at = ? \
                 WHERE consumer_group = ? AND topic = ? AND partition_id = ? IF next_offset <= ?",
                (
                    cp.next_offset,
                    &cp.state,
                    cp.updated_at_ms,
                    &cp.consumer_group,
                    &cp.topic,
                    cp.partition,
                    cp.next_offset,
                ),
            )
            .await
            .map_err(Error::scylla)?;
        applied(updated)
    }
}

impl ScyllaStore {
    /// The user id holding `value` in a claim table.
    async fn claim_owner(&self, claims: ClaimTable, value: &str) -> Result<Option<Uuid>> {
        let result = self
            .session
            .execute_unpaged(
                format!("SELECT user_id FROM {} WHERE {} = ?", claims.table, claims.column),
                (value,),
            )
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        Ok(rows
            .maybe_first_row::<(Uuid,)>()
            .map_err(Error::scylla)?
            .map(|(id,)| id))
    }

    /// Claims `value` for `user_id`; false when someone holds it already.
    async fn claim(&self, claims: ClaimTable, value: &str, user_id: Uuid) -> Result<bool> {
        let insert = format!(
            "INSERT INTO {} ({}, user_id) VALUES (?, ?)",
            claims.table, claims.column
        );
        if self.config.lwt {
            let result = self
                .session
                .execute_unpaged(format!("{insert} IF NOT EXISTS"), (value, user_id))
                .await
                .map_err(Error::scylla)?;
            return applied(result);
        }
        if self.claim_owner(claims, value).await?.is_some() {
            return Ok(false);
        }
        self.session
            .execute_unpaged(insert, (value, user_id))
            .await
            .map_err(Error::scylla)?;
        Ok(true)
    }

    /// Releases `value` if `user_id` holds it (never someone else's claim with LWT).
    async fn release(&self, claims: ClaimTable, value: &str, user_id: Uuid) -> Result<()> {
        let delete = format!("DELETE FROM {} WHERE {} = ?", claims.table, claims.column);
        if self.config.lwt {
            self.session
                .execute_unpaged(format!("{delete} IF user_id = ?"), (value, user_id))
                .await
                .map_err(Error::scylla)?;
        } else if self.claim_owner(claims, value).await? == Some(user_id) {
            self.session
                .execute_unpaged(delete, (value,))
                .await
                .map_err(Error::scylla)?;
        }
        Ok(())
    }

    async fn delete_user_row(&self, id: Uuid) -> Result<()> {
        self.session
            .execute_unpaged("DELETE FROM users WHERE id = ?", (id,))
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }
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
impl Store for ScyllaStore {
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

    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()> {
        let statement = format!("INSERT INTO daily_metrics ({DAILY_COLUMNS}) VALUES ({SIXTEEN_MARKERS})");
        let writes = rows.iter().map(|r| {
            let row = DailyRow {
                tenant_id: r.tenant_id.clone(),
                day: day_text(r.day),
                agent_id: r.agent_id.clone(),
                tasks_total: r.tasks_total,
                succeeded: r.succeeded,
                failed: r.failed,
                cancelled: r.cancelled,
                tasks_with_intervention: r.tasks_with_intervention,
                interventions: r.interventions,
                cost_micros: r.cost_micros,
                latency_p50_ms: r.latency_p50_ms,
                latency_p95_ms: r.latency_p95_ms,
                latency_p99_ms: r.latency_p99_ms,
                latency_digest: r.latency_digest.clone(),
                is_final: r.is_final,
                updated_at: r.updated_at_ms,
            };
            let statement = statement.clone();
            async move {
                self.session
                    .execute_unpaged(statement, row)
                    .await
                    .map_err(Error::scylla)
            }
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        let statement = format!(
            "SELECT {DAILY_COLUMNS} FROM daily_metrics WHERE tenant_id = ? AND day >= ? AND day <= ?"
        );
        let pager = self
            .session
            .execute_iter(
                statement,
                (&query.tenant_id, day_text(query.from), day_text(query.to)),
            )
            .await
            .map_err(Error::scylla)?;
        let rows: Vec<DailyRow> = pager
            .rows_stream::<DailyRow>()
            .map_err(Error::scylla)?
            .try_collect()
            .await
            .map_err(Error::scylla)?;
        let mut out = Vec::new();
        for r in rows {
            if query.agent_id.as_ref().is_some_and(|a| *a != r.agent_id) {
                continue;
            }
            out.push(DailyMetric {
                day: parse_day(&r.day)?,
                tenant_id: r.tenant_id,
                agent_id: r.agent_id,
                tasks_total: r.tasks_total,
                succeeded: r.succeeded,
                failed: r.failed,
                cancelled: r.cancelled,
                tasks_with_intervention: r.tasks_with_intervention,
                interventions: r.interventions,
                cost_micros: r.cost_micros,
                latency_p50_ms: r.latency_p50_ms,
                latency_p95_ms: r.latency_p95_ms,
                latency_p99_ms: r.latency_p99_ms,
                latency_digest: r.latency_digest,
                is_final: r.is_final,
                updated_at_ms: r.updated_at,
            });
        }
        Ok(out)
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let regression = |stored| Error::CheckpointRegression {
            topic: checkpoint.topic.clone(),
            partition: checkpoint.partition,
            stored,
            attempted: checkpoint.next_offset,
        };
        if self.config.lwt {
            if !self.conditional_checkpoint(checkpoint).await? {
                let stored = self.stored_offset(checkpoint).await?.unwrap_or(i64::MAX);
                return Err(regression(stored));
            }
            return Ok(());
        }
        if let Some(stored) = self
            .stored_offset(checkpoint)
            .await?
            .filter(|&s| s > checkpoint.next_offset)
        {
            return Err(regression(stored));
        }
        let cp = checkpoint;
        self.session
            .execute_unpaged(
                "INSERT INTO checkpoints (consumer_group, topic, partition_id, next_offset, state, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (&cp.consumer_group, &cp.topic, cp.partition, cp.next_offset, &cp.state, cp.updated_at_ms),
            )
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let result = self
            .session
            .execute_unpaged(
                "SELECT next_offset, state, updated_at FROM checkpoints \
                 WHERE consumer_group = ? AND topic = ? AND partition_id = ?",
                (consumer_group, topic, partition),
            )
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        let row = rows
            .maybe_first_row::<(i64, Vec<u8>, i64)>()
            .map_err(Error::scylla)?;
        Ok(row.map(|(next_offset, state, updated_at_ms)| Checkpoint {
            consumer_group: consumer_group.to_string(),
            topic: topic.to_string(),
            partition,
            next_offset,
            state,
            updated_at_ms,
        }))
    }

    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()> {
        let statement = format!("INSERT INTO anomalies ({ANOMALY_COLUMNS}) VALUES ({EIGHTEEN_MARKERS})");
        let writes = rows.iter().map(|a| {
            let row = AnomalyRow::new(a);
            let statement = statement.clone();
            async move {
                self.session
                    .execute_unpaged(statement, row)
                    .await
                    .map_err(Error::scylla)
            }
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>> {
        let statement = format!(
            "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ? AND window_start >= ? AND window_start < ?"
        );
        let pager = self
            .session
            .execute_iter(statement, (&query.tenant_id, query.from_ms, query.to_ms))
            .await
            .map_err(Error::scylla)?;
        let rows: Vec<AnomalyRow> = pager
            .rows_stream::<AnomalyRow>()
            .map_err(Error::scylla)?
            .try_collect()
            .await
            .map_err(Error::scylla)?;
        rows.into_iter()
            .filter(|r| r.ensemble_score >= query.min_score && (!query.only_flagged || r.is_anomaly))
            .map(AnomalyRow::into_anomaly)
            .collect()
    }

    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()> {
        // The TTL is the retention, counted from the write: the writer stamps `updated_at` with
        // the time it writes (a bind marker for the TTL would be exact for any `updated_at`,
        // but the CQL test double does not parse one; one literal keeps one prepared statement).
        let statement = format!(
            "INSERT INTO kpi_windows ({WINDOW_COLUMNS}) VALUES ({TWENTY_FIVE_MARKERS}) USING TTL {}",
            retention_secs.min(i32::MAX as u32)
        );
        let now = now_ms();
        let writes = rows
            .iter()
            .filter(|r| remaining_ttl_secs(r.updated_at_ms, retention_secs, now).is_some())
            .map(|r| {
                let row = WindowRow::new(r);
                let statement = statement.clone();
                async move {
                    self.session
                        .execute_unpaged(statement, row)
                        .await
                        .map_err(Error::scylla)
                }
            });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>> {
        if query.to_ms <= query.from_ms {
            return Ok(Vec::new());
        }
        let statement = format!("SELECT {WINDOW_COLUMNS} FROM kpi_windows WHERE tenant_id = ? AND day = ?");
        let days = epoch_day(query.from_ms)..=epoch_day(query.to_ms - 1);
        let reads = days.map(|day| {
            let statement = statement.clone();
            async move {
                let pager = self
                    .session
                    .execute_iter(statement, (&query.tenant_id, day))
                    .await
                    .map_err(Error::scylla)?;
                pager
                    .rows_stream::<WindowRow>()
                    .map_err(Error::scylla)?
                    .try_collect::<Vec<WindowRow>>()
                    .await
                    .map_err(Error::scylla)
            }
        });
        let mut out = Vec::new();
        for rows in futures::future::try_join_all(reads).await? {
            for r in rows {
                let in_range = (query.from_ms..query.to_ms).contains(&r.window_start);
                if in_range && query.agent_id.as_ref().is_none_or(|a| *a == r.agent_id) {
                    out.push(r.into_window()?);
                }
            }
        }
        out.sort_by(|a, b| (a.window_start, &a.agent_id).cmp(&(b.window_start, &b.agent_id)));
        Ok(out)
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let row = ApiKeyRow {
            key_id: key.key_id.clone(),
            tenant_id: key.tenant_id.clone(),
            secret_sha256: key.secret_sha256.clone(),
            label: key.label.clone(),
            created_at: key.created_at_ms,
            revoked_at: key.revoked_at_ms,
        };
        let insert = format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)");
        if self.config.lwt {
            let result = self
                .session
                .execute_unpaged(format!("{insert} IF NOT EXISTS"), &row)
                .await
                .map_err(Error::scylla)?;
            let rows = result.into_rows_result().map_err(Error::scylla)?;
            let applied = rows
                .maybe_first_row::<(bool,)>()
                .ok()
                .flatten()
                .is_none_or(|(a,)| a);
            if !applied {
                return Err(Error::Conflict(format!("api key {} exists", key.key_id)));
            }
            return Ok(());
        }
        if self.api_key(&key.key_id).await?.is_some() {
            return Err(Error::Conflict(format!("api key {} exists", key.key_id)));
        }
        self.session
            .execute_unpaged(insert, &row)
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let result = self
            .session
            .execute_unpaged(
                format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?"),
                (key_id,),
            )
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        Ok(rows
            .maybe_first_row::<ApiKeyRow>()
            .map_err(Error::scylla)?
            .map(ApiKey::from))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let pager = self
            .session
            .execute_iter(format!("SELECT {API_KEY_COLUMNS} FROM api_keys"), ())
            .await
            .map_err(Error::scylla)?;
        let rows: Vec<ApiKeyRow> = pager
            .rows_stream::<ApiKeyRow>()
            .map_err(Error::scylla)?
            .try_collect()
            .await
            .map_err(Error::scylla)?;
        let mut keys: Vec<ApiKey> = rows.into_iter().map(ApiKey::from).collect();
        keys.sort_by(|a, b| (&a.tenant_id, &a.key_id).cmp(&(&b.tenant_id, &b.key_id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool> {
        let Some(key) = self.api_key(key_id).await? else {
            return Ok(false);
        };
        if key.revoked_at_ms.is_none() {
            self.session
                .execute_unpaged(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                    (at_ms, key_id),
                )
                .await
                .map_err(Error::scylla)?;
        }
        Ok(true)
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let email = normalize_login(&user.email);
        let username = user.username.as_deref().map(normalize_login);
        let row = UserRow {
            id: user.id,
            email: email.clone(),
            username: username.clone(),
            password_hash: user.password_hash.clone(),
            created_at: user.created_at_ms,
            updated_at: user.updated_at_ms,
        };
        // 1. The row under a fresh id: unreachable until the claims point to it.
        self.session
            .execute_unpaged(
                format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
                &row,
            )
            .await
            .map_err(Error::scylla)?;
        // 2. The email claim.
        if !self.claim(EMAIL_CLAIMS, &email, user.id).await? {
            self.delete_user_row(user.id).await?;
            return Err(Error::Taken {
                field: EMAIL_CLAIMS.field,
            });
        }
        // 3. The username claim; on failure release the email claim again.
        if let Some(name) = &username {
            if !self.claim(USERNAME_CLAIMS, name, user.id).await? {
                self.release(EMAIL_CLAIMS, &email, user.id).await?;
                self.delete_user_row(user.id).await?;
                return Err(Error::Taken {
                    field: USERNAME_CLAIMS.field,
                });
            }
        }
        Ok(())
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        let result = self
            .session
            .execute_unpaged(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"), (id,))
            .await
            .map_err(Error::scylla)?;
        let rows = result.into_rows_result().map_err(Error::scylla)?;
        Ok(rows
            .maybe_first_row::<UserRow>()
            .map_err(Error::scylla)?
            .map(User::from))
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = normalize_login(login);
        let by_email = login.contains('@');
        let claims = if by_email { EMAIL_CLAIMS } else { USERNAME_CLAIMS };
        let Some(id) = self.claim_owner(claims, &login).await? else {
            return Ok(None);
        };
        // A claim left behind by an interrupted registration points to a row without this
        // value (or none): it never logs anyone in.
        Ok(self.user_by_id(id).await?.filter(|u| {
            if by_email {
                u.email == login
            } else {
                u.username.as_deref() == Some(login.as_str())
            }
        }))
    }

    async fn delete_user(&self, id: Uuid) -> Result<bool> {
        let Some(user) = self.user_by_id(id).await? else {
            return Ok(false);
        };
        // Read first: skips a needless tombstone (and the CQL test double refuses deletes
        // from a table that never had a row).
        if !self.tenants_of_user(id).await?.is_empty() {
            self.session
                .execute_unpaged("DELETE FROM user_tenants WHERE user_id = ?", (id,))
                .await
                .map_err(Error::scylla)?;
        }
        self.release(EMAIL_CLAIMS, &user.email, id).await?;
        if let Some(name) = &user.username {
            self.release(USERNAME_CLAIMS, name, id).await?;
        }
        self.delete_user_row(id).await?;
        Ok(true)
    }

    async fn grant_tenant(&self, user_id: Uuid, tenant_id: &str, at_ms: i64) -> Result<()> {
        if self
            .tenants_of_user(user_id)
            .await?
            .iter()
            .any(|t| t == tenant_id)
        {
            return Ok(()); // keep the first grant time
        }
        self.session
            .execute_unpaged(
                "INSERT INTO user_tenants (user_id, tenant_id, granted_at) VALUES (?, ?, ?)",
                (user_id, tenant_id, at_ms),
            )
            .await
            .map_err(Error::scylla)?;
        Ok(())
    }

    async fn revoke_tenant(&self, user_id: Uuid, tenant_id: &str) -> Result<bool> {
        if !self
            .tenants_of_user(user_id)
            .await?
            .iter()
            .any(|t| t == tenant_id)
        {
            return Ok(false);
        }
        self.session
            .execute_unpaged(
                "DELETE FROM user_tenants WHERE user_id = ? AND tenant_id = ?",
                (user_id, tenant_id),
            )
            .await
            .map_err(Error::scylla)?;
        Ok(true)
    }

    async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<String>> {
        let pager = self
            .session
            .execute_iter("SELECT tenant_id FROM user_tenants WHERE user_id = ?", (user_id,))
            .await
            .map_err(Error::scylla)?;
        let mut tenants: Vec<String> = pager
            .rows_stream::<(String,)>()
            .map_err(Error::scylla)?
            .map_ok(|(t,)| t)
            .try_collect()
            .await
            .map_err(Error::scylla)?;
        tenants.sort();
        Ok(tenants)
    }
}

#[cfg(test)]
mod tests {
    use schemas::{FeatureContribution, KpiExplanation};

    use super::*;

    #[test]
    fn parses_urls() {
        let c =
            ScyllaConfig::from_url("scylla://a:9042,b:9042/agentops?replication_factor=1&lwt=false").unwrap();
        assert_eq!(c.nodes, vec!["a:9042", "b:9042"]);
        assert_eq!(c.keyspace, "agentops");
        assert_eq!(c.replication_factor, 1);
        assert!(!c.lwt && c.schema_agreement && c.alter_table);
        let double = ScyllaConfig::from_url("scylla://a/ks?alter_table=false").unwrap();
        assert!(!double.alter_table && double.lwt);
        for bad in [
            "scylla://a:9042",
            "scylla:///ks",
            "scylla://a/ks?x=1",
            "scylla://a/k-s",
            "scylla://a/ks?lwt=maybe",
            "scylla://a/ks?alter_table=no",
        ] {
            assert!(ScyllaConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    fn anomaly(agent: &str, statistical_score: Option<f64>, explanation: Vec<KpiExplanation>) -> Anomaly {
        Anomaly {
            anomaly_id: Anomaly::id_for(agent, 0, "m1"),
            window_id: format!("w-{agent}"),
            tenant_id: "acme".into(),
            agent_id: agent.into(),
            window_start: 900_000,
            window_end: 1_800_000,
            lstm_score: 0.3,
            transformer_score: 0.2,
            lstm_normalized: 4.5,
            transformer_normalized: 3.5,
            ensemble_score: 4.0,
            threshold: 3.0,
            is_anomaly: true,
            top_features: vec![FeatureContribution {
                feature: "success_rate".into(),
                contribution: 0.8,
            }],
            model_version: "m1".into(),
            scored_at: 1_801_000,
            statistical_score,
            explanation,
        }
    }

    fn explanation() -> Vec<KpiExplanation> {
        vec![
            KpiExplanation {
                kpi: "success_rate".into(),
                observed: 0.52,
                expected: 0.86,
                low: 0.79,
                high: 0.93,
                evidence: 7.25,
            },
            KpiExplanation {
                kpi: "latency_p95_ms".into(),
                observed: 2_400.0,
                expected: 900.5,
                low: 600.0,
                high: 1_201.0,
                evidence: 3.0,
            },
        ]
    }

    #[test]
    fn rows_without_the_columns_of_migration_4_read_back_empty() {
        let mut row = AnomalyRow::new(&anomaly("bot", Some(6.5), explanation()));
        assert_eq!(
            row.explanation
                .as_deref()
                .map(|j| explanation_from_json(j).unwrap()),
            Some(explanation())
        );
        row.statistical_score = None;
        row.explanation = None;
        let read = row.into_anomaly().unwrap();
        assert_eq!(read, anomaly("bot", None, Vec::new()));
        let mut corrupt = AnomalyRow::new(&anomaly("bot", None, Vec::new()));
        corrupt.explanation = Some("{not json".into());
        let err = corrupt.into_anomaly().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    column: "explanation",
                    ..
                }
            ),
            "{err}"
        );
    }

    /// The contract suite cannot read anomalies back on the CQL test double (their query is a
    /// range read): here they are read by partition (equality) and decoded as `anomalies` does.
    #[tokio::test]
    async fn the_cql_test_double_stores_the_statistical_score_and_explanation() {
        let tester = kassandra_tester::KassandraTester::new(kassandra::session::KassandraSession::new());
        tester
            .in_scope(|addr| async move {
                let url = format!(
                    "scylla://{addr}/unit?replication_factor=1&lwt=false&schema_agreement=false&alter_table=false"
                );
                let store = ScyllaStore::connect(ScyllaConfig::from_url(&url).unwrap())
                    .await
                    .unwrap();
                let all: Vec<u32> = migrations::CQL.iter().map(|m| m.version).collect();
                assert_eq!(store.migrate().await.unwrap(), all);
                let with = anomaly("bot", Some(6.5), explanation());
                let without = anomaly("crm", None, Vec::new());
                store.upsert_anomalies(&[with.clone(), without.clone()]).await.unwrap();
                // A row as written before migration 4: only the columns of migration 1.
                let old = AnomalyRow::new(&anomaly("old", Some(1.0), explanation()));
                let old_columns = ANOMALY_COLUMNS
                    .strip_suffix(", statistical_score, explanation")
                    .unwrap();
                store
                    .session
                    .execute_unpaged(
                        format!("INSERT INTO anomalies ({old_columns}) VALUES ({SIXTEEN_MARKERS})"),
                        (
                            &old.tenant_id,
                            old.window_start,
                            &old.agent_id,
                            &old.anomaly_id,
                            &old.window_id,
                            old.window_end,
                            old.lstm_score,
                            old.transformer_score,
                            old.lstm_normalized,
                            old.transformer_normalized,
                            old.ensemble_score,
                            old.threshold,
                            old.is_anomaly,
                            &old.top_features,
                            &old.model_version,
                            old.scored_at,
                        ),
                    )
                    .await
                    .unwrap();
                let mut read: Vec<Anomaly> = store
                    .session
                    .execute_iter(
                        format!("SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ?"),
                        ("acme",),
                    )
                    .await
                    .unwrap()
                    .rows_stream::<AnomalyRow>()
                    .unwrap()
                    .try_collect::<Vec<_>>()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.into_anomaly().unwrap())
                    .collect();
                read.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
                assert_eq!(read, vec![with, without, anomaly("old", None, Vec::new())]);
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_alter_table_a_migration_adding_columns_needs_a_fresh_keyspace() {
        let tester = kassandra_tester::KassandraTester::new(kassandra::session::KassandraSession::new());
        tester
            .in_scope(|addr| async move {
                let url = format!(
                    "scylla://{addr}/unit?replication_factor=1&lwt=false&schema_agreement=false&alter_table=false"
                );
                let store = ScyllaStore::connect(ScyllaConfig::from_url(&url).unwrap())
                    .await
                    .unwrap();
                assert_eq!(store.migrate_to(3).await.unwrap(), vec![1, 2, 3]);
                let err = store.migrate().await.unwrap_err();
                assert!(matches!(err, Error::Migration { version: 4, .. }), "{err}");
                assert_eq!(store.applied_migrations().await.unwrap(), vec![1, 2, 3]);
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap();
    }
}
