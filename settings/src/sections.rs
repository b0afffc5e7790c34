//! The sections of [`Settings`], one struct per `[section]` of the TOML file.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::{Assignment, Error, Result, Secret};

/// Every setting of every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Kafka brokers, client tuning and topic names.
    pub kafka: Kafka,
    /// Confluent schema registry (optional).
    pub schema_registry: SchemaRegistry,
    /// Rules on task events that every entry path applies (gateway, publisher, aggregator).
    pub events: Events,
    /// Where metrics, checkpoints, anomalies and users are stored.
    pub store: Store,
    /// HTTP ingest gateway.
    pub ingest: Ingest,
    /// Windowing aggregator.
    pub aggregator: Aggregator,
    /// Anomaly scorer.
    pub scorer: Scorer,
    /// Auth and dashboard API.
    pub auth_api: AuthApi,
    /// Alerts from anomaly verdicts (Alertmanager, webhooks, PagerDuty).
    pub alerter: crate::Alerter,
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Bootstrap servers, comma separated (`host:port,host:port`).
    pub brokers: String,
    /// `client.id` prefix of every client.
    pub client_id: String,
    /// Consumer-group session timeout; low values make group joins fast.
    pub session_timeout_ms: u32,
    /// Consumer-group heartbeat interval.
    pub heartbeat_interval_ms: u32,
    /// Longest a consumer's fetch waits at the broker for new records (`fetch.wait.max.ms`):
    /// a record produced into an idle partition reaches its consumer after at most this.
    pub fetch_wait_max_ms: u32,
    /// Partitions of topics the services create when missing.
    pub partitions: i32,
    /// Replication factor of topics the services create when missing.
    pub replication_factor: i32,
    /// Topic names.
    pub topics: Topics,
}

/// `[kafka.topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    /// Input: `TaskEvent` records keyed by series.
    pub task_events: String,
    /// Aggregator output, scorer input: `KpiWindow` records.
    pub kpi_windows: String,
    /// Scorer output: `Anomaly` records.
    pub anomalies: String,
    /// Records that could not be processed, with the reason in headers.
    pub dead_letter: String,
    /// Events later than the allowed lateness, with the reason in headers.
    pub late_events: String,
}

impl Topics {
    /// All topic names, for creating them.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.task_events,
            &self.kpi_windows,
            &self.anomalies,
            &self.dead_letter,
            &self.late_events,
        ]
    }
}

/// `[schema_registry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistry {
    /// Base URL of a Confluent-compatible registry; empty for none (single-object encoding).
    pub url: String,
}

impl SchemaRegistry {
    /// The URL, if a registry is configured.
    pub fn url(&self) -> Option<&str> {
        (!self.url.is_empty()).then_some(self.url.as_str())
    }
}

/// `[events]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// How far `completed_at` may lie ahead of the receiver's wall clock (a producer clock that
    /// runs ahead). Beyond it the gateway and the publisher refuse the event and the aggregator
    /// dead-letters it (`future_event`), so no event moves its partition's watermark further
    /// than this past the clock. At most `aggregator.allowed_lateness_secs`: then an event that
    /// completes now is never late because another series' clock runs ahead.
    pub max_future_skew_secs: u32,
}

impl Events {
    /// [`Events::max_future_skew_secs`] in milliseconds.
    pub fn max_future_skew_ms(&self) -> i64 {
        i64::from(self.max_future_skew_secs) * 1000
    }
}

/// Most days of `store.window_retention_days`: ScyllaDB refuses a TTL above 20 years.
pub const MAX_WINDOW_RETENTION_DAYS: u32 = 7_300;

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// `sqlite://<path>` (embedded, the default) or
    /// `scylla://host:port[,host:port]/<keyspace>[?replication_factor=N]`.
    pub url: String,
    /// Days a KPI window with its verdict is kept for the dashboards after it was written
    /// (ScyllaDB: the rows' TTL; SQLite: deleted as newer rows are written). At least 1.
    pub window_retention_days: u32,
}

impl Store {
    /// [`Store::window_retention_days`] in seconds.
    pub fn window_retention_secs(&self) -> u32 {
        self.window_retention_days.saturating_mul(86_400)
    }
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    /// Address of the HTTP gateway.
    pub listen: SocketAddr,
    /// Most events accepted in one request.
    pub max_batch_events: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How long the gateway waits for the broker's acknowledgement before answering 503.
    pub delivery_timeout_ms: u64,
    /// `[ingest.otlp]`: how OpenTelemetry agent spans (`POST /v1/traces`) become task events.
    pub otlp: Otlp,
}

