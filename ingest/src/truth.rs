//! Ground truth: the exact daily metrics of a set of events, computed straight from the events
//! (exact counts and cost, exact nearest-rank latency quantiles), per series and per tenant
//! (agent `*`). Every later stage is checked against it. Pure.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemas::kpi::{exact_latencies, Counts, Kpis};
use schemas::time::{date_of_day, day_of_ms, day_text};
use schemas::TaskEvent;
use serde::{Deserialize, Serialize};

/// The agent id of tenant-wide rows.
pub const ALL_AGENTS: &str = "*";

/// One exact daily row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthRow {
    /// Tenant.
    pub tenant_id: String,
    /// Agent, or `*` for the whole tenant.
    pub agent_id: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Counts, rates and exact nearest-rank latency quantiles (ms) of the distinct tasks
    /// (JSON: fields of the row).
    #[serde(flatten)]
    pub kpis: Kpis<i64>,
}

/// Counts and latencies of one (series, day).
type DayTruth = (Counts, Vec<i64>);

/// Accumulates events; duplicates (same `event_id`) count once.
#[derive(Debug, Default)]
pub struct GroundTruth {
    seen: HashSet<u128>,
    /// tenant -> agent (and `*`) -> day -> counts and latencies.
    days: HashMap<String, HashMap<String, BTreeMap<i64, DayTruth>>>,
    duplicates: u64,
}

impl GroundTruth {
    /// Adds one valid event.
    pub fn add(&mut self, event: &TaskEvent) {
        if !self
            .seen
            .insert(xxhash_rust::xxh3::xxh3_128(event.event_id.as_bytes()))
        {
            self.duplicates += 1;
            return;
        }
        let day = day_of_ms(event.completed_at);
        if !self.days.contains_key(&event.tenant_id) {
            self.days.insert(event.tenant_id.clone(), HashMap::new());
        }
        let agents = self.days.get_mut(&event.tenant_id).expect("inserted above");
        for agent in [event.agent_id.as_str(), ALL_AGENTS] {
            if !agents.contains_key(agent) {
                agents.insert(agent.to_string(), BTreeMap::new());
            }
            let (counts, latencies) = agents
                .get_mut(agent)
                .expect("inserted above")
                .entry(day)
                .or_default();
            counts.add(&event.view());
            latencies.push(event.latency_ms());
        }
    }

    /// Distinct events added.
    pub fn distinct_events(&self) -> usize {
        self.seen.len()
    }

    /// Duplicates skipped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The rows, ordered by tenant, agent, day.
    pub fn rows(&self) -> Vec<TruthRow> {
        let mut keyed: Vec<(&String, &String, &i64, &DayTruth)> = self
            .days
            .iter()
            .flat_map(|(t, agents)| {
                agents
                    .iter()
                    .flat_map(move |(a, days)| days.iter().map(move |(d, v)| (t, a, d, v)))
            })
            .collect();
        keyed.sort_by(|x, y| (x.0, x.1, x.2).cmp(&(y.0, y.1, y.2)));
        keyed
            .into_iter()
            .map(|(tenant_id, agent_id, day, (c, latencies))| TruthRow {
                tenant_id: tenant_id.clone(),
                agent_id: agent_id.clone(),
                day: day_text(date_of_day(*day)),
                kpis: Kpis::new(*c, exact_latencies(&mut latencies.clone())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use schemas::time::DAY_MS;
    use schemas::TaskStatus;

    use super::*;

    fn event(
        id: &str,
        agent: &str,
        completed_at: i64,
        latency: i64,
        status: TaskStatus,
        cost: i64,
    ) -> TaskEvent {
        let mut e = TaskEvent::example();
        e.event_id = id.into();
        e.agent_id = agent.into();
        e.completed_at = completed_at;
        e.started_at = completed_at - latency;
        e.status = status;
        e.cost_micros = cost;
        e
    }

    #[test]
    fn rows_are_exact_per_series_and_tenant_and_duplicates_count_once() {
        let mut t = GroundTruth::default();
        let day0 = 20_000 * DAY_MS;
        for i in 0..100 {
            t.add(&event(
                &format!("a{i}"),
                "a",
                day0 + i,
                i + 1,
                if i < 90 {
                    TaskStatus::Succeeded
                } else {
                    TaskStatus::Failed
                },
                10,
            ));
        }
        t.add(&event("a0", "a", day0, 1, TaskStatus::Succeeded, 10)); // duplicate
        t.add(&event("b0", "b", day0 + DAY_MS, 500, TaskStatus::Cancelled, 7));
        assert_eq!((t.distinct_events(), t.duplicates()), (101, 1));
        let rows = t.rows();
        let find =
            |agent: &str, day: &str| rows.iter().find(|r| r.agent_id == agent && r.day == day).unwrap();
        let a = find("a", "2024-10-04");
        assert_eq!(
            (
                a.kpis.counts.tasks_total,
                a.kpis.counts.succeeded,
                a.kpis.counts.failed,
                a.kpis.counts.cost_micros
            ),
            (100, 90, 10, 1000)
        );
        assert_eq!(
            (
                a.kpis.latency.latency_p50_ms,
                a.kpis.latency.latency_p95_ms,
                a.kpis.latency.latency_p99_ms
            ),
            (Some(50), Some(95), Some(99))
        );
        assert_eq!(a.kpis.rates.success_rate, Some(0.9));
        assert_eq!(find("*", "2024-10-04").kpis.counts.tasks_total, 100);
        let b = find("*", "2024-10-05");
        assert_eq!(
            (
                b.kpis.counts.tasks_total,
                b.kpis.counts.cancelled,
                b.kpis.latency.latency_p95_ms
            ),
            (1, 1, Some(500))
        );
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn a_row_is_one_json_object_of_named_fields() {
        let mut t = GroundTruth::default();
        t.add(&event(
            "a0",
            "a",
            20_000 * DAY_MS + 5,
            120,
            TaskStatus::Succeeded,
            10,
        ));
        t.add(&event("a1", "a", 20_000 * DAY_MS + 6, 80, TaskStatus::Failed, 30));
        let row = t.rows().into_iter().find(|r| r.agent_id == "a").unwrap();
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            r#"{"tenant_id":"acme","agent_id":"a","day":"2024-10-04","tasks_total":2,"succeeded":1,"failed":1,"cancelled":0,"tasks_with_intervention":0,"interventions":0,"cost_micros":40,"success_rate":0.5,"intervention_rate":0.0,"cost_per_task_micros":20.0,"latency_p50_ms":80,"latency_p95_ms":120,"latency_p99_ms":120}"#
        );
        assert_eq!(serde_json::from_str::<TruthRow>(&json).unwrap(), row);
        let empty = TruthRow {
            kpis: Kpis::new(Counts::default(), Default::default()),
            ..row
        };
        let json = serde_json::to_string(&empty).unwrap();
        assert!(json.contains(r#""success_rate":null"#), "{json}");
        assert_eq!(serde_json::from_str::<TruthRow>(&json).unwrap(), empty);
    }
}
