//! Dashboard queries: their parameters, the identifier rule, the tenant-scope rule and the JSON
//! rows (pure).
//!
//! A user reads a tenant only if the tenant is among the user's grants (`auth-api grant`);
//! anything else is `403`, also for tenants that do not exist (no probing).
//!
//! Tenant and agent ids follow one rule everywhere (the events' rule in
//! `schemas::validation`, the gateway's, `auth-api grant`'s and these queries'): any UTF-8 text
//! of 1 to 128 bytes that is not only whitespace and holds no `/`. In a URL path an id is
//! percent-encoded (`caf%C3%A9`, `big%20corp`) and the routes decode it once
//! ([`crate::routes::decode_path_param`]) before this rule and the grant check see it.

use schemas::kpi::Kpis;
use schemas::time::{day_text, DAY_MS};
use serde::{Deserialize, Serialize};
use store::{AnomalyQuery, DailyMetric, DailyMetricsQuery, KpiWindowQuery, KpiWindowRow};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::{Error, Result};

/// Longest day range of one daily-metrics query.
pub const MAX_DAYS: i64 = 366;
/// Longest time range of one anomaly query.
pub const MAX_ANOMALY_RANGE_MS: i64 = 31 * DAY_MS;

/// Longest time range of one KPI-window query (a month of 15-minute windows: 2,976 per series).
pub const MAX_WINDOW_RANGE_MS: i64 = 31 * DAY_MS;

/// Checks a tenant or agent id against the identifier rule (see the module docs); the error
/// names `field`.
pub fn check_id(field: &'static str, id: &str) -> Result<()> {
    const MAX: usize = schemas::validation::limits::MAX_ID_BYTES;
    if id.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if id.len() > MAX {
        return Err(invalid(
            field,
            format!("is {} bytes, at most {MAX} allowed", id.len()),
        ));
    }
    if id.contains('/') {
        return Err(invalid(field, "must not contain '/'"));
    }
    Ok(())
}

/// Whether a user with these grants may read `tenant`.
pub fn authorize(granted: &[String], tenant: &str) -> Result<()> {
    if granted.iter().any(|t| t == tenant) {
        Ok(())
    } else {
        Err(Error::Forbidden {
            tenant: tenant.to_string(),
        })
    }
}

/// Query string of `GET /api/v1/tenants/{tenant}/metrics/daily`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyParams {
    /// First day, `YYYY-MM-DD`, inclusive.
    pub from: String,
    /// Last day, `YYYY-MM-DD`, inclusive.
    pub to: String,
    /// One agent (`*` for the tenant roll-up); every row when absent.
    #[serde(default)]
    pub agent: Option<String>,
}

/// Query string of `GET /api/v1/tenants/{tenant}/anomalies`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyParams {
    /// Window start from, RFC 3339, inclusive.
    pub from: String,
    /// Window start to, RFC 3339, exclusive.
    pub to: String,
    /// Smallest ensemble score (default 0).
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Only windows flagged as anomalous (default false).
    #[serde(default)]
    pub only_flagged: Option<bool>,
}

/// Query string of `GET /api/v1/tenants/{tenant}/windows`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// Window start from, RFC 3339, inclusive.
    pub from: String,
    /// Window start to, RFC 3339, exclusive.
    pub to: String,
    /// One agent; every agent of the tenant when absent.
    #[serde(default)]
    pub agent: Option<String>,
    /// `rows` (the default): one object per window; `columns`: one array per field
    /// ([`WindowColumns`], what the dashboard page reads).
    #[serde(default)]
    pub layout: Option<String>,
}

/// How the KPI-windows route lays out the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowLayout {
    /// One [`WindowRow`] per window.
    Rows,
    /// [`WindowColumns`].
    Columns,
}

impl WindowParams {
    /// The layout asked for (`rows` when absent).
    pub fn layout(&self) -> Result<WindowLayout> {
        match self.layout.as_deref() {
            None | Some("rows") => Ok(WindowLayout::Rows),
            Some("columns") => Ok(WindowLayout::Columns),
            Some(_) => Err(invalid("layout", "must be `rows` or `columns`")),
        }
    }