/// `[ingest.otlp]`: the span -> task event mapping of `POST /v1/traces`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Otlp {
    /// Span attribute holding the task's cost in USD (a double or int); when present it wins
    /// over the price table (OpenTelemetry has no cost convention).
    pub cost_attribute: String,
    /// Span attribute holding the number of human interventions (an int; absent: 0).
    pub interventions_attribute: String,
    /// Span attribute (bool) that overrides the nesting rule: `true` makes an agent span a
    /// task, `false` makes it part of its enclosing task.
    pub task_attribute: String,
    /// `error.type` values that mean the task was cancelled (not failed).
    pub cancelled_error_types: Vec<String>,
    /// Prices by model (`gen_ai.request.model`): the exact name, else the longest configured
    /// name the model starts with (`gpt-4o` prices `gpt-4o-2024-08-06`).
    pub prices: std::collections::BTreeMap<String, ModelPrice>,
}

/// Prices of one model, in USD per million tokens (equal to micro-USD per token).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per million input (prompt) tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million output (completion) tokens.
    pub output_usd_per_mtok: f64,
}

/// `[aggregator]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregator {
    /// Kafka consumer group.
    pub consumer_group: String,
    /// `group` (consumer-group rebalancing), `all`, or a list of distinct partitions (`0,2`).
    pub assignment: Assignment,
    /// Length of the short tumbling window published to the scorer; divides a day.
    pub window_secs: u32,
    /// How late (behind the partition watermark) an event may arrive and still be counted.
    pub allowed_lateness_secs: u32,
    /// How often window state and input offsets are checkpointed together (also, at most every
    /// 250 ms, as soon as the input runs dry with records not checkpointed yet).
    pub checkpoint_interval_ms: u64,
    /// How many records before its checkpoint a restored partition starts fetching.
    pub resume_rewind_records: u32,
    /// Whether a partition read to its end has its days finalized by the clock once they ended
    /// more than `allowed_lateness_secs` ago (otherwise a day is final only when the partition's
    /// watermark, its latest event time, passes that point, which a quiet partition may never
    /// do). Turn off when feeding simulated or historical time (tests, the demo, backfills
    /// into a live aggregator): there, "read to its end" comes long after the days ended.
    pub finalize_days_by_clock: bool,
    /// Address of the metrics and health endpoints.
    pub metrics_listen: SocketAddr,
}

/// `[scorer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scorer {
    /// Kafka consumer group.
    pub consumer_group: String,
    /// Directory with the ONNX models and their manifest.
    pub model_dir: String,
    /// Address of the metrics and health endpoints.
    pub metrics_listen: SocketAddr,
    /// `group`, `all` or a partition list such as `0,2` (as `aggregator.assignment`).
    pub assignment: Assignment,
    /// On assignment, re-read this many records before the committed offset to refill the
    /// per-series window buffers (they are not published again).
    pub resume_rewind_records: i64,
    /// Most series scored in one inference call.
    pub max_batch: usize,
    /// How often the model directory is checked for a new model set.
    pub reload_interval_ms: u64,
    /// Path to the ONNX Runtime shared library (`libonnxruntime.so`); empty: the
    /// `ORT_DYLIB_PATH` environment variable, else the system search path.
    pub onnxruntime_path: String,
    /// Inference threads per model session.
    pub intra_threads: usize,
}

