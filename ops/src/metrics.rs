//! Declaring a service's Prometheus metrics: [`Registrar`] creates each metric and registers it
//! in one call, so that a service's `Metrics::default()` is a list of one-liners; a consuming
//! service's lag and readiness flag are one [`ConsumerMetrics`] ([`Registrar::consumer`]).
//!
//! Every method panics when the metric cannot be created (an invalid name or label) or
//! registered (a name registered twice in the same registry); the message names the metric
//! (`metric "x_total": Duplicate metrics collector registration attempted`). These are
//! programming errors of a fixed list, found by the service's first test, not run-time failures.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::BindError;

/// Creates metrics and registers them in one registry (its own, or one shared with another
/// part of the service).
#[derive(Clone, Default)]
pub struct Registrar {
    registry: Registry,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registrar")
    }
}

/// `count` buckets from `start`, each `factor` times the previous one.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).expect("buckets")
}

impl Registrar {
    /// A registrar with a fresh registry of its own.
    pub fn new() -> Registrar {
        Registrar::default()
    }

    /// A registrar adding to `registry` (a handle: metrics registered here are in `registry`).
    pub fn on(registry: &Registry) -> Registrar {
        Registrar {
            registry: registry.clone(),
        }
    }

    /// The registry every metric goes to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric registered (see [`crate::metrics_text`]).
    pub fn text(&self) -> Vec<u8> {
        crate::metrics_text(&self.registry)
    }

    /// An integer counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(name, IntCounter::new(name, help))
    }

    /// An integer counter by `labels`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// An integer gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(name, IntGauge::new(name, help))
    }

    /// An integer gauge by `labels`.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// The consumer lag of a consuming service (an integer gauge `lag_name` by `partition`:
    /// records between the partition's high watermark and the next offset to consume) and its
    /// readiness flag, not ready yet; with this registrar's registry.
    pub fn consumer(&self, lag_name: &str, lag_help: &str) -> ConsumerMetrics {
        ConsumerMetrics {
            lag: self.gauge_vec(lag_name, lag_help, &["partition"]),
            ready: Arc::new(AtomicBool::new(false)),
            registry: self.registry.clone(),
        }
    }

    /// A histogram with these bucket upper bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(
            name,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
        )
    }

    /// A histogram by `labels`, with these bucket upper bounds.
    pub fn histogram_vec(&self, name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
        self.register(
            name,
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
        )
    }

    fn register<C: Collector + Clone + 'static>(&self, name: &str, made: prometheus::Result<C>) -> C {
        let metric = made.unwrap_or_else(|e| panic!("metric {name:?}: {e}"));
        self.registry
            .register(Box::new(metric.clone()))
            .unwrap_or_else(|e| panic!("metric {name:?}: {e}"));
        metric
    }
}

/// What a consuming service (aggregator, scorer, alerter) reports of its consumer, with the
/// registry that holds all of the service's metrics: what its `/metrics` and `/readyz` serve.
#[derive(Clone)]
pub struct ConsumerMetrics {
    registry: Registry,
    /// Records between the partition's high watermark and the next offset to consume, by
    /// `partition`.
    pub lag: IntGaugeVec,
    /// The service is ready (`/readyz`'s probe "ready"); set by the service.
    pub ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConsumerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerMetrics")
    }
}

impl ConsumerMetrics {
    /// The registry every metric of the service is in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the lag of each `(partition, records)` given; other partitions keep theirs.
    pub fn set_lags(&self, lags: impl IntoIterator<Item = (String, i64)>) {
        for (partition, lag) in lags {
            self.lag.with_label_values(&[&partition]).set(lag);
        }
    }

    /// Serves `/metrics` (the registry) and `/readyz` (the flag) on `listen` (see
    /// [`crate::serve_on`]; `key` names the setting in the error).
    pub fn serve_on(
        &self,
        runtime: &tokio::runtime::Handle,
        listen: SocketAddr,
        key: &str,
    ) -> Result<(), BindError> {
        crate::serve_on(runtime, listen, key, self.registry.clone(), self.ready.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_in_the_text_exposition() {
        let r = Registrar::new();
        let c = r.counter("things_total", "Things");
        let v = r.counter_vec("things_by_kind_total", "Things by kind", &["kind"]);
        let consumer = r.consumer("x_consumer_lag", "Lag");
        let h = r.histogram("x_seconds", "Time", exponential_buckets(0.001, 2.0, 4));
        c.inc_by(3);
        v.with_label_values(&["a"]).inc();
        consumer.set_lags([("2".to_string(), 7)]);
        h.observe(0.0015);
        let text = String::from_utf8(r.text()).unwrap();
        assert!(text.contains("# HELP things_total Things\n"), "{text}");
        assert!(text.contains("things_total 3\n"), "{text}");
        assert!(text.contains("things_by_kind_total{kind=\"a\"} 1\n"), "{text}");
        assert!(text.contains("x_consumer_lag{partition=\"2\"} 7\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.002\"} 1\n"), "{text}");
    }

    #[tokio::test]
    async fn consumer_metrics_serve_their_lag_and_readiness() {
        let r = Registrar::new();
        let consumer = r.consumer("x_consumer_lag", "Lag");
        r.counter("x_total", "Things").inc();
        let routes = crate::routes(consumer.registry().clone(), consumer.ready.clone());
        let readyz = || warp::test::request().path("/readyz").reply(&routes);
        assert_eq!(readyz().await.status(), 503);
        consumer.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(readyz().await.status(), 200);
        consumer.set_lags([("0".to_string(), 5), ("3".to_string(), 0)]);
        let text = String::from_utf8(r.text()).unwrap();
        assert!(text.contains("x_consumer_lag{partition=\"0\"} 5\n"), "{text}");
        assert!(text.contains("x_consumer_lag{partition=\"3\"} 0\n"), "{text}");
        assert!(text.contains("x_total 1\n"), "{text}");
    }

    #[test]
    fn a_registrar_on_a_registry_adds_to_it() {
        let registry = Registry::new();
        Registrar::on(&registry).gauge("x_open", "Open").set(2);
        assert!(String::from_utf8(crate::metrics_text(&registry))
            .unwrap()
            .contains("x_open 2"));
    }

    #[test]
    #[should_panic(expected = "metric \"things_total\": Duplicate metrics collector registration")]
    fn a_name_registered_twice_panics_naming_the_metric() {
        let r = Registrar::new();
        r.counter("things_total", "Things");
        r.counter("things_total", "Other things");
    }

    #[test]
    #[should_panic(expected = "metric \"bad name\"")]
    fn an_invalid_name_panics_naming_the_metric() {
        Registrar::new().counter("bad name", "Bad");
    }
}
