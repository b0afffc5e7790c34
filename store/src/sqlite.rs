//! The embedded SQLite backend (`rusqlite`, bundled SQLite) in WAL mode with
//! `synchronous=FULL`: one connection writes (from tokio's blocking pool, behind a lock); reads
//! of a file database run on [`readers`] read-only connections, each on its own thread, fed by
//! one queue (WAL lets them read while the writer writes). A private `:memory:` database has
//! only the one connection.

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use schemas::{Anomaly, FeatureContribution, KpiExplanation};

use crate::migrations::{self, Migration};
use crate::model::normalize_login;
use crate::model::{day_text, parse_day};
use crate::model::{remaining_ttl_secs, KpiWindowQuery, KpiWindowRow, WindowVerdict};
use crate::{AnomalyQuery, ApiKey, Checkpoint, DailyMetric, DailyMetricsQuery, Error, Result, Store, User};
use uuid::Uuid;

/// Page cache of a connection, KiB. SQLite's default (2 MiB) is less than a month of daily rows
/// with their digests: a read of one week then copies its overflow pages from the OS on
/// every query.
const CACHE_KIB: i64 = 64 * 1024;

/// Reader connections of a file database, each on its own thread: one per CPU but one (at least
/// 1, at most 4). A read takes tens of microseconds, so more threads than cores only add
/// switches. With one connection behind a lock in the blocking pool, each of many concurrent
/// reads took a pool thread that then slept on the lock: the dashboard route spent most of its
/// time waking threads (see README, Measured numbers).
pub fn readers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4))
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Queue of the reader threads; `None` for `:memory:` (reads use `conn`). The threads stop
    /// when the last clone of the store is dropped.
    reads: Option<std::sync::mpsc::Sender<ReadJob>>,
}

/// Opens one connection to `path` with this backend's settings.
fn connect(path: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Starts `n` reader threads on `path`; returns their queue.
fn start_readers(path: &str, n: usize) -> Result<std::sync::mpsc::Sender<ReadJob>> {
    let (jobs, queue) = std::sync::mpsc::channel::<ReadJob>();
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..n {
        let conn = connect(path)?;
        conn.pragma_update(None, "query_only", true)?;
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("sqlite-read-{i}"))
            .spawn(move || loop {
                // The lock is held only while waiting for the next job.
                let job = match queue.lock() {
                    Ok(q) => q.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return }; // the store is gone
                                                   // A job that panics drops its answer channel: its caller gets an error, the
                                                   // thread goes on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
            })
            .map_err(|e| Error::Task(format!("starting a sqlite reader: {e}")))?;
    }
    Ok(jobs)
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `path`;
    /// `:memory:` gives a private in-memory database.
    pub async fn open(path: &str) -> Result<SqliteStore> {
        let path = path.to_string();
        let conn = tokio::task::spawn_blocking(move || -> Result<(Connection, Option<_>)> {
            if path != ":memory:" {
                if let Some(dir) = Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Error::BadUrl {
                        url: path.clone(),
                        message: e.to_string(),
                    })?;
                }
            }
            let conn = connect(&path)?;
            // After the writer, which made the file and set WAL.
            let reads = if path == ":memory:" {
                None
            } else {
                Some(start_readers(&path, readers())?)
            };
            Ok((conn, reads))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn.0)),
            reads: conn.1,
        })
    }

    /// Runs a read on a reader thread (on the writer connection for `:memory:`).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let Some(reads) = &self.reads else {
            return self.with_conn(move |conn| f(conn)).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        reads
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| Error::Task("the sqlite readers stopped".into()))?;
        rx.await
            .map_err(|_| Error::Task("a sqlite read failed (panicked)".into()))?
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|e| Error::Task(e.to_string()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Applies the migrations not applied yet up to version `last` (inclusive), in order;
    /// returns the versions it applied. [`Store::migrate`] applies all of them; a test of data
    /// written before a migration stops earlier.
    pub async fn migrate_to(&self, last: u32) -> Result<Vec<u32>> {
        self.with_conn(move |conn| {
            let done = applied(conn)?;
            let mut newly = Vec::new();
            for m in migrations::SQLITE
                .iter()
                .filter(|m| m.version <= last && !done.contains(&m.version))
            {
                apply(conn, m)?;
                tracing::info!(version = m.version, name = m.name, "applied sqlite migration");
                newly.push(m.version);
            }
            Ok(newly)
        })
        .await
    }

    /// Daily rows of `query` by `sql` ([`daily_sql`]).
    async fn daily_rows(&self, query: &DailyMetricsQuery, sql: &'static str) -> Result<Vec<DailyMetric>> {
        let q = query.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, day_text(q.from), day_text(q.to), q.agent_id],
                    daily_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(day, mut row)| {
                    row.day = parse_day(&day)?;
                    Ok(row)
                })
                .collect()
        })
        .await
    }
}

