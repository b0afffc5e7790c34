//! The grouping state machine: consecutive flagged windows of a series become one alert.
//!
//! An alert's identity is (tenant, agent, driving KPI) plus the event time its incident
//! started ([`Alert::fingerprint`]). It opens on the first flagged window of a series that no
//! open alert of the series explains, stays firing while flagged windows keep coming, and
//! resolves once its series has shown the quiet period without a flagged window, or the
//! partition's event time (the latest window end seen) has gone past the quiet period's end:
//! one clean window inside an incident does not resolve it (hysteresis), and neither do the
//! other series' windows of the period that would complete the quiet period (they may arrive
//! before the series' own, which may be flagged). Time is event time only; nothing here reads
//! a clock, so a replay of the same verdicts from the same state gives the same alerts.

use std::collections::BTreeMap;

use schemas::Anomaly;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The KPI named when a flagged verdict explains none.
pub const UNEXPLAINED_KPI: &str = "ensemble_score";

/// How verdicts are grouped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupingConfig {
    /// Event time after the last flagged window's end without another one before the alert
    /// resolves.
    pub quiet_ms: i64,
    /// Ensemble score over threshold at or above which a new alert is `critical`.
    pub critical_ratio: f64,
}

/// Severity label of an alert, fixed when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The opening window scored at least `critical_ratio` times the threshold.
    Critical,
    /// Flagged, below that.
    Warning,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// The latest flagged window of an alert, as shown to people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Window start (epoch ms).
    pub window_start_ms: i64,
    /// Window end (epoch ms).
    pub window_end_ms: i64,
    /// Ensemble score.
    pub score: f64,
    /// Threshold it was compared with.
    pub threshold: f64,
    /// The driving KPI's observed value, if the verdict explained it.
    pub observed: Option<f64>,
    /// Its expected value.
    pub expected: Option<f64>,
    /// Lower end of its normal range.
    pub low: Option<f64>,
    /// Upper end of its normal range.
    pub high: Option<f64>,
    /// The explanation's sentence for the KPI (`latency_p95_ms 5400, expected 1200 (800-1900)`).
    pub sentence: Option<String>,
    /// The verdict that carried it.
    pub anomaly_id: String,
}

/// One alert: an incident of one KPI of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// The KPI that drove the opening window.
    pub kpi: String,
    /// Fixed at opening.
    pub severity: Severity,
    /// Start of the first flagged window (epoch ms): the incident's start.
    pub starts_at_ms: i64,
    /// End of the latest flagged window (epoch ms).
    pub last_flagged_end_ms: i64,
    /// Set when resolved: the end of the last flagged window.
    pub ends_at_ms: Option<i64>,
    /// Flagged windows grouped into the alert.
    pub flagged_windows: u32,
    /// The latest flagged window.
    pub latest: Evidence,
}

impl Alert {
    /// Stable id of the incident: tenant, agent, KPI and start. The same after a restart and
    /// a replay; receivers de-duplicate by it (PagerDuty `dedup_key`, webhook `alert_id`).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.tenant.as_bytes(), self.agent.as_bytes(), self.kpi.as_bytes()] {
            h.update(part);
            h.update([0x1f]);
        }
        h.update(self.starts_at_ms.to_be_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// Whether it was resolved.
    pub fn is_resolved(&self) -> bool {
        self.ends_at_ms.is_some()
    }
}

/// What a verdict did to the alerts.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new incident (notify every receiver).
    Opened(Alert),
    /// Another flagged window of an open incident (Alertmanager gets the fresher annotations).
    Updated(Alert),
    /// The quiet period passed (notify every receiver).
    Resolved(Alert),
}

impl Change {
    /// The alert after the change.
    pub fn alert(&self) -> &Alert {
        match self {
            Change::Opened(a) | Change::Updated(a) | Change::Resolved(a) => a,
        }
    }
}

/// `tenant \u{1f} agent \u{1f} kpi` (a string: the checkpoint is JSON).
type Key = String;

fn key(tenant: &str, agent: &str, kpi: &str) -> Key {
    format!("{tenant}\u{1f}{agent}\u{1f}{kpi}")
}

/// The key of a series (tenant, agent) in [`AlertBook`]'s series times.
fn series_key(tenant: &str, agent: &str) -> Key {
    key(tenant, agent, "")
}

