//! Alertmanager API v2 (`POST /api/v2/alerts`): the body of an alert.
//!
//! Labels are the alert's identity in Alertmanager (`alertname`, `tenant`, `agent`, `kpi`,
//! `severity`, all fixed while the incident lasts), so posting the same alert again, after a
//! restart or at the re-send interval, is merged by Alertmanager, never a second alert.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::grouping::Alert;

/// `alertname` of every alert from verdicts.
pub const ALERT_NAME: &str = "AgentKpiAnomaly";

/// What the payloads need besides the alert.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// Base URL of the dashboard API (empty: no link).
    pub link_base_url: String,
    /// Re-send interval (ms); a firing alert's `endsAt` lies four of them ahead.
    pub resend_interval_ms: i64,
}

/// One `postableAlert`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert {
    /// Identity.
    pub labels: BTreeMap<String, String>,
    /// Summary, score, window, link, incident id.
    pub annotations: BTreeMap<String, String>,
    /// The incident's start (event time), RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// Firing: the wall clock plus four re-send intervals; resolved: the end of the last
    /// flagged window.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// The link to the incident's verdicts.
    #[serde(rename = "generatorURL", skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
}

/// RFC 3339 of epoch milliseconds (UTC).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formats")
}

/// The dashboard API's anomalies of the incident (its flagged windows), or empty.
pub fn link(p: &Presentation, alert: &Alert) -> String {
    if p.link_base_url.is_empty() {
        return String::new();
    }
    let to = alert.ends_at_ms.unwrap_or(alert.last_flagged_end_ms);
    format!(
        "{}/api/v1/tenants/{}/anomalies?from={}&to={}&only_flagged=true",
        p.link_base_url.trim_end_matches('/'),
        alert.tenant,
        rfc3339(alert.starts_at_ms),
        rfc3339(to),
    )
}

/// The one-line summary: who, the KPI's observed value against its normal range, score, window.
pub fn summary(alert: &Alert) -> String {
    let e = &alert.latest;
    let what = e
        .sentence
        .clone()
        .unwrap_or_else(|| format!("{} anomalous", alert.kpi));
    format!(
        "{}/{}: {what}; score {:.2} (threshold {:.2}); window {} to {}",
        alert.tenant,
        alert.agent,
        e.score,
        e.threshold,
        rfc3339(e.window_start_ms),
        rfc3339(e.window_end_ms)
    )
}

/// The identity labels.
pub fn labels(alert: &Alert) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_string(), ALERT_NAME.to_string()),
        ("tenant".to_string(), alert.tenant.clone()),
        ("agent".to_string(), alert.agent.clone()),
        ("kpi".to_string(), alert.kpi.clone()),
        ("severity".to_string(), alert.severity.as_str().to_string()),
    ])
}

/// The alert as Alertmanager takes it, `now_ms` being the wall clock.
pub fn postable(p: &Presentation, alert: &Alert, now_ms: i64) -> PostableAlert {
    let e = &alert.latest;
    let mut annotations = BTreeMap::from([
        ("summary".to_string(), summary(alert)),
        ("score".to_string(), format!("{:.4}", e.score)),
        ("threshold".to_string(), format!("{:.4}", e.threshold)),
        ("window_start".to_string(), rfc3339(e.window_start_ms)),
        ("window_end".to_string(), rfc3339(e.window_end_ms)),
        ("flagged_windows".to_string(), alert.flagged_windows.to_string()),
        ("incident_id".to_string(), alert.fingerprint()),
    ]);
    for (name, value) in [
        ("observed", e.observed),
        ("expected", e.expected),
        ("normal_low", e.low),
        ("normal_high", e.high),
    ] {
        if let Some(v) = value {
            annotations.insert(name.to_string(), format!("{v}"));
        }
    }
    let generator_url = link(p, alert);
    if !generator_url.is_empty() {
        annotations.insert("dashboard".to_string(), generator_url.clone());
    }
    let ends_at_ms = alert
        .ends_at_ms
        .unwrap_or_else(|| now_ms.max(alert.starts_at_ms) + 4 * p.resend_interval_ms);
    PostableAlert {
        labels: labels(alert),
        annotations,
        starts_at: rfc3339(alert.starts_at_ms),
        ends_at: rfc3339(ends_at_ms),
        generator_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouping::tests::{config, verdict, W};
    use crate::grouping::{AlertBook, Change};

    #[test]
    fn a_firing_alert_carries_identity_summary_and_a_future_end() {
        let mut book = AlertBook::default();
        let changes = book.observe(&config(), &verdict("acme", "a1", 100, true, "latency_p95_ms"));
        let p = Presentation {
            link_base_url: "http://api:8090/".into(),
            resend_interval_ms: 60_000,
        };
        let now = 1_800_000_000_000;
        let body = serde_json::to_value(postable(&p, changes[0].alert(), now)).unwrap();
        assert_eq!(body["labels"]["alertname"], ALERT_NAME);
        assert_eq!(body["labels"]["tenant"], "acme");
        assert_eq!(body["labels"]["agent"], "a1");
        assert_eq!(body["labels"]["kpi"], "latency_p95_ms");
        assert_eq!(body["labels"]["severity"], "critical");
        let summary = body["annotations"]["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("acme/a1: latency_p95_ms 5400, expected 1200 (800-1900); score 3.00 (threshold 1.00); window 1970-01-02T01:00:00Z"),
            "{summary}"
        );
        assert_eq!(body["startsAt"], rfc3339(100 * W));
        assert_eq!(body["endsAt"], rfc3339(now + 240_000));
        assert_eq!(
            body["generatorURL"],
            "http://api:8090/api/v1/tenants/acme/anomalies?from=1970-01-02T01:00:00Z&to=1970-01-02T01:15:00Z&only_flagged=true"
        );
        assert_eq!(body["annotations"]["observed"], "5400");
    }

    #[test]
    fn a_resolved_alert_ends_at_its_last_flagged_window() {
        let c = config();
        let mut book = AlertBook::default();
        book.observe(&c, &verdict("acme", "a1", 100, true, "tasks"));
        let changes = book.observe(&c, &verdict("acme", "a1", 110, false, "tasks"));
        let Change::Resolved(alert) = &changes[0] else {
            panic!("{changes:?}")
        };
        let p = Presentation {
            link_base_url: String::new(),
            resend_interval_ms: 60_000,
        };
        let body = serde_json::to_value(postable(&p, alert, 1_800_000_000_000)).unwrap();
        assert_eq!(body["endsAt"], rfc3339(101 * W));
        assert!(body.get("generatorURL").is_none());
    }
}
