//! The HTTP edge: delivering an [`Outbox`] to Alertmanager, the webhooks and PagerDuty, each
//! retried with backoff until it answers (4xx other than 408/429: logged, counted, dropped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::try_join_all;
use schemas::time::now_ms;
use serde::Serialize;

use crate::alertmanager::{postable, Presentation};
use crate::grouping::{Alert, Change};
use crate::metrics::Metrics;
use crate::retry::{backoff, judge, Verdict};
use crate::webhook::{self, SIGNATURE_HEADER};
use crate::{Error, Result};

/// Notifications waiting for the next delivery: Alertmanager gets the latest state of every
/// alert that changed; webhooks and PagerDuty get each opening and resolution, in order.
#[derive(Debug, Default, Clone)]
pub struct Outbox {
    alertmanager: Vec<Alert>,
    transitions: Vec<Alert>,
    /// `scored_at` of the verdicts that opened alerts (for the delivery-delay histogram).
    opened_scored_at_ms: Vec<i64>,
}

impl Outbox {
    /// Queues what `change` (caused by a verdict scored at `scored_at_ms`) must tell.
    pub fn push(&mut self, change: &Change, scored_at_ms: i64) {
        let alert = change.alert().clone();
        match change {
            Change::Opened(_) => {
                self.transitions.push(alert.clone());
                self.opened_scored_at_ms.push(scored_at_ms);
            }
            Change::Resolved(_) => self.transitions.push(alert.clone()),
            Change::Updated(_) => {}
        }
        self.alertmanager.push(alert);
    }

    /// Moves everything queued in `other` behind what is queued here.
    pub fn append(&mut self, mut other: Outbox) {
        self.alertmanager.append(&mut other.alertmanager);
        self.transitions.append(&mut other.transitions);
        self.opened_scored_at_ms.append(&mut other.opened_scored_at_ms);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.alertmanager.is_empty()
    }

    /// The Alertmanager batch: the last state of each incident, in first-change order.
    fn latest_states(&self) -> Vec<&Alert> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<&Alert> = self
            .alertmanager
            .iter()
            .rev()
            .filter(|a| seen.insert(a.fingerprint()))
            .collect();
        out.reverse();
        out
    }
}

struct Hook {
    name: String,
    url: String,
    secret: settings::Secret,
}

/// The configured receivers and an HTTP client.
pub struct Receivers {
    client: reqwest::Client,
    alertmanager_urls: Vec<String>,
    hooks: Vec<Hook>,
    pagerduty: Option<(settings::Secret, String)>,
    presentation: Presentation,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: Metrics,
}

impl Receivers {
    /// From the settings (validated there).
    pub fn new(s: &settings::Alerter, metrics: Metrics) -> Result<Receivers> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .user_agent(concat!("agentops-alerter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Receivers {
            client,
            alertmanager_urls: s
                .alertmanager_urls
                .iter()
                .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
                .collect(),
            hooks: s
                .webhooks
                .iter()
                .map(|h| Hook {
                    name: h.name.clone(),
                    url: h.url.clone(),
                    secret: h.secret.clone(),
                })
                .collect(),
            pagerduty: (!s.pagerduty.routing_key.is_empty())
                .then(|| (s.pagerduty.routing_key.clone(), s.pagerduty.url.clone())),
            presentation: Presentation {
                link_base_url: s.link_base_url.clone(),
                resend_interval_ms: (s.resend_interval_secs * 1000) as i64,
            },
            retry_initial: Duration::from_millis(s.retry_initial_ms),
            retry_max: Duration::from_millis(s.retry_max_ms),
            metrics,
        })
    }

    /// Delivers everything in `outbox` to every receiver; returns once each answered (or
    /// refused). While `stop` is set, a failing delivery gives up with [`Error::Stopped`].
    pub async fn deliver(&self, outbox: &Outbox, stop: &AtomicBool) -> Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let states = outbox.latest_states();
        let mut jobs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + '_>>> =
            Vec::new();
        if !self.alertmanager_urls.is_empty() {
            let body: Vec<_> = states
                .iter()
                .map(|a| postable(&self.presentation, a, now))
                .collect();
            jobs.push(Box::pin(self.to_alertmanager(body, stop)));
        }
        for hook in &self.hooks {
            jobs.push(Box::pin(async move {
                for alert in &outbox.transitions {
                    let event = webhook::event(&self.presentation.link_base_url, alert);
                    let body = serde_json::to_vec(&event).expect("webhook event serializes");
                    let label = format!("webhook_{}", hook.name);
                    self.attempt(&label, stop, || {
                        let t = now_ms() / 1000;
                        self.client
                            .post(&hook.url)
                            .header("content-type", "application/json")
                            .header(
                                SIGNATURE_HEADER,
                                webhook::sign(hook.secret.expose().as_bytes(), t, &body),
                            )
                            .body(body.clone())
                    })
                    .await?;
                }
                Ok(())
            }));
        }
        if let Some((key, url)) = &self.pagerduty {
            jobs.push(Box::pin(async move {
                for alert in &outbox.transitions {
                    let event =
                        crate::pagerduty::event(key.expose(), &self.presentation.link_base_url, alert);
                    self.attempt("pagerduty", stop, || self.client.post(url).json(&event))
                        .await?;
                }
                Ok(())
            }));
        }
        try_join_all(jobs).await?;
        let delivered = now_ms();
        for scored in &outbox.opened_scored_at_ms {
            self.metrics
                .delivery_delay_seconds
                .observe(((delivered - scored).max(0)) as f64 / 1000.0);
        }
        Ok(())
    }

    /// Posts open alerts to Alertmanager again (re-send interval, after a restart).
    pub async fn resend<'a>(&self, open: impl Iterator<Item = &'a Alert>, stop: &AtomicBool) -> Result<()> {
        if self.alertmanager_urls.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let body: Vec<_> = open.map(|a| postable(&self.presentation, a, now)).collect();
        if body.is_empty() {
            return Ok(());
        }
        self.to_alertmanager(body, stop).await
    }

    async fn to_alertmanager<T: Serialize + Sync>(&self, body: Vec<T>, stop: &AtomicBool) -> Result<()> {
        let posts = self.alertmanager_urls.iter().map(|url| {
            let body = &body;
            self.attempt("alertmanager", stop, move || self.client.post(url).json(body))
        });
        try_join_all(posts).await?;
        Ok(())
    }

    /// Sends the request `build` makes until the receiver accepts or refuses it.
    async fn attempt(
        &self,
        receiver: &str,
        stop: &AtomicBool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<()> {
        let mut delays = backoff(self.retry_initial, self.retry_max);
        loop {
            let (status, detail) = match build().send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let text = if res.status().is_success() {
                        String::new()
                    } else {
                        res.text().await.unwrap_or_default()
                    };
                    (Some(status), text)
                }
                Err(e) => (None, e.to_string()),
            };
            match judge(status) {
                Verdict::Delivered => {
                    self.metrics.sent.with_label_values(&[receiver]).inc();
                    return Ok(());
                }
                Verdict::Rejected => {
                    tracing::error!(receiver, ?status, %detail, "receiver refused the notification; dropped");
                    self.metrics.failed.with_label_values(&[receiver]).inc();
                    return Ok(());
                }
                Verdict::Retry => {
                    self.metrics.retried.with_label_values(&[receiver]).inc();
                    if stop.load(Ordering::Relaxed) {
                        return Err(Error::Stopped);
                    }
                    let delay = delays.next().unwrap_or(self.retry_max);
                    tracing::warn!(receiver, ?status, %detail, delay_ms = delay.as_millis() as u64, "delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