/// The open alerts of one input partition and its event time; serialized into the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBook {
    open: BTreeMap<Key, Alert>,
    /// Latest window end seen on the partition (epoch ms).
    event_time_ms: i64,
    /// Latest window end seen of each series with an open alert (epoch ms).
    #[serde(default)]
    series_time_ms: BTreeMap<Key, i64>,
}

/// The KPIs a verdict names: its explanation, else its top features.
fn named_kpis(v: &Anomaly) -> Vec<&str> {
    if v.explanation.is_empty() {
        v.top_features.iter().map(|f| f.feature.as_str()).collect()
    } else {
        v.explanation.iter().map(|e| e.kpi.as_str()).collect()
    }
}

fn evidence(v: &Anomaly, kpi: &str) -> Evidence {
    let e = v.explanation.iter().find(|e| e.kpi == kpi);
    Evidence {
        window_start_ms: v.window_start,
        window_end_ms: v.window_end,
        score: v.ensemble_score,
        threshold: v.threshold,
        observed: e.map(|e| e.observed),
        expected: e.map(|e| e.expected),
        low: e.map(|e| e.low),
        high: e.map(|e| e.high),
        sentence: e.map(|e| e.sentence()),
        anomaly_id: v.anomaly_id.clone(),
    }
}

impl AlertBook {
    /// Reads a checkpointed book.
    pub fn from_bytes(bytes: &[u8]) -> serde_json::Result<AlertBook> {
        serde_json::from_slice(bytes)
    }

