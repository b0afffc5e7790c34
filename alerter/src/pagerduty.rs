//! PagerDuty Events API v2: `trigger` when an alert opens, `resolve` when it resolves, both with
//! the incident's fingerprint as `dedup_key` (a repeated trigger is merged by PagerDuty).

use serde_json::{json, Value};

use crate::alertmanager::{link, rfc3339, summary, Presentation};
use crate::grouping::{Alert, Severity};

/// The event for `alert`'s current state.
pub fn event(routing_key: &str, link_base_url: &str, alert: &Alert) -> Value {
    let dedup_key = alert.fingerprint();
    if alert.is_resolved() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let p = Presentation {
        link_base_url: link_base_url.to_string(),
        resend_interval_ms: 0,
    };
    let e = &alert.latest;
    let mut summary = summary(alert);
    // PagerDuty truncates at 1024 characters; cut on a character boundary.
    if let Some((i, _)) = summary.char_indices().nth(1024) {
        summary.truncate(i);
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary,
            "source": format!("agentops/{}/{}", alert.tenant, alert.agent),
            "severity": match alert.severity { Severity::Critical => "critical", Severity::Warning => "warning" },
            "timestamp": rfc3339(alert.starts_at_ms),
            "component": alert.agent,
            "group": alert.tenant,
            "class": alert.kpi,
            "custom_details": {
                "score": e.score,
                "threshold": e.threshold,
                "observed": e.observed,
                "expected": e.expected,
                "normal_low": e.low,
                "normal_high": e.high,
                "window_start": rfc3339(e.window_start_ms),
                "window_end": rfc3339(e.window_end_ms),
                "flagged_windows": alert.flagged_windows,
            },
        },
    });
    let href = link(&p, alert);
    if !href.is_empty() {
        event["links"] = json!([{ "href": href, "text": "Anomalies of this incident" }]);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouping::tests::{config, verdict};
    use crate::grouping::{AlertBook, Change};

    #[test]
    fn trigger_and_resolve_share_the_dedup_key() {
        let c = config();
        let mut book = AlertBook::default();
        let opened = book.observe(&c, &verdict("acme", "a1", 1, true, "tasks"));
        let resolved = book.observe(&c, &verdict("acme", "a1", 9, false, "tasks"));
        let Change::Resolved(r) = &resolved[0] else {
            panic!()
        };
        let t = event("key", "http://x", opened[0].alert());
        let r = event("key", "http://x", r);
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["class"], "tasks");
        assert!(t["links"][0]["href"]
            .as_str()
            .unwrap()
            .starts_with("http://x/api/v1/tenants/acme/"));
        assert!(r.get("payload").is_none());
    }
}
