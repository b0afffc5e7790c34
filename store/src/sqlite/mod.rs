//! The embedded SQLite backend (`rusqlite`, bundled SQLite) in WAL mode with
//! `synchronous=FULL`: one connection writes (from tokio's blocking pool, behind a lock); reads
//! of a file database run on [`readers`] read-only connections, each on its own thread, fed by
//! one queue (WAL lets them read while the writer writes). A private `:memory:` database has
//! only the one connection.
//!
//! One file per domain trait: `metrics` ([`MetricsStore`](crate::MetricsStore)), `checkpoints`,
//! `windows` (anomalies and KPI windows), `users`, `api_keys`; here the connections and the
//! migrations runner ([`SchemaStore`]).

mod api_keys;
mod checkpoints;
mod metrics;
mod users;
mod windows;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{params, Connection};
use schemas::kpi::{Counts, Latencies};
use schemas::time::now_ms;

use crate::kpi_columns::{latencies_of, latency_values, COUNT_COLUMNS, LATENCY_COLUMNS};
use crate::migrations::{self, Migration};
use crate::{Error, Result, SchemaStore};

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

/// The counts and latencies of `row`'s KPI columns, the first at index `first`
/// ([`crate::kpi_columns`]).
fn kpis_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<(Counts, Latencies)> {
    let mut counts = [0; COUNT_COLUMNS];
    for (i, value) in counts.iter_mut().enumerate() {
        *value = row.get(first + i)?;
    }
    let mut latency = [None; LATENCY_COLUMNS];
    for (i, value) in latency.iter_mut().enumerate() {
        *value = row.get(first + COUNT_COLUMNS + i)?;
    }
    Ok((Counts::from_array(counts), latencies_of(latency)))
}

/// The values of the KPI columns of `counts` and `latency`.
struct KpiValues([i64; COUNT_COLUMNS], [Option<f64>; LATENCY_COLUMNS]);

impl KpiValues {
    fn of(counts: &Counts, latency: &Latencies) -> KpiValues {
        KpiValues(counts.to_array(), latency_values(latency))
    }
}

/// The parameters of a row whose KPI columns stand between `head` and `tail`.
fn with_kpis<'a>(
    head: &'a [&'a dyn ToSql],
    kpis: &'a KpiValues,
    tail: &'a [&'a dyn ToSql],
) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(
        head.iter()
            .copied()
            .chain(kpis.0.iter().map(|c| c as &dyn ToSql))
            .chain(kpis.1.iter().map(|l| l as &dyn ToSql))
            .chain(tail.iter().copied()),
    )
}

/// How long opening a connection waits for another one's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens one connection to `path` with this backend's settings. Switching a new file to WAL
/// takes a lock that SQLite does not wait for (no busy handler there, to avoid deadlocks), so
/// when another process opens the same new file at the same moment (the scorer and the
/// aggregator of one deployment) the switch is retried until [`BUSY_TIMEOUT`] instead of
/// failing with "database is locked".
fn connect(path: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => break other?,
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
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
    /// returns the versions it applied. [`SchemaStore::migrate`] applies all of them; a test of data
    /// written before a migration stops earlier.
    ///
    /// One write transaction, taken before the applied versions are read: two processes that
    /// open the same file at once (the scorer and the aggregator of one deployment) apply each
    /// migration once; the second waits (`busy_timeout`) and finds them applied.
    pub async fn migrate_to(&self, last: u32) -> Result<Vec<u32>> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let done = applied(&tx)?;
            let mut newly = Vec::new();
            for m in migrations::SQLITE
                .iter()
                .filter(|m| m.version <= last && !done.contains(&m.version))
            {
                apply(&tx, m)?;
                newly.push(m);
            }
            tx.commit()?;
            for m in &newly {
                tracing::info!(version = m.version, name = m.name, "applied sqlite migration");
            }
            Ok(newly.iter().map(|m| m.version).collect())
        })
        .await
    }
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

/// Applies one migration inside the caller's transaction.
fn apply(conn: &Connection, m: &Migration) -> Result<()> {
    let fail = |e: rusqlite::Error| Error::Migration {
        version: m.version,
        name: m.name,
        message: e.to_string(),
    };
    conn.execute_batch(m.script).map_err(fail)?;
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
        params![m.version, m.name, now_ms()],
    )
    .map_err(fail)?;
    Ok(())
}

#[async_trait]
impl SchemaStore for SqliteStore {
    async fn migrate(&self) -> Result<Vec<u32>> {
        self.migrate_to(u32::MAX).await
    }

    async fn applied_migrations(&self) -> Result<Vec<u32>> {
        self.with_conn(|conn| applied(conn)).await
    }
}
