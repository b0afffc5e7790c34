//! Readiness: the named, async probes a service registers ("broker", "store", or a flag it
//! sets itself once its partitions are assigned); `/readyz` awaits them all at once, each
//! bounded by a timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` waits for one probe before counting it as failed.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

type ProbeFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type Probe = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;

/// A service's readiness probes, in the order they are reported. With no probe, the service is
/// ready.
#[derive(Clone)]
pub struct Readiness {
    probes: Vec<(&'static str, Probe)>,
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("probes", &self.probes.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The service's own flag is its readiness, reported as `ready`.
impl From<Arc<AtomicBool>> for Readiness {
    fn from(flag: Arc<AtomicBool>) -> Self {
        Readiness::new().flag("ready", flag)
    }
}

impl Readiness {
    /// No probes yet, [`DEFAULT_PROBE_TIMEOUT`] per probe.
    pub fn new() -> Readiness {
        Readiness {
            probes: Vec::new(),
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// How long one probe may take before it counts as failed.
    pub fn with_timeout(mut self, timeout: Duration) -> Readiness {
        self.timeout = timeout;
        self
    }

    /// Adds a probe named `name` (e.g. "broker reachable" as `broker`): `probe()` is called
    /// at each check and passes when its future yields `true` within the timeout.
    pub fn probe<F, Fut>(mut self, name: &'static str, probe: F) -> Readiness
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.probes
            .push((name, Arc::new(move || Box::pin(probe()) as ProbeFuture)));
        self
    }

    /// Adds a probe that passes while `flag` is set (the service sets it itself).
    pub fn flag(self, name: &'static str, flag: Arc<AtomicBool>) -> Readiness {
        self.probe(name, move || {
            let ready = flag.load(Ordering::Relaxed);
            async move { ready }
        })
    }

    /// Runs every probe concurrently, each bounded by the timeout.
    pub async fn check(&self) -> Report {
        let timeout = self.timeout;
        let results = futures::future::join_all(self.probes.iter().map(|(name, probe)| {
            let run = probe();
            async move {
                let passed = tokio::time::timeout(timeout, run).await.unwrap_or(false);
                (*name, passed)
            }
        }))
        .await;
        Report { results }
    }
}

/// What one check found: each probe by name, passed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `(name, passed)` in registration order.
    pub results: Vec<(&'static str, bool)>,
}

impl Report {
    /// Whether every probe passed.
    pub fn ready(&self) -> bool {
        self.results.iter().all(|(_, passed)| *passed)
    }

    /// The names of the probes that failed or timed out.
    pub fn failing(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| *name)
            .collect()
    }

    /// The `/readyz` body: one key per probe, its result as the value.
    pub fn body(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.results
                .iter()
                .map(|(name, passed)| ((*name).to_string(), serde_json::Value::Bool(*passed)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_answers_fails_by_timeout_and_is_named() {
        let flag = Arc::new(AtomicBool::new(true));
        let readiness = Readiness::new()
            .with_timeout(Duration::from_secs(1))
            .flag("ready", flag.clone())
            .probe("broker", std::future::pending::<bool>)
            .probe("store", || async { true });
        let report = readiness.check().await;
        assert!(!report.ready());
        assert_eq!(report.failing(), vec!["broker"]);
        assert_eq!(
            report.body(),
            serde_json::json!({"ready": true, "broker": false, "store": true})
        );
    }

    #[tokio::test]
    async fn probes_run_at_every_check_and_no_probe_is_ready() {
        assert!(Readiness::new().check().await.ready());
        let flag = Arc::new(AtomicBool::new(false));
        let readiness = Readiness::from(flag.clone());
        assert_eq!(readiness.check().await.failing(), vec!["ready"]);
        flag.store(true, Ordering::Relaxed);
        assert!(readiness.check().await.ready());
    }
}