/// The daily-rows query reading `columns` (all of them, or the digest as an empty blob) through
/// `index` (empty: the table).
fn daily_sql(columns: &str, index: &str) -> String {
    format!(
        "SELECT {columns} FROM daily_metrics {index} WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 \
         AND (?4 IS NULL OR agent_id = ?4) ORDER BY day, agent_id"
    )
}

fn applied(conn: &Connection) -> Result<Vec<u32>> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
    let versions = stmt
        .query_map([], |row| row.get::<_, u32>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(versions)
}

fn apply(conn: &mut Connection, m: &Migration) -> Result<()> {
    let tx = conn.transaction()?;
    let fail = |e: rusqlite::Error| Error::Migration {
        version: m.version,
        name: m.name,
        message: e.to_string(),
    };
    tx.execute_batch(m.script).map_err(fail)?;
    tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        params![m.version, m.name, now_ms()],
    )
    .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// Inserts or replaces daily rows inside `tx`.
fn insert_daily(tx: &rusqlite::Transaction<'_>, rows: &[DailyMetric]) -> Result<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO daily_metrics ({DAILY_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    for r in rows {
        stmt.execute(params![
            r.tenant_id,
            day_text(r.day),
            r.agent_id,
            r.tasks_total,
            r.succeeded,
            r.failed,
            r.cancelled,
            r.tasks_with_intervention,
            r.interventions,
            r.cost_micros,
            r.latency_p50_ms,
            r.latency_p95_ms,
            r.latency_p99_ms,
            r.latency_digest,
            r.is_final,
            r.updated_at_ms,
        ])?;
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn daily_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, DailyMetric)> {
    Ok((
        row.get::<_, String>(1)?,
        DailyMetric {
            tenant_id: row.get(0)?,
            day: time::Date::MIN,
            agent_id: row.get(2)?,
            tasks_total: row.get(3)?,
            succeeded: row.get(4)?,
            failed: row.get(5)?,
            cancelled: row.get(6)?,
            tasks_with_intervention: row.get(7)?,
            interventions: row.get(8)?,
            cost_micros: row.get(9)?,
            latency_p50_ms: row.get(10)?,
            latency_p95_ms: row.get(11)?,
            latency_p99_ms: row.get(12)?,
            latency_digest: row.get(13)?,
            is_final: row.get(14)?,
            updated_at_ms: row.get(15)?,
        },
    ))
}

const DAILY_COLUMNS: &str = "tenant_id, day, agent_id, tasks_total, succeeded, failed, cancelled, \
    tasks_with_intervention, interventions, cost_micros, latency_p50_ms, latency_p95_ms, latency_p99_ms, \
    latency_digest, is_final, updated_at";

/// [`DAILY_COLUMNS`] with an empty blob in place of the digest: all of them are in the index
/// `daily_metrics_summary` (migration 5), which holds no digest.
const SUMMARY_COLUMNS: &str = "tenant_id, day, agent_id, tasks_total, succeeded, failed, cancelled, \
    tasks_with_intervention, interventions, cost_micros, latency_p50_ms, latency_p95_ms, latency_p99_ms, \
    X'', is_final, updated_at";

const ANOMALY_COLUMNS: &str = "tenant_id, window_start, agent_id, anomaly_id, window_id, window_end, \
    lstm_score, transformer_score, lstm_normalized, transformer_normalized, ensemble_score, threshold, \
    is_anomaly, top_features, model_version, scored_at, statistical_score, explanation";

const WINDOW_COLUMNS: &str = "tenant_id, window_start, agent_id, window_end, revision, tasks_total, \
    succeeded, failed, cancelled, tasks_with_intervention, interventions, cost_micros, latency_p50_ms, \
    latency_p95_ms, latency_p99_ms, lstm_score, transformer_score, statistical_score, ensemble_score, \
    threshold, is_anomaly, model_version, explanation, updated_at";