/// `[auth_api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthApi {
    /// Address of the API.
    pub listen: SocketAddr,
    /// HS256 signing key, at least 32 bytes.
    pub jwt_secret: Secret,
    /// `iss` of issued tokens, required on verification.
    pub jwt_issuer: String,
    /// `aud` of issued tokens, required on verification.
    pub jwt_audience: String,
    /// Lifetime of an access token.
    pub token_ttl_secs: u64,
    /// bcrypt cost factor (4..=31).
    pub bcrypt_cost: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` of a token, in seconds.
    pub jwt_leeway_secs: u64,
    /// bcrypt hashes/verifications running at once; 0 = one less than the CPU count (at
    /// least 1), so that logins never take every core from the other routes.
    pub bcrypt_max_concurrent: usize,
    /// bcrypt jobs allowed to wait for a slot; beyond that a login or registration is answered
    /// `503` with `Retry-After` at once.
    pub bcrypt_max_queue: usize,
    /// Failed logins per account allowed in a burst before `429`; one more is allowed every
    /// `login_failure_window_secs / login_max_failures_per_account`.
    pub login_max_failures_per_account: u32,
    /// Failed logins per client address allowed in a burst before `429`.
    pub login_max_failures_per_client: u32,
    /// Window over which the failure allowances above recover completely.
    pub login_failure_window_secs: u64,
    /// How long the auth-api reuses a user, and the user's tenant grants, read from the store
    /// (0: read them on every request). A user deleted or a tenant revoked by another process
    /// is refused at most this much later.
    pub user_cache_ttl_ms: u64,
    /// Take the client address for rate limiting from the last `X-Forwarded-For` entry (set
    /// only behind a proxy that appends it); otherwise the TCP peer address.
    pub trust_forwarded_for: bool,
}

/// Smallest accepted HS256 key (RFC 8725: at least 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl AuthApi {
    /// The JWT secret, or an error naming the key when it is missing or too short. Only the
    /// auth-api needs it, so only it calls this at start-up.
    pub fn require_jwt_secret(&self) -> Result<&Secret> {
        if self.jwt_secret.expose().len() < MIN_JWT_SECRET_BYTES {
            return Err(Error::Invalid {
                key: "auth_api.jwt_secret",
                message: format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); set AGENTOPS__AUTH_API__JWT_SECRET",
                    self.jwt_secret.expose().len()
                ),
            });
        }
        Ok(&self.jwt_secret)
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        message: message.into(),
    }
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must not be empty"));
        }
        if self.kafka.partitions < 1 {
            return Err(invalid("kafka.partitions", "must be at least 1"));
        }
        if self.kafka.heartbeat_interval_ms >= self.kafka.session_timeout_ms {
            return Err(invalid(
                "kafka.heartbeat_interval_ms",
                "must be below kafka.session_timeout_ms",
            ));
        }
        if !(1..=300_000).contains(&self.kafka.fetch_wait_max_ms) {
            return Err(invalid("kafka.fetch_wait_max_ms", "must be 1 to 300000 (ms)"));
        }
        let topics = self.kafka.topics.all();
        for (i, topic) in topics.iter().enumerate() {
            if topic.is_empty() {
                return Err(invalid("kafka.topics", "topic names must not be empty"));
            }
            if topics[..i].contains(topic) {
                return Err(invalid("kafka.topics", format!("topic `{topic}` is used twice")));
            }
        }
        if let Some(url) = self.schema_registry.url() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "schema_registry.url",
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
        }
        if !(self.store.url.starts_with("sqlite://") || self.store.url.starts_with("scylla://")) {
            return Err(invalid(
                "store.url",
                format!("`{}` must start with sqlite:// or scylla://", self.store.url),
            ));
        }
        if !(1..=MAX_WINDOW_RETENTION_DAYS).contains(&self.store.window_retention_days) {
            return Err(invalid(
                "store.window_retention_days",
                format!(
                    "{} must be between 1 and {MAX_WINDOW_RETENTION_DAYS} (a ScyllaDB TTL is at most 20 years)",
                    self.store.window_retention_days
                ),
            ));
        }
        let window = self.aggregator.window_secs;
        if window == 0 || 86_400 % window != 0 {
            return Err(invalid(
                "aggregator.window_secs",
                format!("{window} must be positive and divide 86400"),
            ));
        }
        if self.events.max_future_skew_secs > self.aggregator.allowed_lateness_secs {
            return Err(invalid(
                "events.max_future_skew_secs",
                format!(
                    "{} exceeds aggregator.allowed_lateness_secs ({}): an event accepted that far ahead of the clock would make events that complete now late on its partition",
                    self.events.max_future_skew_secs, self.aggregator.allowed_lateness_secs
                ),
            ));
        }
        if self.scorer.max_batch == 0 {
            return Err(invalid("scorer.max_batch", "must be at least 1"));
        }
        if self.scorer.intra_threads == 0 {
            return Err(invalid("scorer.intra_threads", "must be at least 1"));
        }
        if self.ingest.max_batch_events == 0 {
            return Err(invalid("ingest.max_batch_events", "must be at least 1"));
        }
        for (model, price) in &self.ingest.otlp.prices {
            let ok = |p: f64| p.is_finite() && p >= 0.0;
            if !ok(price.input_usd_per_mtok) || !ok(price.output_usd_per_mtok) {
                return Err(invalid(
                    "ingest.otlp.prices",
                    format!("prices of `{model}` must be finite and non-negative"),
                ));
            }
        }
        for (key, value) in [
            ("ingest.otlp.cost_attribute", &self.ingest.otlp.cost_attribute),
            (
                "ingest.otlp.interventions_attribute",
                &self.ingest.otlp.interventions_attribute,
            ),
            ("ingest.otlp.task_attribute", &self.ingest.otlp.task_attribute),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if !(4..=31).contains(&self.auth_api.bcrypt_cost) {
            return Err(invalid(
                "auth_api.bcrypt_cost",
                format!("{} is outside 4..=31", self.auth_api.bcrypt_cost),
            ));
        }
        if self.auth_api.token_ttl_secs == 0 {
            return Err(invalid("auth_api.token_ttl_secs", "must be positive"));
        }
        self.alerter.validate()?;
        Ok(())
    }
}
