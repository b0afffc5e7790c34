//! The rows the store keeps.

use schemas::kpi::{Counts, Latencies};
use time::Date;
use uuid::Uuid;

/// The agent id of a tenant-wide roll-up row (all agents of the tenant).
pub const ALL_AGENTS: &str = "*";

/// The KPIs of one series (or a tenant roll-up) over one UTC day. Rates are derived from the
/// counts by the readers; the t-digest of latencies is kept so that longer periods are merges.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyMetric {
    /// Tenant.
    pub tenant_id: String,
    /// Agent, or [`ALL_AGENTS`].
    pub agent_id: String,
    /// UTC day.
    pub day: Date,
    /// The day's counts.
    pub counts: Counts,
    /// Latency quantiles (ms), `None` without tasks.
    pub latency: Latencies,
    /// Serialized t-digest of the day's latencies.
    pub latency_digest: Vec<u8>,
    /// Whether the watermark passed the end of the day (no more updates expected).
    pub is_final: bool,
    /// When the row was computed (epoch ms).
    pub updated_at_ms: i64,
}

/// The checkpoint of one input partition: the offset of the next record to read and the
/// serialized window state that reflects every record before it. Written together, in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Consumer group of the owner.
    pub consumer_group: String,
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Offset of the next record to consume.
    pub next_offset: i64,
    /// Serialized state (format owned by the writer).
    pub state: Vec<u8>,
    /// When it was written (epoch ms).
    pub updated_at_ms: i64,
}

/// A per-tenant API key of the ingest gateway, as stored: the public id and a SHA-256 of the
/// secret, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Public id (the lookup key).
    pub key_id: String,
    /// The tenant this key may write to.
    pub tenant_id: String,
    /// Lowercase hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Free text (who or what uses it).
    pub label: String,
    /// Creation time (epoch ms).
    pub created_at_ms: i64,
    /// Revocation time (epoch ms); `None` while the key is valid.
    pub revoked_at_ms: Option<i64>,
}

/// A user account of the auth-api, as stored.
///
/// `email` and `username` are unique and case-insensitive: the store keeps them lowercase
/// ([`normalize_login`]) and looks them up the same way.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Random (v4) id; the `sub` of the user's tokens.
    pub id: Uuid,
    /// Email address (unique, lowercase).
    pub email: String,
    /// Optional user name (unique, lowercase, never contains `@`).
    pub username: Option<String>,
    /// bcrypt hash of the password (`$2b$<cost>$...`); never leaves the service.
    pub password_hash: String,
    /// Creation time (epoch ms).
    pub created_at_ms: i64,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password_hash", &"***")
            .field("created_at_ms", &self.created_at_ms)
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

/// The form in which emails and usernames are stored and compared: lowercase.
pub fn normalize_login(value: &str) -> String {
    value.to_lowercase()
}

/// Which daily rows to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyMetricsQuery {
    /// Tenant.
    pub tenant_id: String,
    /// One agent (or [`ALL_AGENTS`]), or every row of the tenant when `None`.
    pub agent_id: Option<String>,
    /// First day, inclusive.
    pub from: Date,
    /// Last day, inclusive.
    pub to: Date,
}

/// Which anomaly verdicts to read.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyQuery {
    /// Tenant.
    pub tenant_id: String,
    /// Window start, inclusive (epoch ms).
    pub from_ms: i64,
    /// Window start, exclusive (epoch ms).
    pub to_ms: i64,
    /// Smallest ensemble score returned.
    pub min_score: f64,
    /// Only flagged windows.
    pub only_flagged: bool,
}

/// The date of a stored `day` column (`YYYY-MM-DD`, [`schemas::time::day_text`]).
pub(crate) fn parse_stored_day(text: &str) -> crate::Result<Date> {
    schemas::time::parse_day(text).map_err(|e| crate::Error::Corrupt {
        column: "day",
        message: e.to_string(),
    })
}

/// One KPI window of a series (the aggregator's `KpiWindow`) with the scorer's verdict on it:
/// what a dashboard draws. Rates are derived from the counts by the readers.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiWindowRow {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// Inclusive window start (epoch ms).
    pub window_start: i64,
    /// Exclusive window end (epoch ms).
    pub window_end: i64,
    /// Revision of the window this row holds (grows when late events changed it).
    pub revision: i32,
    /// The window's counts (`tasks_total` is its volume).
    pub counts: Counts,
    /// Latency quantiles (ms), `None` without tasks.
    pub latency: Latencies,
    /// The scorer's verdict; `None` for a window it read but did not score (the first windows
    /// of a series, before its model input is full).
    pub verdict: Option<WindowVerdict>,
    /// When the row was written (epoch ms); retention counts from here.
    pub updated_at_ms: i64,
}

/// The scorer's verdict on one window, as a dashboard shows it (its JSON is the dashboard's
/// `verdict` object).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowVerdict {
    /// The LSTM autoencoder's calibrated score (robust z-score).
    pub lstm_score: f64,
    /// The Transformer autoencoder's calibrated score.
    pub transformer_score: f64,
    /// The statistical member's score (largest CUSUM), if it scored.
    pub statistical_score: Option<f64>,
    /// The ensemble score.
    pub ensemble_score: f64,
    /// The threshold the ensemble was compared with.
    pub threshold: f64,
    /// Flagged.
    pub is_anomaly: bool,
    /// The model set that scored it.
    pub model_version: String,
    /// The KPIs against the series' normal range, most evidence first.
    pub explanation: Vec<schemas::KpiExplanation>,
}

/// Which KPI windows to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiWindowQuery {
    /// Tenant.
    pub tenant_id: String,
    /// One agent, or every agent of the tenant when `None`.
    pub agent_id: Option<String>,
    /// Window start, inclusive (epoch ms).
    pub from_ms: i64,
    /// Window start, exclusive (epoch ms).
    pub to_ms: i64,
}

/// How long a row written at `updated_at_ms` has left at `now_ms` when rows are kept for
/// `retention_secs` after their write, in whole seconds (rounded up); `None` once it expired.
/// Rows it gives `None` are not written (SQLite also deletes them).
pub fn remaining_ttl_secs(updated_at_ms: i64, retention_secs: u32, now_ms: i64) -> Option<i32> {
    let left_ms = updated_at_ms
        .saturating_add(i64::from(retention_secs).saturating_mul(1_000))
        .saturating_sub(now_ms);
    (left_ms > 0).then(|| i32::try_from(left_ms.saturating_add(999) / 1_000).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::remaining_ttl_secs;

    #[test]
    fn the_ttl_counts_from_the_write_and_ends_at_the_retention() {
        let day = 86_400;
        assert_eq!(remaining_ttl_secs(1_000, day, 1_000), Some(day as i32));
        assert_eq!(remaining_ttl_secs(0, day, 1), Some(day as i32), "rounded up");
        // The exact boundary: expired at updated_at + retention, alive 1 ms before.
        assert_eq!(remaining_ttl_secs(0, day, i64::from(day) * 1_000), None);
        assert_eq!(remaining_ttl_secs(0, day, i64::from(day) * 1_000 - 1), Some(1));
        assert_eq!(remaining_ttl_secs(0, 10, 1_000_000), None);
        assert_eq!(remaining_ttl_secs(i64::MAX, u32::MAX, 0), Some(i32::MAX));
    }
}