/// A `kpi_windows` row and its explanation's JSON (decoded by the caller).
fn window_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(KpiWindowRow, Option<String>)> {
    let ensemble: Option<f64> = row.get(18)?;
    let verdict = match ensemble {
        None => None,
        Some(ensemble_score) => Some(WindowVerdict {
            lstm_score: row.get::<_, Option<f64>>(15)?.unwrap_or(f64::NAN),
            transformer_score: row.get::<_, Option<f64>>(16)?.unwrap_or(f64::NAN),
            statistical_score: row.get(17)?,
            ensemble_score,
            threshold: row.get::<_, Option<f64>>(19)?.unwrap_or(f64::NAN),
            is_anomaly: row.get::<_, Option<bool>>(20)?.unwrap_or(false),
            model_version: row.get::<_, Option<String>>(21)?.unwrap_or_default(),
            explanation: Vec::new(),
        }),
    };
    Ok((
        KpiWindowRow {
            tenant_id: row.get(0)?,
            window_start: row.get(1)?,
            agent_id: row.get(2)?,
            window_end: row.get(3)?,
            revision: row.get(4)?,
            tasks_total: row.get(5)?,
            succeeded: row.get(6)?,
            failed: row.get(7)?,
            cancelled: row.get(8)?,
            tasks_with_intervention: row.get(9)?,
            interventions: row.get(10)?,
            cost_micros: row.get(11)?,
            latency_p50_ms: row.get(12)?,
            latency_p95_ms: row.get(13)?,
            latency_p99_ms: row.get(14)?,
            verdict,
            updated_at_ms: row.get(23)?,
        },
        row.get(22)?,
    ))
}

pub(crate) fn features_to_json(features: &[FeatureContribution]) -> String {
    serde_json::to_string(features).expect("feature contributions serialize")
}

pub(crate) fn features_from_json(text: &str) -> Result<Vec<FeatureContribution>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        column: "top_features",
        message: e.to_string(),
    })
}

pub(crate) fn explanation_to_json(explanation: &[KpiExplanation]) -> String {
    serde_json::to_string(explanation).expect("kpi explanations serialize")
}