    /// The store query for `tenant`.
    pub fn query(&self, tenant: &str) -> Result<KpiWindowQuery> {
        check_id("tenant", tenant)?;
        let from_ms = parse_instant_ms("from", &self.from)?;
        let to_ms = parse_instant_ms("to", &self.to)?;
        if to_ms <= from_ms {
            return Err(invalid("to", "must be after `from`"));
        }
        if to_ms - from_ms > MAX_WINDOW_RANGE_MS {
            return Err(invalid("to", "at most 31 days per query"));
        }
        if let Some(agent) = &self.agent {
            check_id("agent", agent)?;
        }
        Ok(KpiWindowQuery {
            tenant_id: tenant.to_string(),
            agent_id: self.agent.clone(),
            from_ms,
            to_ms,
        })
    }
}

/// One KPI window as the dashboard reads it: counts, derived rates, latency quantiles and the
/// scorer's verdict (null for a window not scored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRow {
    /// Agent.
    pub agent_id: String,
    /// Window start (epoch ms, inclusive).
    pub window_start: i64,
    /// Window end (epoch ms, exclusive).
    pub window_end: i64,
    /// Revision of the window (grows when late events changed it).
    pub revision: i32,
    /// Counts (`tasks_total` is the volume), rates (null without tasks) and latency
    /// quantiles; in the JSON, fields of the row.
    #[serde(flatten)]
    pub kpis: Kpis,
    /// The scorer's verdict.
    pub verdict: Option<store::WindowVerdict>,
}

impl From<&KpiWindowRow> for WindowRow {
    fn from(w: &KpiWindowRow) -> WindowRow {
        WindowRow {
            agent_id: w.agent_id.clone(),
            window_start: w.window_start,
            window_end: w.window_end,
            revision: w.revision,
            kpis: Kpis::new(w.counts, w.latency),
            verdict: w.verdict.clone(),
        }
    }
}

/// The windows of one query, in the layout asked for (the route adds `tenant_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WindowsBody {
    /// `layout=rows`: `{"windows": [...]}`.
    Rows {
        /// One object per window.
        windows: Vec<WindowRow>,
    },
    /// `layout=columns`: `{"columns": {...}}`.
    Columns {
        /// One array per field.
        columns: Box<WindowColumns>,
    },
}

/// The KPI windows as one array per field, in the rows' order (window start, then agent): what
/// the dashboard page draws and tabulates, each field name once instead of once per window
/// (a week of 9 series: about a fifth of the rows' bytes). Index `i` of every array is window
/// `i`; the scorer's verdict is reduced to its ensemble score (null: not scored) and flag, and
/// the flagged windows come whole in `flagged` (scores, explanation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowColumns {
    /// The agents, sorted; `agent` holds indexes into it.
    pub agents: Vec<String>,
    /// Agent of each window (index into `agents`).
    pub agent: Vec<u32>,
    /// Window start (epoch ms, inclusive).
    pub window_start: Vec<i64>,
    /// Window end (epoch ms, exclusive).
    pub window_end: Vec<i64>,
    /// Tasks completed (the volume).
    pub tasks_total: Vec<i64>,
    /// Task success rate, null without tasks.
    pub success_rate: Vec<Option<f64>>,
    /// Human intervention rate.
    pub intervention_rate: Vec<Option<f64>>,
    /// Cost per task, micro-USD.
    pub cost_per_task_micros: Vec<Option<f64>>,
    /// Latency median (ms).
    pub latency_p50_ms: Vec<Option<f64>>,
    /// Latency P95 (ms).
    pub latency_p95_ms: Vec<Option<f64>>,
    /// Latency P99 (ms).
    pub latency_p99_ms: Vec<Option<f64>>,
    /// The verdict's ensemble score, null for a window not scored.
    pub ensemble_score: Vec<Option<f64>>,
    /// Flagged as an anomaly.
    pub is_anomaly: Vec<bool>,
    /// The flagged windows, whole.
    pub flagged: Vec<WindowRow>,
}

