//! Generic webhooks: the JSON body of an alert opening or resolving, and its signature.
//!
//! `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A receiver
//! recomputes the HMAC over the timestamp and the raw body ([`verify`]) and refuses a
//! timestamp outside its tolerance (replay). Each body carries `id` (the incident and its
//! status): a delivery repeated after a crash has the same id and is a duplicate to drop.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::BTreeMap;

use crate::alertmanager::{labels, link, rfc3339, summary};
use crate::grouping::Alert;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The body of one webhook notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    /// Format version (`1`).
    pub version: &'static str,
    /// `<alert_id>:<status>`: the same for a repeated delivery.
    pub id: String,
    /// The incident's stable id.
    pub alert_id: String,
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// The alert's identity (as in Alertmanager).
    pub labels: BTreeMap<String, String>,
    /// The one-line summary.
    pub summary: String,
    /// Latest flagged window's ensemble score.
    pub score: f64,
    /// Threshold.
    pub threshold: f64,
    /// Driving KPI's observed value, expected value and normal range, when explained.
    pub observed: Option<f64>,
    /// Expected value.
    pub expected: Option<f64>,
    /// Normal range, low end.
    pub normal_low: Option<f64>,
    /// Normal range, high end.
    pub normal_high: Option<f64>,
    /// Incident start, RFC 3339.
    pub starts_at: String,
    /// End of the last flagged window when resolved.
    pub ends_at: Option<String>,
    /// Flagged windows grouped so far.
    pub flagged_windows: u32,
    /// Link to the incident's verdicts (may be empty).
    pub link: String,
}

/// The notification of `alert` (opened or resolved).
pub fn event(link_base_url: &str, alert: &Alert) -> WebhookEvent {
    let status = if alert.is_resolved() { "resolved" } else { "firing" };
    let p = crate::alertmanager::Presentation {
        link_base_url: link_base_url.to_string(),
        resend_interval_ms: 0,
    };
    let e = &alert.latest;
    WebhookEvent {
        version: "1",
        id: format!("{}:{status}", alert.fingerprint()),
        alert_id: alert.fingerprint(),
        status,
        labels: labels(alert),
        summary: summary(alert),
        score: e.score,
        threshold: e.threshold,
        observed: e.observed,
        expected: e.expected,
        normal_low: e.low,
        normal_high: e.high,
        starts_at: rfc3339(alert.starts_at_ms),
        ends_at: alert.ends_at_ms.map(rfc3339),
        flagged_windows: alert.flagged_windows,
        link: link(&p, alert),
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Signature` value of `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `t=<int>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from the receiver's clock than its tolerance.
    #[error("timestamp {timestamp} outside the tolerance")]
    Stale {
        /// The header's timestamp.
        timestamp: i64,
    },
    /// The HMAC does not match.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks a signature header as a receiver would (constant-time comparison).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => tag = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return Err(SignatureError::Malformed);
    };
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale { timestamp });
    }
    mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouping::tests::{config, verdict};
    use crate::grouping::AlertBook;
    use proptest::prelude::*;

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'Jefe',b'1.x',hashlib.sha256).hexdigest())"
        assert_eq!(
            sign(b"Jefe", 1, b"x"),
            "t=1,v1=2f7ccbd0f043456ad29514b2d24a8aa345ec6673a5db1b44e91c8ac99d1841e3"
        );
    }

    #[test]
    fn a_firing_event_names_the_incident_and_its_status() {
        let mut book = AlertBook::default();
        let changes = book.observe(&config(), &verdict("acme", "a1", 100, true, "success_rate"));
        let e = event("", changes[0].alert());
        assert_eq!(e.status, "firing");
        assert_eq!(e.id, format!("{}:firing", e.alert_id));
        assert_eq!(e.labels["kpi"], "success_rate");
        assert_eq!(e.observed, Some(5400.0));
        assert!(e.ends_at.is_none());
    }

    proptest! {
        #[test]
        fn verify_accepts_its_own_signatures_and_refuses_any_change(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<usize>(),
            t in 0i64..2_000_000_000,
        ) {
            let secret = b"0123456789abcdef";
            let header = sign(secret, t, &body);
            prop_assert_eq!(verify(secret, &header, &body, t + 10, 300), Ok(()));
            prop_assert_eq!(verify(b"another-secret-16", &header, &body, t, 300), Err(SignatureError::Mismatch));
            prop_assert_eq!(verify(secret, &header, &body, t + 301, 300), Err(SignatureError::Stale { timestamp: t }));
            if !body.is_empty() {
                let mut changed = body.clone();
                changed[flip % body.len()] ^= 1;
                prop_assert_eq!(verify(secret, &header, &changed, t, 300), Err(SignatureError::Mismatch));
            }
            let replayed = header.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
            prop_assert_eq!(verify(secret, &replayed, &body, t, 300), Err(SignatureError::Mismatch));
            prop_assert_eq!(verify(secret, "v1=00", &body, t, 300), Err(SignatureError::Malformed));
        }
    }
}
