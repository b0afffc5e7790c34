//! The gateway's counters and latency histogram (the OTLP route adds its span counters to the
//! same registry).

use std::time::Instant;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, Registry};
use warp::http::StatusCode;

pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) accepted: IntCounter,
    pub(crate) rejected: IntCounterVec,
    pub(crate) failed: IntCounterVec,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let r = ops::metrics::Registrar::new();
        Metrics {
            accepted: r.counter(
                "ingest_events_accepted_total",
                "Events acknowledged by the broker",
            ),
            rejected: r.counter_vec(
                "ingest_events_rejected_total",
                "Events rejected, by reason",
                &["reason"],
            ),
            failed: r.counter_vec(
                "ingest_events_failed_total",
                "Valid events not delivered, by cause",
                &["cause"],
            ),
            requests: r.counter_vec("ingest_requests_total", "Requests by status", &["status"]),
            latency: r.histogram_vec(
                "ingest_request_duration_seconds",
                "Request latency",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
                &["route"],
            ),
            registry: r.registry().clone(),
        }
    }

    /// Counts a request by status and observes its latency under `route`.
    pub(crate) fn record_request(&self, route: &str, status: StatusCode, started: Instant) {
        self.requests.with_label_values(&[status.as_str()]).inc();
        self.latency
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts one publishing outcome: accepted, or failed by cause.
    pub(crate) fn record_outcome(&self, outcome: &Result<(), super::SinkError>) {
        match outcome {
            Ok(()) => self.accepted.inc(),
            Err(e) => self.failed.with_label_values(&[e.reason()]).inc(),
        }
    }
}