pub(crate) fn explanation_from_json(text: &str) -> Result<Vec<KpiExplanation>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        column: "explanation",
        message: e.to_string(),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<Vec<u32>> {
        self.migrate_to(u32::MAX).await
    }

    async fn applied_migrations(&self) -> Result<Vec<u32>> {
        self.with_conn(|conn| applied(conn)).await
    }

    async fn upsert_daily_metrics(&self, rows: &[DailyMetric]) -> Result<()> {
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            insert_daily(&tx, &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// One write transaction, begun IMMEDIATE: it holds the database's write lock from the
    /// start, so no other writer (another connection or process) commits between the agent
    /// rows' write, the read of the touched tenant-days and the roll-ups' write. One read per
    /// touched tenant.
    async fn upsert_daily_metrics_with_rollups(&self, rows: &[DailyMetric]) -> Result<()> {
        let rows: Vec<DailyMetric> = rows
            .iter()
            .filter(|r| r.agent_id != crate::ALL_AGENTS)
            .cloned()
            .collect();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert_daily(&tx, &rows)?;
            let mut rollups = Vec::new();
            {
                static SQL: LazyLock<String> = LazyLock::new(|| daily_sql(DAILY_COLUMNS, ""));
                let mut stmt = tx.prepare_cached(&SQL)?;
                for (tenant, days) in crate::rollup::touched(&rows) {
                    let (from, to) = (days.first().expect("non-empty"), days.last().expect("non-empty"));
                    let stored = stmt
                        .query_map(
                            params![tenant, day_text(*from), day_text(*to), None::<String>],
                            daily_from_row,
                        )?
                        .map(|row| {
                            let (day, mut row) = row?;
                            row.day = parse_day(&day)?;
                            Ok(row)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    rollups.extend(crate::rollup::rollups_of(&tenant, &days, &stored)?);
                }
            }
            insert_daily(&tx, &rollups)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn daily_metrics(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        static SQL: LazyLock<String> = LazyLock::new(|| daily_sql(DAILY_COLUMNS, ""));
        self.daily_rows(query, &SQL).await
    }

    async fn daily_summaries(&self, query: &DailyMetricsQuery) -> Result<Vec<DailyMetric>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| daily_sql(SUMMARY_COLUMNS, "INDEXED BY daily_metrics_summary"));
        self.daily_rows(query, &SQL).await
    }

    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let cp = checkpoint.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT next_offset FROM checkpoints WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
                    params![cp.consumer_group, cp.topic, cp.partition],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(stored) = stored.filter(|&s| s > cp.next_offset) {
                return Err(Error::CheckpointRegression {
                    topic: cp.topic,
                    partition: cp.partition,
                    stored,
                    attempted: cp.next_offset,
                });
            }
            tx.execute(
                "INSERT OR REPLACE INTO checkpoints (consumer_group, topic, partition_id, next_offset, state, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![cp.consumer_group, cp.topic, cp.partition, cp.next_offset, cp.state, cp.updated_at_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let (group, topic) = (consumer_group.to_string(), topic.to_string());
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT next_offset, state, updated_at FROM checkpoints \
                     WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
                    params![group, topic, partition],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            Ok(row.map(|(next_offset, state, updated_at_ms)| Checkpoint {
                consumer_group: group,
                topic,
                partition,
                next_offset,
                state,
                updated_at_ms,
            }))
        })
        .await
    }

    async fn upsert_anomalies(&self, rows: &[Anomaly]) -> Result<()> {
        let rows = rows.to_vec();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO anomalies ({ANOMALY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ))?;
                for a in &rows {
                    stmt.execute(params![
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
                        features_to_json(&a.top_features),
                        a.model_version,
                        a.scored_at,
                        a.statistical_score,
                        explanation_to_json(&a.explanation),
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Anomaly>> {
        let q = query.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE tenant_id = ?1 AND window_start >= ?2 \
                 AND window_start < ?3 AND ensemble_score >= ?4 AND (?5 = 0 OR is_anomaly = 1) \
                 ORDER BY window_start, agent_id"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, q.from_ms, q.to_ms, q.min_score, q.only_flagged],
                    |row| {
                        Ok((
                            Anomaly {
                                tenant_id: row.get(0)?,
                                window_start: row.get(1)?,
                                agent_id: row.get(2)?,
                                anomaly_id: row.get(3)?,
                                window_id: row.get(4)?,
                                window_end: row.get(5)?,
                                lstm_score: row.get(6)?,
                                transformer_score: row.get(7)?,
                                lstm_normalized: row.get(8)?,
                                transformer_normalized: row.get(9)?,
                                ensemble_score: row.get(10)?,
                                threshold: row.get(11)?,
                                is_anomaly: row.get(12)?,
                                top_features: Vec::new(),
                                model_version: row.get(14)?,
                                scored_at: row.get(15)?,
                                statistical_score: row.get(16)?,
                                explanation: Vec::new(),
                            },
                            row.get::<_, String>(13)?,
                            row.get::<_, String>(17)?,
                        ))
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut a, features, explanation)| {
                    a.top_features = features_from_json(&features)?;
                    a.explanation = explanation_from_json(&explanation)?;
                    Ok(a)
                })
                .collect()
        })
        .await
    }

    async fn upsert_kpi_windows(&self, rows: &[KpiWindowRow], retention_secs: u32) -> Result<()> {
        let now = now_ms();
        let rows: Vec<KpiWindowRow> = rows
            .iter()
            .filter(|r| remaining_ttl_secs(r.updated_at_ms, retention_secs, now).is_some())
            .cloned()
            .collect();
        let expired_before = now.saturating_sub(i64::from(retention_secs).saturating_mul(1_000));
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO kpi_windows ({WINDOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, \
                     ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
                ))?;
                for r in &rows {
                    let v = r.verdict.as_ref();
                    stmt.execute(params![
                        r.tenant_id,
                        r.window_start,
                        r.agent_id,
                        r.window_end,
                        r.revision,
                        r.tasks_total,
                        r.succeeded,
                        r.failed,
                        r.cancelled,
                        r.tasks_with_intervention,
                        r.interventions,
                        r.cost_micros,
                        r.latency_p50_ms,
                        r.latency_p95_ms,
                        r.latency_p99_ms,
                        v.map(|v| v.lstm_score),
                        v.map(|v| v.transformer_score),
                        v.and_then(|v| v.statistical_score),
                        v.map(|v| v.ensemble_score),
                        v.map(|v| v.threshold),
                        v.map(|v| v.is_anomaly),
                        v.map(|v| v.model_version.as_str()),
                        v.map(|v| explanation_to_json(&v.explanation)),
                        r.updated_at_ms,
                    ])?;
                }
                tx.prepare_cached("DELETE FROM kpi_windows WHERE updated_at <= ?1")?
                    .execute(params![expired_before])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn kpi_windows(&self, query: &KpiWindowQuery) -> Result<Vec<KpiWindowRow>> {
        let q = query.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {WINDOW_COLUMNS} FROM kpi_windows WHERE tenant_id = ?1 AND window_start >= ?2 \
                 AND window_start < ?3 AND (?4 IS NULL OR agent_id = ?4) ORDER BY window_start, agent_id"
            ))?;
            let rows = stmt
                .query_map(
                    params![q.tenant_id, q.from_ms, q.to_ms, q.agent_id],
                    window_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut row, explanation)| {
                    if let (Some(v), Some(text)) = (row.verdict.as_mut(), explanation) {
                        v.explanation = explanation_from_json(&text)?;
                    }
                    Ok(row)
                })
                .collect()
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let k = key.clone();
        self.with_conn(move |conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO api_keys (key_id, tenant_id, secret_sha256, label, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.key_id, k.tenant_id, k.secret_sha256, k.label, k.created_at_ms, k.revoked_at_ms],
            )?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("api key {} exists", k.key_id)));
            }
            Ok(())
        })
        .await
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let id = key_id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"
                ))?
                .query_row(params![id], api_key_from_row)
                .optional()?)
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY tenant_id, key_id"
            ))?;
            let rows = stmt
                .query_map([], api_key_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<bool> {
        let id = key_id.to_string();
        self.with_conn(move |conn| {
            let found = conn.query_row(
                "SELECT count(*) FROM api_keys WHERE key_id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )?;
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                params![id, at_ms],
            )?;
            Ok(found > 0)
        })
        .await
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let mut u = user.clone();
        u.email = normalize_login(&u.email);
        u.username = u.username.as_deref().map(normalize_login);
        self.with_conn(move |conn| {
            // IMMEDIATE: writers from other processes (the CLI) are serialized too; the UNIQUE
            // constraints stay the last word either way.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists = |sql: &str, value: &str| -> Result<bool> {
                Ok(tx
                    .query_row(sql, params![value], |_| Ok(()))
                    .optional()?
                    .is_some())
            };
            if exists("SELECT 1 FROM users WHERE email = ?1", &u.email)? {
                return Err(Error::Taken { field: "email" });
            }
            if let Some(name) = &u.username {
                if exists("SELECT 1 FROM users WHERE username = ?1", name)? {
                    return Err(Error::Taken { field: "username" });
                }
            }
            tx.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    u.id.to_string(),
                    u.email,
                    u.username,
                    u.password_hash,
                    u.created_at_ms,
                    u.updated_at_ms
                ],
            )
            .map_err(unique_violation)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                .query_row(params![id.to_string()], user_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = normalize_login(login);
        self.read(move |conn| {
            let column = if login.contains('@') { "email" } else { "username" };
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1"))?
                .query_row(params![login], user_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn delete_user(&self, id: Uuid) -> Result<bool> {
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let id = id.to_string();
            tx.execute("DELETE FROM user_tenants WHERE user_id = ?1", params![id])?;
            let deleted = tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn grant_tenant(&self, user_id: Uuid, tenant_id: &str, at_ms: i64) -> Result<()> {
        let tenant = tenant_id.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO user_tenants (user_id, tenant_id, granted_at) VALUES (?1, ?2, ?3)",
                params![user_id.to_string(), tenant, at_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoke_tenant(&self, user_id: Uuid, tenant_id: &str) -> Result<bool> {
        let tenant = tenant_id.to_string();
        self.with_conn(move |conn| {
            Ok(conn.execute(
                "DELETE FROM user_tenants WHERE user_id = ?1 AND tenant_id = ?2",
                params![user_id.to_string(), tenant],
            )? > 0)
        })
        .await
    }

    async fn tenants_of_user(&self, user_id: Uuid) -> Result<Vec<String>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT tenant_id FROM user_tenants WHERE user_id = ?1 ORDER BY tenant_id")?;
            let rows = stmt
                .query_map(params![user_id.to_string()], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

const USER_COLUMNS: &str = "id, email, username, password_hash, created_at, updated_at";

/// A `users` row; the outer error is SQLite's, the inner one a corrupt id.
fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<User>> {
    let id: String = row.get(0)?;
    let user = User {
        id: Uuid::nil(),
        email: row.get(1)?,
        username: row.get(2)?,
        password_hash: row.get(3)?,
        created_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
    };
    Ok(match Uuid::parse_str(&id) {
        Ok(id) => Ok(User { id, ..user }),
        Err(e) => Err(Error::Corrupt {
            column: "users.id",
            message: format!("{id}: {e}"),
        }),
    })
}

/// A UNIQUE violation on `users` (another process won a race) as [`Error::Taken`].
fn unique_violation(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, Some(message)) = &e {
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
            if message.contains("users.email") {
                return Error::Taken { field: "email" };
            }
            if message.contains("users.username") {
                return Error::Taken { field: "username" };
            }
        }
    }
    Error::Sqlite(e)
}

const API_KEY_COLUMNS: &str = "key_id, tenant_id, secret_sha256, label, created_at, revoked_at";

fn api_key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: row.get(0)?,
        tenant_id: row.get(1)?,
        secret_sha256: row.get(2)?,
        label: row.get(3)?,
        created_at_ms: row.get(4)?,
        revoked_at_ms: row.get(5)?,
    })
}