    /// The checkpoint form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("alert book serializes")
    }

    /// Open alerts, in key order.
    pub fn open(&self) -> impl Iterator<Item = &Alert> {
        self.open.values()
    }

    /// How many alerts are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Latest window end seen (epoch ms).
    pub fn event_time_ms(&self) -> i64 {
        self.event_time_ms
    }

    /// Applies one verdict; returns what changed, openings and updates first, then
    /// resolutions in key order.
    pub fn observe(&mut self, config: &GroupingConfig, v: &Anomaly) -> Vec<Change> {
        let mut changes = Vec::new();
        self.event_time_ms = self.event_time_ms.max(v.window_end);
        if v.is_anomaly {
            let kpis = named_kpis(v);
            let series_open: Vec<Key> = self
                .open
                .iter()
                .filter(|(_, a)| {
                    a.tenant == v.tenant_id && a.agent == v.agent_id && kpis.contains(&a.kpi.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            if series_open.is_empty() {
                let kpi = kpis.first().copied().unwrap_or(UNEXPLAINED_KPI).to_string();
                let critical = v.threshold > 0.0 && v.ensemble_score >= config.critical_ratio * v.threshold;
                let alert = Alert {
                    tenant: v.tenant_id.clone(),
                    agent: v.agent_id.clone(),
                    severity: if critical {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    starts_at_ms: v.window_start,
                    last_flagged_end_ms: v.window_end,
                    ends_at_ms: None,
                    flagged_windows: 1,
                    latest: evidence(v, &kpi),
                    kpi,
                };
                let key = key(&alert.tenant, &alert.agent, &alert.kpi);
                changes.push(Change::Opened(alert.clone()));
                self.open.insert(key, alert);
            } else {
                for key in series_open {
                    let alert = self.open.get_mut(&key).expect("open alert");
                    let kpi = alert.kpi.clone();
                    // A re-emitted (revised) window refreshes the evidence, counts once.
                    if v.window_end > alert.last_flagged_end_ms {
                        alert.flagged_windows += 1;
                        alert.last_flagged_end_ms = v.window_end;
                    }
                    if v.window_end >= alert.latest.window_end_ms {
                        alert.latest = evidence(v, &kpi);
                    }
                    changes.push(Change::Updated(alert.clone()));
                }
            }
        }
        if self
            .open
            .values()
            .any(|a| a.tenant == v.tenant_id && a.agent == v.agent_id)
        {
            let seen = self
                .series_time_ms
                .entry(series_key(&v.tenant_id, &v.agent_id))
                .or_default();
            *seen = (*seen).max(v.window_end);
        }
        let quiet = config.quiet_ms;
        let now = self.event_time_ms;
        let due: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, a)| {
                let quiet_end = a.last_flagged_end_ms.saturating_add(quiet);
                let series_time = self.series_time_ms.get(&series_key(&a.tenant, &a.agent)).copied();
                series_time.is_some_and(|t| quiet_end <= t) || quiet_end < now
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !due.is_empty() {
            for key in due {
                let mut alert = self.open.remove(&key).expect("open alert");
                alert.ends_at_ms = Some(alert.last_flagged_end_ms);
                changes.push(Change::Resolved(alert));
            }
            // Series times are kept only while their series has an open alert.
            let open = &self.open;
            self.series_time_ms
                .retain(|s, _| open.values().any(|a| series_key(&a.tenant, &a.agent) == *s));
        }
        changes
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use schemas::KpiExplanation;

    pub(crate) const W: i64 = 900_000;

    pub(crate) fn verdict(tenant: &str, agent: &str, window: i64, flagged: bool, kpi: &str) -> Anomaly {
        Anomaly {
            anomaly_id: format!("{tenant}-{agent}-{window}"),
            window_id: format!("w-{window}"),
            tenant_id: tenant.into(),
            agent_id: agent.into(),
            window_start: window * W,
            window_end: (window + 1) * W,
            lstm_score: 0.0,
            transformer_score: 0.0,
            lstm_normalized: 0.0,
            transformer_normalized: 0.0,
            ensemble_score: if flagged { 3.0 } else { 0.2 },
            threshold: 1.0,
            is_anomaly: flagged,
            top_features: vec![],
            model_version: "m".into(),
            scored_at: 0,
            statistical_score: None,
            explanation: vec![KpiExplanation {
                kpi: kpi.into(),
                observed: 5400.0,
                expected: 1200.0,
                low: 800.0,
                high: 1900.0,
                evidence: 6.0,
            }],
        }
    }

    pub(crate) fn config() -> GroupingConfig {
        GroupingConfig {
            quiet_ms: 4 * W,
            critical_ratio: 2.0,
        }
    }

    fn kinds(changes: &[Change]) -> Vec<&'static str> {
        changes
            .iter()
            .map(|c| match c {
                Change::Opened(_) => "opened",
                Change::Updated(_) => "updated",
                Change::Resolved(_) => "resolved",
            })
            .collect()
    }

    #[test]
    fn an_incident_opens_once_survives_a_clean_window_and_resolves_after_the_quiet_period() {
        let c = config();
        let mut book = AlertBook::default();
        let mut all = Vec::new();
        // clean, flagged x3, one clean, flagged, then clean until resolved
        let pattern = [
            false, true, true, true, false, true, false, false, false, false, false,
        ];
        for (i, flagged) in pattern.iter().enumerate() {
            let changes = book.observe(
                &c,
                &verdict("acme", "a1", 100 + i as i64, *flagged, "latency_p95_ms"),
            );
            all.extend(changes);
        }
        assert_eq!(
            kinds(&all),
            ["opened", "updated", "updated", "updated", "resolved"]
        );
        let Change::Resolved(alert) = all.last().unwrap() else {
            unreachable!()
        };
        assert_eq!(alert.starts_at_ms, 101 * W);
        assert_eq!(alert.ends_at_ms, Some(106 * W));
        assert_eq!(alert.flagged_windows, 4);
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.fingerprint(), all[0].alert().fingerprint());
        assert_eq!(book.open_count(), 0);
    }

    #[test]
    fn other_series_completing_the_quiet_period_first_do_not_resolve_an_alert() {
        // a1 is flagged at window 1, clean for 3 windows, flagged again at window 5; window
        // 5's verdict of a2 comes first and would complete a1's quiet period by partition time.
        let c = config();
        let mut book = AlertBook::default();
        let mut all = Vec::new();
        for w in 1..=5 {
            all.extend(book.observe(&c, &verdict("acme", "a2", w, false, "tasks")));
            all.extend(book.observe(&c, &verdict("acme", "a1", w, w == 1 || w == 5, "success_rate")));
        }
        assert_eq!(kinds(&all), ["opened", "updated"], "one alert");
        // a1's own quiet period resolves it, whichever series' verdict comes first.
        for w in 6..=9 {
            all.extend(book.observe(&c, &verdict("acme", "a1", w, false, "success_rate")));
        }
        assert_eq!(kinds(&all), ["opened", "updated", "resolved"]);
        // A series that goes silent resolves by partition time past its quiet period.
        all.extend(book.observe(&c, &verdict("acme", "a3", 20, true, "tasks")));
        all.extend(book.observe(&c, &verdict("acme", "a2", 24, false, "tasks")));
        assert_eq!(kinds(&all[3..]), ["opened"], "21 + 4 windows is not past 25");
        all.extend(book.observe(&c, &verdict("acme", "a2", 25, false, "tasks")));
        assert_eq!(kinds(&all[3..]), ["opened", "resolved"]);
        assert_eq!(book.open_count(), 0);
    }

    #[test]
    fn control_series_and_other_kpis_do_not_share_alerts() {
        let c = config();
        let mut book = AlertBook::default();
        assert!(book
            .observe(&c, &verdict("acme", "ctl", 1, false, "tasks"))
            .is_empty());
        let a = book.observe(&c, &verdict("acme", "a1", 1, true, "success_rate"));
        let b = book.observe(&c, &verdict("acme", "a2", 1, true, "success_rate"));
        let d = book.observe(&c, &verdict("beta", "a1", 1, true, "success_rate"));
        assert_eq!(kinds(&[a, b, d].concat()), ["opened", "opened", "opened"]);
        // the same series, a KPI its open alert does not cover: a second alert
        let e = book.observe(&c, &verdict("acme", "a1", 2, true, "cost_per_task_micros"));
        assert_eq!(kinds(&e), ["opened"]);
        assert_eq!(book.open_count(), 4);
    }

    #[test]
    fn the_book_round_trips_through_its_checkpoint_form() {
        let c = config();
        let mut book = AlertBook::default();
        book.observe(&c, &verdict("acme", "a1", 1, true, "success_rate"));
        let back = AlertBook::from_bytes(&book.to_bytes()).unwrap();
        assert_eq!(back, book);
    }

    proptest! {
        /// Whatever the flags: at most one alert of a series is open at a time, every resolved
        /// alert was opened first (same fingerprint), none resolves before the quiet period
        /// passed, and splitting the input at any point through a checkpoint changes nothing.
        #[test]
        fn alerts_pair_up_and_checkpoints_change_nothing(
            flags in proptest::collection::vec(any::<bool>(), 1..80),
            cut in 0usize..80,
        ) {
            let c = config();
            let verdicts: Vec<Anomaly> = flags
                .iter()
                .enumerate()
                .map(|(i, f)| verdict("t", "a", i as i64, *f, "tasks"))
                .collect();
            let mut book = AlertBook::default();
            let straight: Vec<Change> = verdicts.iter().flat_map(|v| book.observe(&c, v)).collect();
            let cut = cut.min(verdicts.len());
            let mut first = AlertBook::default();
            let mut resumed: Vec<Change> = verdicts[..cut].iter().flat_map(|v| first.observe(&c, v)).collect();
            let mut second = AlertBook::from_bytes(&first.to_bytes()).unwrap();
            resumed.extend(verdicts[cut..].iter().flat_map(|v| second.observe(&c, v)));
            prop_assert_eq!(&straight, &resumed);
            let mut open: Option<String> = None;
            for change in &straight {
                match change {
                    Change::Opened(a) => {
                        prop_assert!(open.is_none());
                        open = Some(a.fingerprint());
                    }
                    Change::Updated(a) => prop_assert_eq!(open.clone(), Some(a.fingerprint())),
                    Change::Resolved(a) => {
                        prop_assert_eq!(open.take(), Some(a.fingerprint()));
                        prop_assert!(a.ends_at_ms.unwrap() + c.quiet_ms <= book.event_time_ms());
                    }
                }
            }
            let flagged = flags.iter().filter(|f| **f).count() as u32;
            let grouped: u32 = straight
                .iter()
                .filter_map(|c| match c { Change::Resolved(a) => Some(a.flagged_windows), _ => None })
                .sum::<u32>()
                + book.open().map(|a| a.flagged_windows).sum::<u32>();
            prop_assert_eq!(grouped, flagged);
        }
    }
}
