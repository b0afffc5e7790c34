//! [`TaskEvent`]: one finished task of an AI agent, the pipeline's input.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::{parse_embedded, AvroRecord};

const SCHEMA_TEXT: &str = include_str!("../avro/task_event.avsc");
const SCHEMA_V1_TEXT: &str = include_str!("../avro/task_event.v1.avsc");

static SCHEMAS: LazyLock<[Schema; 2]> =
    LazyLock::new(|| [parse_embedded(SCHEMA_TEXT), parse_embedded(SCHEMA_V1_TEXT)]);

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// The agent finished the task.
    Succeeded,
    /// The agent failed the task.
    Failed,
    /// The task was cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// All statuses, in schema order.
    pub const ALL: [TaskStatus; 3] = [TaskStatus::Succeeded, TaskStatus::Failed, TaskStatus::Cancelled];

    /// The lowercase name used in JSON APIs and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// One finished task of an AI agent (schema `avro/task_event.avsc`, version 2).
///
/// Times are Unix epoch milliseconds (Avro `timestamp-millis`); the event time is
/// `completed_at`. Money is integer micro-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Unique id of this event, for de-duplication.
    pub event_id: String,
    /// The task this event reports on.
    pub task_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Agent that ran the task.
    pub agent_id: String,
    /// How the task ended.
    pub status: TaskStatus,
    /// How many times a human had to step in.
    pub human_interventions: i32,
    /// When the task started (epoch ms).
    pub started_at: i64,
    /// When the task finished (epoch ms): the event time.
    pub completed_at: i64,
    /// Cost in micro-USD.
    pub cost_micros: i64,
    /// Model the agent used, if reported.
    #[serde(default)]
    pub model: Option<String>,
    /// Prompt tokens, if reported.
    #[serde(default)]
    pub input_tokens: Option<i64>,
    /// Completion tokens, if reported.
    #[serde(default)]
    pub output_tokens: Option<i64>,
    /// Free-form attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A decoded task event that borrows its strings from the record bytes: what the aggregator's
/// hot path reads, so that decoding an event allocates nothing
/// (`Decoder::<TaskEvent>::decode_sync_as::<TaskEventView>`). Same fields as [`TaskEvent`],
/// except that the attributes are summarized for validation, not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TaskEventView<'a> {
    /// Unique id of this event, for de-duplication.
    pub event_id: &'a str,
    /// The task this event reports on.
    pub task_id: &'a str,
    /// Owning tenant.
    pub tenant_id: &'a str,
    /// Agent that ran the task.
    pub agent_id: &'a str,
    /// How the task ended.
    pub status: TaskStatus,
    /// How many times a human had to step in.
    pub human_interventions: i32,
    /// When the task started (epoch ms).
    pub started_at: i64,
    /// When the task finished (epoch ms): the event time.
    pub completed_at: i64,
    /// Cost in micro-USD.
    pub cost_micros: i64,
    /// Model the agent used, if reported.
    #[serde(default, borrow)]
    pub model: Option<&'a str>,
    /// Prompt tokens, if reported.
    #[serde(default)]
    pub input_tokens: Option<i64>,
    /// Completion tokens, if reported.
    #[serde(default)]
    pub output_tokens: Option<i64>,
    /// What validation needs to know of the attributes.
    #[serde(default, borrow)]
    pub attributes: AttributeSummary<'a>,
}

impl TaskEventView<'_> {
    /// Task latency in milliseconds (`completed_at - started_at`).
    pub fn latency_ms(&self) -> i64 {
        self.completed_at - self.started_at
    }
}

/// The attributes map as validation sees it: how many entries, and the problem of the
/// smallest key that has one (validation checks entries in key order and names the first),
/// gathered without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttributeSummary<'a> {
    /// Entries.
    pub entries: usize,
    /// The smallest key with a problem, and the problem.
    pub first_problem: Option<(&'a str, AttributeProblem)>,
}

/// What is wrong with one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeProblem {
    /// The key is empty or too long: its size in bytes.
    Key(usize),
    /// The value is too long: its size in bytes.
    Value(usize),
}

impl<'a> AttributeSummary<'a> {
    /// Folds one entry in.
    pub fn note(&mut self, key: &'a str, value: &str) {
        use crate::validation::limits::{MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES};
        self.entries += 1;
        let problem = if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            AttributeProblem::Key(key.len())
        } else if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            AttributeProblem::Value(value.len())
        } else {
            return;
        };
        if self.first_problem.is_none_or(|(k, _)| key < k) {
            self.first_problem = Some((key, problem));
        }
    }

    /// The summary of some entries.
    pub fn of<'i>(entries: impl IntoIterator<Item = (&'a str, &'i str)>) -> AttributeSummary<'a> {
        let mut summary = AttributeSummary::default();
        for (key, value) in entries {
            summary.note(key, value);
        }
        summary
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AttributeSummary<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = AttributeSummary<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut summary = AttributeSummary::default();
                while let Some((key, value)) = map.next_entry::<&'de str, &'de str>()? {
                    summary.note(key, value);
                }
                Ok(summary)
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

impl TaskEvent {
    /// This event as a [`TaskEventView`].
    pub fn view(&self) -> TaskEventView<'_> {
        TaskEventView {
            event_id: &self.event_id,
            task_id: &self.task_id,
            tenant_id: &self.tenant_id,
            agent_id: &self.agent_id,
            status: self.status,
            human_interventions: self.human_interventions,
            started_at: self.started_at,
            completed_at: self.completed_at,
            cost_micros: self.cost_micros,
            model: self.model.as_deref(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            attributes: AttributeSummary::of(self.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }

    /// The Kafka key of this event: its series (tenant + agent), so one series stays on one
    /// partition and in order.
    pub fn series_key(&self) -> String {
        series_key(&self.tenant_id, &self.agent_id)
    }

    /// Task latency in milliseconds (`completed_at - started_at`).
    pub fn latency_ms(&self) -> i64 {
        self.completed_at - self.started_at
    }

    /// A valid example event, for docs and tests.
    pub fn example() -> TaskEvent {
        TaskEvent {
            event_id: "7d4f0a55-2b8e-4a8e-9c1e-0f4c1d2e3a4b".into(),
            task_id: "task-1".into(),
            tenant_id: "acme".into(),
            agent_id: "support-bot".into(),
            status: TaskStatus::Succeeded,
            human_interventions: 0,
            started_at: 1_763_900_000_000,
            completed_at: 1_763_900_002_500,
            cost_micros: 1_250,
            model: Some("gpt-4o-mini".into()),
            input_tokens: Some(1_200),
            output_tokens: Some(300),
            attributes: BTreeMap::from([("region".into(), "eu".into())]),
        }
    }
}

/// The series key (`tenant/agent`), used as Kafka key and state key.
pub fn series_key(tenant_id: &str, agent_id: &str) -> String {
    let mut key = String::with_capacity(tenant_id.len() + agent_id.len() + 1);
    key.push_str(tenant_id);
    key.push('/');
    key.push_str(agent_id);
    key
}

impl AvroRecord for TaskEvent {
    const FULL_NAME: &'static str = "ai.agentops.v1.TaskEvent";

    fn schema() -> &'static Schema {
        &SCHEMAS[0]
    }

    fn schema_text() -> &'static str {
        SCHEMA_TEXT
    }

    fn writer_schemas() -> &'static [Schema] {
        &SCHEMAS[..]
    }
}

/// The first published version of the `TaskEvent` schema, for compatibility tests.
pub fn schema_v1() -> &'static Schema {
    &SCHEMAS[1]
}
