//! `[alerter]`: the service that turns anomaly verdicts into alerts.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::{Assignment, Error, Result, Secret};

/// Shortest accepted webhook signing secret (128 bits).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// `[alerter]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerter {
    /// Kafka consumer group.
    pub consumer_group: String,
    /// `group`, `all` or a partition list such as `0,2` (as `aggregator.assignment`).
    pub assignment: Assignment,
    /// Address of the metrics and health endpoints.
    pub metrics_listen: SocketAddr,
    /// Event time (window ends) without a flagged window after which an open alert resolves;
    /// a clean window inside an incident shorter than this does not resolve it.
    pub quiet_secs: u64,
    /// How often open alerts are posted to Alertmanager again (wall clock); a firing alert's
    /// `endsAt` lies four intervals ahead, so Alertmanager keeps it while the alerter is down
    /// for less than that.
    pub resend_interval_secs: u64,
    /// How often alert state and input offsets are checkpointed together (after the
    /// notifications they caused were delivered).
    pub checkpoint_interval_ms: u64,
    /// How many records before its checkpoint a restored partition starts fetching.
    pub resume_rewind_records: u32,
    /// Base URL of the dashboard API, for the link in every alert (empty: no link).
    pub link_base_url: String,
    /// An alert is `critical` when its opening window's ensemble score is at least this many
    /// times the threshold, else `warning` (fixed for the alert's life: labels are its identity).
    pub critical_ratio: f64,
    /// Timeout of one HTTP request to a receiver.
    pub request_timeout_ms: u64,
    /// First retry delay of a failed delivery (doubles, with jitter).
    pub retry_initial_ms: u64,
    /// Longest retry delay; a receiver that is down is retried at this pace until it answers.
    pub retry_max_ms: u64,
    /// Alertmanager API v2 endpoints (`http://host:9093`); every one gets every alert (an HA
    /// pair de-duplicates). Empty: no Alertmanager.
    pub alertmanager_urls: Vec<String>,
    /// Generic webhooks (JSON, `X-Signature` HMAC-SHA256), notified when alerts open and
    /// resolve.
    pub webhooks: Vec<Webhook>,
    /// PagerDuty Events API v2.
    pub pagerduty: PagerDuty,
}

/// `[[alerter.webhooks]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Name in logs and metrics (unique).
    pub name: String,
    /// `http(s)://` URL receiving `POST`s.
    pub url: String,
    /// Key of the HMAC-SHA256 signature (at least 16 bytes).
    pub secret: Secret,
}

/// `[alerter.pagerduty]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    /// Integration (routing) key; empty: PagerDuty is off. Set
    /// `AGENTOPS__ALERTER__PAGERDUTY__ROUTING_KEY`.
    pub routing_key: Secret,
    /// Events API v2 endpoint.
    pub url: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        message: message.into(),
    }
}

/// Whether `url` is `http(s)://` followed by a host.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !host.starts_with(':') && !r.chars().any(char::is_whitespace)
    })
}

