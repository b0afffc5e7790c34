use thiserror::Error;

/// A store failure.
#[derive(Debug, Error)]
pub enum Error {
    /// The store URL cannot be used.
    #[error("store url `{url}`: {message}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// ScyllaDB failed (connection, query or decoding).
    #[error("scylladb: {0}")]
    Scylla(String),
    /// A record with this key exists already.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A field that must be unique (a user's `email` or `username`) is already used by another
    /// record; `field` names it.
    #[error("{field} is already taken")]
    Taken {
        /// The field: `email` or `username`.
        field: &'static str,
    },
    /// A migration failed.
    #[error("migration {version} ({name}): {message}")]
    Migration {
        /// Version of the migration.
        version: u32,
        /// Its name.
        name: &'static str,
        /// What failed.
        message: String,
    },
    /// A checkpoint would move a partition's offset backwards.
    #[error("checkpoint of {topic}/{partition} would go back from offset {stored} to {attempted}")]
    CheckpointRegression {
        /// Topic of the partition.
        topic: String,
        /// The partition.
        partition: i32,
        /// Offset already stored.
        stored: i64,
        /// Offset that was refused.
        attempted: i64,
    },
    /// A stored value does not parse (e.g. a corrupt date).
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn scylla(e: impl std::fmt::Display) -> Error {
        Error::Scylla(e.to_string())
    }
}

/// Result of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
