//! [`KpiWindow`]: the KPI vector of one series over one tumbling window.

use std::sync::LazyLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::kpi::{Counts, Latencies};
use crate::{parse_embedded, AvroRecord, ID_NAMESPACE};

const SCHEMA_TEXT: &str = include_str!("../avro/kpi_window.avsc");
static SCHEMA: LazyLock<Schema> = LazyLock::new(|| parse_embedded(SCHEMA_TEXT));

/// KPI vector of one series (tenant + agent) over one tumbling event-time window
/// (schema `avro/kpi_window.avsc`). Counts are raw; rates are derived by the reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiWindow {
    /// Deterministic id: [`KpiWindow::id_for`] of series and window start.
    pub window_id: String,
    /// Tenant of the series.
    pub tenant_id: String,
    /// Agent of the series.
    pub agent_id: String,
    /// Inclusive window start (epoch ms).
    pub window_start: i64,
    /// Exclusive window end (epoch ms).
    pub window_end: i64,
    /// 0 for the first emission; grows when late events update the window.
    pub revision: i32,
    /// The window's counts (tasks, outcomes, interventions, cost); on the wire their seven
    /// fields stand in the record itself, in this place.
    #[serde(flatten)]
    pub counts: Counts,
    /// Latency quantiles (ms), `None` when the window has no tasks; on the wire, three fields
    /// of the record.
    #[serde(flatten)]
    pub latency: Latencies,
}

impl KpiWindow {
    /// The deterministic id of the window of `tenant/agent` starting at `window_start`:
    /// a replay of the same input gives the same id.
    /// (UUID v5 of `tenant \x1f agent \x1f start`; built without the formatting machinery, since
    /// the aggregator names every window it emits.)
    pub fn id_for(tenant_id: &str, agent_id: &str, window_start: i64) -> String {
        let mut start = itoa::Buffer::new();
        let start = start.format(window_start).as_bytes();
        let mut name = Vec::with_capacity(tenant_id.len() + agent_id.len() + 2 + start.len());
        name.extend_from_slice(tenant_id.as_bytes());
        name.push(0x1f);
        name.extend_from_slice(agent_id.as_bytes());
        name.push(0x1f);
        name.extend_from_slice(start);
        let mut text = uuid::Uuid::encode_buffer();
        uuid::Uuid::new_v5(&ID_NAMESPACE, &name)
            .hyphenated()
            .encode_lower(&mut text)
            .to_owned()
    }
}

impl AvroRecord for KpiWindow {
    const FULL_NAME: &'static str = "ai.agentops.v1.KpiWindow";

    fn schema() -> &'static Schema {
        &SCHEMA
    }

    fn schema_text() -> &'static str {
        SCHEMA_TEXT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ids_are_the_uuid_v5_of_series_and_start() {
        for (tenant, agent, start) in [
            ("acme", "triage", 1_763_900_000_000),
            ("t", "é", -60_000),
            ("", "", 0),
        ] {
            let name = format!("{tenant}\u{1f}{agent}\u{1f}{start}");
            assert_eq!(
                KpiWindow::id_for(tenant, agent, start),
                uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
            );
        }
        assert_eq!(
            KpiWindow::id_for("acme", "triage", 1_763_900_000_000),
            KpiWindow::id_for("acme", "triage", 1_763_900_000_000),
        );
        assert_ne!(
            KpiWindow::id_for("acme", "triage", 0),
            KpiWindow::id_for("acme", "triage", 60_000)
        );
    }
}
