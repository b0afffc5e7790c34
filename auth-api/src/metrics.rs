//! Prometheus metrics of the service (`GET /metrics`). Labels are low-cardinality: route
//! templates (never raw paths with tenant ids), statuses, outcome and reason names.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

/// The metrics; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route template and status.
    pub requests: IntCounterVec,
    /// Request latency by route template.
    pub latency: HistogramVec,
    /// Login attempts by outcome (`success`, `invalid_credentials`, `rate_limited`,
    /// `overloaded`, `error`).
    pub logins: IntCounterVec,
    /// Registrations by outcome (`created`, `invalid`, `taken`, `overloaded`, `error`).
    pub registrations: IntCounterVec,
    /// Refused bearer tokens by reason.
    pub token_rejections: IntCounterVec,
    /// Duration of one bcrypt hash or verification.
    pub bcrypt_seconds: Histogram,
    /// bcrypt jobs refused because the queue was full.
    pub bcrypt_rejected: IntCounter,
    /// bcrypt jobs waiting for a slot (sampled at scrape time).
    pub bcrypt_queued: IntGauge,
    /// bcrypt jobs running (sampled at scrape time).
    pub bcrypt_running: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics in their own registry.
    pub fn new() -> Metrics {
        let r = ops::metrics::Registrar::new();
        Metrics {
            requests: r.counter_vec(
                "auth_api_requests_total",
                "Requests by route and status",
                &["route", "status"],
            ),
            logins: r.counter_vec("auth_api_logins_total", "Login attempts by outcome", &["outcome"]),
            registrations: r.counter_vec(
                "auth_api_registrations_total",
                "Registrations by outcome",
                &["outcome"],
            ),
            token_rejections: r.counter_vec(
                "auth_api_token_rejections_total",
                "Refused bearer tokens by reason",
                &["reason"],
            ),
            latency: r.histogram_vec(
                "auth_api_request_duration_seconds",
                "Request latency",
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0,
                ],
                &["route"],
            ),
            bcrypt_seconds: r.histogram(
                "auth_api_bcrypt_seconds",
                "One bcrypt hash or verification",
                vec![0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0],
            ),
            bcrypt_rejected: r.counter(
                "auth_api_bcrypt_rejected_total",
                "bcrypt jobs refused because the wait queue was full",
            ),
            bcrypt_queued: r.gauge("auth_api_bcrypt_queued", "bcrypt jobs waiting"),
            bcrypt_running: r.gauge("auth_api_bcrypt_running", "bcrypt jobs running"),
            registry: r.registry().clone(),
        }
    }

    /// Counts one request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// The registry every metric is in (served by [`ops::endpoints`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> (Vec<u8>, String) {
        (
            ops::metrics_text(&self.registry),
            prometheus::TEXT_FORMAT.to_string(),
        )
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        411 => "411",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_observed() {
        let m = Metrics::new();
        m.observe_request("GET /api/v1/profile", 200, 0.001);
        m.logins.with_label_values(&["rate_limited"]).inc();
        let (text, content_type) = m.render();
        let text = String::from_utf8(text).unwrap();
        assert!(content_type.starts_with("text/plain"));
        assert!(
            text.contains(r#"auth_api_requests_total{route="GET /api/v1/profile",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"auth_api_logins_total{outcome="rate_limited"} 1"#));
    }
}