impl WindowColumns {
    /// The columns of `rows` (kept in their order).
    pub fn from_rows(rows: &[KpiWindowRow]) -> WindowColumns {
        let agents: Vec<String> = rows
            .iter()
            .map(|w| w.agent_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(str::to_string)
            .collect();
        let n = rows.len();
        let mut c = WindowColumns {
            agent: Vec::with_capacity(n),
            window_start: Vec::with_capacity(n),
            window_end: Vec::with_capacity(n),
            tasks_total: Vec::with_capacity(n),
            success_rate: Vec::with_capacity(n),
            intervention_rate: Vec::with_capacity(n),
            cost_per_task_micros: Vec::with_capacity(n),
            latency_p50_ms: Vec::with_capacity(n),
            latency_p95_ms: Vec::with_capacity(n),
            latency_p99_ms: Vec::with_capacity(n),
            ensemble_score: Vec::with_capacity(n),
            is_anomaly: Vec::with_capacity(n),
            flagged: Vec::new(),
            agents,
        };
        for w in rows {
            let agent = c.agents.binary_search_by(|a| a.as_str().cmp(&w.agent_id));
            c.agent.push(agent.unwrap_or_default() as u32);
            let rates = w.counts.rates();
            c.window_start.push(w.window_start);
            c.window_end.push(w.window_end);
            c.tasks_total.push(w.counts.tasks_total);
            c.success_rate.push(rates.success_rate);
            c.intervention_rate.push(rates.intervention_rate);
            c.cost_per_task_micros.push(rates.cost_per_task_micros);
            c.latency_p50_ms.push(w.latency.latency_p50_ms);
            c.latency_p95_ms.push(w.latency.latency_p95_ms);
            c.latency_p99_ms.push(w.latency.latency_p99_ms);
            c.ensemble_score
                .push(w.verdict.as_ref().map(|v| v.ensemble_score));
            let flagged = w.verdict.as_ref().is_some_and(|v| v.is_anomaly);
            c.is_anomaly.push(flagged);
            if flagged {
                c.flagged.push(WindowRow::from(w));
            }
        }
        c
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

fn parse_day(field: &'static str, text: &str) -> Result<Date> {
    schemas::time::parse_day(text).map_err(|_| invalid(field, "must be a date YYYY-MM-DD"))
}

fn parse_instant_ms(field: &'static str, text: &str) -> Result<i64> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| invalid(field, "must be an RFC 3339 time like 2025-10-01T00:00:00Z"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl DailyParams {
    /// The store query for `tenant`.
    pub fn query(&self, tenant: &str) -> Result<DailyMetricsQuery> {
        check_id("tenant", tenant)?;
        let from = parse_day("from", &self.from)?;
        let to = parse_day("to", &self.to)?;
        if to < from {
            return Err(invalid("to", "must not be before `from`"));
        }
        if (to - from).whole_days() >= MAX_DAYS {
            return Err(invalid("to", format!("at most {MAX_DAYS} days per query")));
        }
        if let Some(agent) = &self.agent {
            check_id("agent", agent)?;
        }
        Ok(DailyMetricsQuery {
            tenant_id: tenant.to_string(),
            agent_id: self.agent.clone(),
            from,
            to,
        })
    }
}

impl AnomalyParams {
    /// The store query for `tenant`.
    pub fn query(&self, tenant: &str) -> Result<AnomalyQuery> {
        check_id("tenant", tenant)?;
        let from_ms = parse_instant_ms("from", &self.from)?;
        let to_ms = parse_instant_ms("to", &self.to)?;
        if to_ms <= from_ms {
            return Err(invalid("to", "must be after `from`"));
        }
        if to_ms - from_ms > MAX_ANOMALY_RANGE_MS {
            return Err(invalid("to", "at most 31 days per query"));
        }
        let min_score = self.min_score.unwrap_or(0.0);
        if !min_score.is_finite() {
            return Err(invalid("min_score", "must be a finite number"));
        }
        Ok(AnomalyQuery {
            tenant_id: tenant.to_string(),
            from_ms,
            to_ms,
            min_score,
            only_flagged: self.only_flagged.unwrap_or(false),
        })
    }
}

/// One daily row as the dashboard reads it: counts, derived rates, latency quantiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyRow {
    /// Tenant.
    pub tenant_id: String,
    /// Agent, `*` for the tenant roll-up.
    pub agent_id: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Counts, rates (`success_rate = succeeded / tasks_total`, ..., null without tasks) and
    /// latency quantiles; in the JSON, fields of the row.
    #[serde(flatten)]
    pub kpis: Kpis,
    /// Whether the day is closed.
    pub is_final: bool,
}

impl From<&DailyMetric> for DailyRow {
    fn from(m: &DailyMetric) -> DailyRow {
        DailyRow {
            tenant_id: m.tenant_id.clone(),
            agent_id: m.agent_id.clone(),
            day: day_text(m.day),
            kpis: Kpis::new(m.counts, m.latency),
            is_final: m.is_final,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::date;

    use schemas::kpi::{Counts, Latencies};

    use super::*;
    use crate::error::invalid_field as field;

    #[test]
    fn only_granted_tenants_are_readable() {
        let granted = vec!["acme".to_string(), "globex".to_string()];
        assert!(authorize(&granted, "acme").is_ok());
        assert!(matches!(
            authorize(&granted, "initech"),
            Err(Error::Forbidden { .. })
        ));
        assert!(authorize(&granted, "ACME").is_err(), "exact match only");
        assert!(authorize(&[], "acme").is_err());
    }

    proptest! {
        #[test]
        fn authorize_is_membership(granted in proptest::collection::vec("[a-c]{1,2}", 0..5), tenant in "[a-c]{1,2}") {
            prop_assert_eq!(authorize(&granted, &tenant).is_ok(), granted.contains(&tenant));
        }
    }

    #[test]
    fn ids_follow_the_events_rule() {
        for ok in [
            "acme",
            "café",
            "big corp",
            "*",
            "a%2Fb",
            &"x".repeat(128),
            &"é".repeat(64),
        ] {
            assert!(check_id("tenant", ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "\t", "a/b", "/", &"x".repeat(129), &"é".repeat(65)] {
            assert_eq!(field(check_id("tenant", bad)), "tenant", "{bad}");
        }
    }

    proptest! {
        /// The same verdict as the events' validation gives a `tenant_id`.
        #[test]
        fn ids_are_accepted_exactly_when_an_event_would_be(id in "\\PC{0,70}|[a/ ]{0,3}") {
            let mut event = schemas::TaskEvent::example();
            event.tenant_id = id.clone();
            let event_ok = match schemas::validation::validate(&event) {
                Ok(()) => true,
                Err(e) => e.field != "tenant_id",
            };
            prop_assert_eq!(check_id("tenant", &id).is_ok(), event_ok);
        }
    }

    #[test]
    fn daily_params() {
        let p = |from: &str, to: &str, agent: Option<&str>| DailyParams {
            from: from.into(),
            to: to.into(),
            agent: agent.map(String::from),
        };
        let q = p("2025-10-01", "2025-10-07", Some("bot")).query("acme").unwrap();
        assert_eq!(
            q,
            DailyMetricsQuery {
                tenant_id: "acme".into(),
                agent_id: Some("bot".into()),
                from: date!(2025 - 10 - 01),
                to: date!(2025 - 10 - 07)
            }
        );
        assert!(p("2025-10-01", "2025-10-01", None).query("acme").is_ok());
        assert_eq!(field(p("2025-13-01", "2025-10-07", None).query("a")), "from");
        assert_eq!(field(p("2025-10-01", "yesterday", None).query("a")), "to");
        assert_eq!(field(p("2025-10-07", "2025-10-01", None).query("a")), "to");
        assert_eq!(field(p("2024-01-01", "2025-01-01", None).query("a")), "to");
        assert_eq!(field(p("2025-10-01", "2025-10-02", Some("")).query("a")), "agent");
        assert_eq!(
            field(p("2025-10-01", "2025-10-02", Some("a/b")).query("a")),
            "agent"
        );
        assert_eq!(field(p("2025-10-01", "2025-10-02", None).query("a/b")), "tenant");
        assert!(p("2025-10-01", "2025-10-02", Some("big bot"))
            .query("café")
            .is_ok());
    }

    #[test]
    fn anomaly_params() {
        let p = |from: &str, to: &str, min: Option<f64>| AnomalyParams {
            from: from.into(),
            to: to.into(),
            min_score: min,
            only_flagged: None,
        };
        let q = p("2025-10-01T00:00:00Z", "2025-10-01T01:00:00+01:00", Some(2.5)).query("acme");
        assert!(
            matches!(q, Err(Error::Invalid { field: "to", .. })),
            "same instant: {q:?}"
        );
        let q = p("2025-10-01T00:00:00Z", "2025-10-02T00:00:00Z", Some(2.5))
            .query("acme")
            .unwrap();
        assert_eq!((q.from_ms, q.to_ms), (1_759_276_800_000, 1_759_363_200_000));
        assert_eq!(q.min_score, 2.5);
        assert!(!q.only_flagged);
        assert_eq!(
            field(p("2025-10-01", "2025-10-02T00:00:00Z", None).query("a")),
            "from"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-12-01T00:00:00Z", None).query("a")),
            "to"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-10-02T00:00:00Z", Some(f64::NAN)).query("a")),
            "min_score"
        );
    }

    #[test]
    fn window_params() {
        let p = |from: &str, to: &str, agent: Option<&str>| WindowParams {
            from: from.into(),
            to: to.into(),
            agent: agent.map(String::from),
            layout: None,
        };
        let q = p("2025-10-01T00:00:00Z", "2025-10-08T00:00:00Z", Some("bot"))
            .query("acme")
            .unwrap();
        assert_eq!(
            q,
            KpiWindowQuery {
                tenant_id: "acme".into(),
                agent_id: Some("bot".into()),
                from_ms: 1_759_276_800_000,
                to_ms: 1_759_881_600_000,
            }
        );
        // The limit, at the exact boundary: 31 days pass, 31 days and 1 ms do not.
        assert!(p("2025-10-01T00:00:00Z", "2025-11-01T00:00:00Z", None)
            .query("a")
            .is_ok());
        let over = p("2025-10-01T00:00:00Z", "2025-11-01T00:00:00.001Z", None).query("a");
        assert!(
            matches!(&over, Err(Error::Invalid { field: "to", message }) if message.contains("31 days")),
            "{over:?}"
        );
        assert_eq!(
            field(p("yesterday", "2025-10-02T00:00:00Z", None).query("a")),
            "from"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-10-02", None).query("a")),
            "to"
        );
        assert_eq!(
            field(p("2025-10-02T00:00:00Z", "2025-10-01T00:00:00Z", None).query("a")),
            "to"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-10-01T00:00:00Z", None).query("a")),
            "to"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-10-02T00:00:00Z", Some("a/b")).query("a")),
            "agent"
        );
        assert_eq!(
            field(p("2025-10-01T00:00:00Z", "2025-10-02T00:00:00Z", None).query("")),
            "tenant"
        );
    }

    #[test]
    fn window_rows_derive_rates_and_keep_the_verdict() {
        let w = KpiWindowRow {
            tenant_id: "acme".into(),
            agent_id: "bot".into(),
            window_start: 0,
            window_end: 900_000,
            revision: 0,
            counts: Counts {
                tasks_total: 8,
                succeeded: 6,
                failed: 2,
                cancelled: 0,
                tasks_with_intervention: 2,
                interventions: 3,
                cost_micros: 4_000,
            },
            latency: Latencies {
                latency_p50_ms: Some(10.0),
                latency_p95_ms: Some(20.0),
                latency_p99_ms: Some(30.0),
            },
            verdict: None,
            updated_at_ms: 0,
        };
        let r = WindowRow::from(&w);
        assert_eq!(
            (
                r.kpis.rates.success_rate,
                r.kpis.rates.intervention_rate,
                r.kpis.rates.cost_per_task_micros
            ),
            (Some(0.75), Some(0.25), Some(500.0))
        );
        assert_eq!(r.verdict, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["verdict"].is_null(), "{json}");
        // Counts and rates are fields of the row itself, in this order.
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"agent_id":"bot","window_start":0,"window_end":900000,"revision":0,"tasks_total":8,"succeeded":6,"failed":2,"cancelled":0,"tasks_with_intervention":2,"interventions":3,"cost_micros":4000,"success_rate":0.75,"intervention_rate":0.25,"cost_per_task_micros":500.0,"latency_p50_ms":10.0,"latency_p95_ms":20.0,"latency_p99_ms":30.0,"verdict":null}"#
        );
        let empty = WindowRow::from(&KpiWindowRow {
            counts: Counts::default(),
            ..w
        });
        assert_eq!(empty.kpis.rates.success_rate, None);
    }

    #[test]
    fn the_layout_is_rows_unless_columns_are_asked_for() {
        let p = |layout: Option<&str>| WindowParams {
            from: "2025-10-01T00:00:00Z".into(),
            to: "2025-10-02T00:00:00Z".into(),
            agent: None,
            layout: layout.map(String::from),
        };
        assert_eq!(p(None).layout().unwrap(), WindowLayout::Rows);
        assert_eq!(p(Some("rows")).layout().unwrap(), WindowLayout::Rows);
        assert_eq!(p(Some("columns")).layout().unwrap(), WindowLayout::Columns);
        assert_eq!(field(p(Some("Columns")).layout()), "layout");
        assert_eq!(field(p(Some("")).layout()), "layout");
    }

    fn scored(agent: &str, start: i64, tasks: i64, verdict: Option<(f64, bool)>) -> KpiWindowRow {
        KpiWindowRow {
            tenant_id: "acme".into(),
            agent_id: agent.into(),
            window_start: start,
            window_end: start + 900_000,
            revision: 1,
            counts: Counts {
                tasks_total: tasks,
                succeeded: tasks / 2,
                failed: tasks - tasks / 2,
                cancelled: 0,
                tasks_with_intervention: 1.min(tasks),
                interventions: 1,
                cost_micros: 3_000,
            },
            latency: Latencies {
                latency_p50_ms: Some(10.0),
                latency_p95_ms: None,
                latency_p99_ms: Some(30.0),
            },
            verdict: verdict.map(|(ensemble_score, is_anomaly)| store::WindowVerdict {
                lstm_score: 1.0,
                transformer_score: 2.0,
                statistical_score: None,
                ensemble_score,
                threshold: 3.0,
                is_anomaly,
                model_version: "m".into(),
                explanation: Vec::new(),
            }),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn columns_hold_the_rows_values_in_their_order() {
        let rows = vec![
            scored("crm", 0, 4, Some((0.5, false))),
            scored("<b>bot</b>", 0, 0, None),
            scored("crm", 900_000, 6, Some((6.5, true))),
        ];
        let c = WindowColumns::from_rows(&rows);
        assert_eq!(c.agents, ["<b>bot</b>", "crm"]);
        assert_eq!(c.agent, [1, 0, 1]);
        assert_eq!(c.window_start, [0, 0, 900_000]);
        assert_eq!(c.window_end, [900_000, 900_000, 1_800_000]);
        assert_eq!(c.tasks_total, [4, 0, 6]);
        assert_eq!(c.ensemble_score, [Some(0.5), None, Some(6.5)]);
        assert_eq!(c.is_anomaly, [false, false, true]);
        assert_eq!(c.flagged, [WindowRow::from(&rows[2])]);
        // Every derived value equals the row layout's.
        for (i, w) in rows.iter().map(WindowRow::from).enumerate() {
            assert_eq!(c.agents[c.agent[i] as usize], w.agent_id);
            assert_eq!(c.success_rate[i], w.kpis.rates.success_rate);
            assert_eq!(c.intervention_rate[i], w.kpis.rates.intervention_rate);
            assert_eq!(c.cost_per_task_micros[i], w.kpis.rates.cost_per_task_micros);
            assert_eq!(c.latency_p50_ms[i], w.kpis.latency.latency_p50_ms);
            assert_eq!(c.latency_p95_ms[i], w.kpis.latency.latency_p95_ms);
            assert_eq!(c.latency_p99_ms[i], w.kpis.latency.latency_p99_ms);
        }
        let json = serde_json::to_value(WindowsBody::Columns { columns: Box::new(c) }).unwrap();
        assert_eq!(
            json["columns"]["success_rate"],
            serde_json::json!([0.5, null, 0.5])
        );
        assert_eq!(json["columns"]["flagged"][0]["verdict"]["ensemble_score"], 6.5);
        let empty = WindowColumns::from_rows(&[]);
        assert!(empty.agents.is_empty() && empty.window_start.is_empty() && empty.flagged.is_empty());
    }

    #[test]
    fn rows_derive_rates_and_drop_the_digest() {
        let m = DailyMetric {
            tenant_id: "acme".into(),
            agent_id: "bot".into(),
            day: date!(2025 - 10 - 01),
            counts: Counts {
                tasks_total: 4,
                succeeded: 3,
                failed: 1,
                cancelled: 0,
                tasks_with_intervention: 1,
                interventions: 2,
                cost_micros: 1000,
            },
            latency: Latencies {
                latency_p50_ms: Some(1.0),
                latency_p95_ms: None,
                latency_p99_ms: None,
            },
            latency_digest: vec![1, 2, 3],
            is_final: true,
            updated_at_ms: 0,
        };
        let r = DailyRow::from(&m);
        assert_eq!(r.day, "2025-10-01");
        assert_eq!(r.kpis.rates.success_rate, Some(0.75));
        assert_eq!(r.kpis.rates.intervention_rate, Some(0.25));
        assert_eq!(r.kpis.rates.cost_per_task_micros, Some(250.0));
        let empty = DailyRow::from(&DailyMetric {
            counts: Counts::default(),
            ..m
        });
        assert_eq!(empty.kpis.rates.success_rate, None);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"tenant_id":"acme","agent_id":"bot","day":"2025-10-01","tasks_total":4,"succeeded":3,"failed":1,"cancelled":0,"tasks_with_intervention":1,"interventions":2,"cost_micros":1000,"success_rate":0.75,"intervention_rate":0.25,"cost_per_task_micros":250.0,"latency_p50_ms":1.0,"latency_p95_ms":null,"latency_p99_ms":null,"is_final":true}"#,
            "counts and rates are fields of the row itself, in this order; no digest"
        );
    }
}