impl Alerter {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.consumer_group.is_empty() {
            return Err(invalid("alerter.consumer_group", "must not be empty"));
        }
        if self.quiet_secs == 0 {
            return Err(invalid("alerter.quiet_secs", "must be positive"));
        }
        if self.resend_interval_secs == 0 {
            return Err(invalid("alerter.resend_interval_secs", "must be positive"));
        }
        if self.checkpoint_interval_ms == 0 {
            return Err(invalid("alerter.checkpoint_interval_ms", "must be positive"));
        }
        if !(self.critical_ratio.is_finite() && self.critical_ratio >= 1.0) {
            return Err(invalid("alerter.critical_ratio", "must be a number >= 1"));
        }
        if self.request_timeout_ms == 0 {
            return Err(invalid("alerter.request_timeout_ms", "must be positive"));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(invalid(
                "alerter.retry_max_ms",
                "retry_initial_ms must be positive and at most retry_max_ms",
            ));
        }
        if !self.link_base_url.is_empty() && !is_http_url(&self.link_base_url) {
            return Err(invalid(
                "alerter.link_base_url",
                format!("`{}` is not an http(s) URL", self.link_base_url),
            ));
        }
        for url in &self.alertmanager_urls {
            if !is_http_url(url) {
                return Err(invalid(
                    "alerter.alertmanager_urls",
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            if hook.name.trim().is_empty() {
                return Err(invalid(
                    "alerter.webhooks.name",
                    format!("webhook {i} has no name"),
                ));
            }
            if self.webhooks[..i].iter().any(|h| h.name == hook.name) {
                return Err(invalid(
                    "alerter.webhooks.name",
                    format!("`{}` is used twice", hook.name),
                ));
            }
            if !is_http_url(&hook.url) {
                return Err(invalid(
                    "alerter.webhooks.url",
                    format!("webhook `{}`: `{}` is not an http(s) URL", hook.name, hook.url),
                ));
            }
            if hook.secret.expose().len() < MIN_WEBHOOK_SECRET_BYTES {
                return Err(invalid(
                    "alerter.webhooks.secret",
                    format!(
                        "webhook `{}`: must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes (got {})",
                        hook.name,
                        hook.secret.expose().len()
                    ),
                ));
            }
        }
        if !self.pagerduty.routing_key.is_empty() && !is_http_url(&self.pagerduty.url) {
            return Err(invalid(
                "alerter.pagerduty.url",
                format!("`{}` is not an http(s) URL", self.pagerduty.url),
            ));
        }
        let key = self.pagerduty.routing_key.expose();
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "alerter.pagerduty.routing_key",
                "must not contain whitespace",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_http_url;
    use crate::{Assignment, Error, Settings};

    fn load(file: &str) -> Result<Settings, Error> {
        Settings::load(Some(("test.toml", file)), &Default::default())
    }

    #[test]
    fn defaults_load_with_no_receivers() {
        let s = load("").unwrap();
        assert!(s.alerter.alertmanager_urls.is_empty() && s.alerter.webhooks.is_empty());
        assert!(s.alerter.pagerduty.routing_key.is_empty());
    }

    #[test]
    fn webhooks_load_from_a_file_and_bad_ones_name_the_key() {
        let good = "[[alerter.webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example/x\"\nsecret = \"0123456789abcdef\"\n";
        let s = load(good).unwrap();
        assert_eq!(s.alerter.webhooks[0].name, "ops");
        assert_eq!(format!("{:?}", s.alerter.webhooks[0].secret), "\"***\"");
        let short = good.replace("0123456789abcdef", "short");
        let err = load(&short).unwrap_err().to_string();
        assert!(err.contains("alerter.webhooks.secret"), "{err}");
        let bad_url = good.replace("https://hooks.example/x", "hooks.example/x");
        let err = load(&bad_url).unwrap_err().to_string();
        assert!(err.contains("alerter.webhooks.url"), "{err}");
        let twice = format!("{good}{good}");
        assert!(load(&twice).unwrap_err().to_string().contains("used twice"));
        let err = load("[alerter]\nalertmanager_urls = [\"localhost:9093\"]\n").unwrap_err();
        assert!(err.to_string().contains("alerter.alertmanager_urls"), "{err}");
        let err = load("[alerter]\nassignment = \"some\"\n").unwrap_err();
        assert!(err.to_string().contains("alerter.assignment"), "{err}");
        let err = load("[alerter]\nassignment = \"0,1,0\"\n").unwrap_err();
        assert!(err.to_string().contains("alerter.assignment"), "{err}");
        let s = load("[alerter]\nassignment = \"0, 2\"\n").unwrap();
        assert_eq!(s.alerter.assignment, Assignment::Partitions(vec![0, 2]));
    }

    #[test]
    fn http_urls_need_a_scheme_and_a_host() {
        assert!(is_http_url("http://127.0.0.1:9093"));
        assert!(is_http_url("https://events.pagerduty.com/v2/enqueue"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("http://:80/x"));
        assert!(!is_http_url("http://a b"));
        assert!(!is_http_url("example.com"));
    }
}
