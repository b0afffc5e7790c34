//! The receivers against a real Alertmanager (Debian `prometheus-alertmanager`, installed by
//! `scripts/install-deps.sh`), started here on free ports with its webhook receiver pointed at
//! a recording HTTP server of the test. Asserts through Alertmanager's own API
//! (`GET /api/v2/alerts`) and the notifications it sends; also the signed webhook, a refusing
//! receiver (counted, not retried) and a receiver that is down at first (retried, delivered).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alerter::grouping::{AlertBook, Change, GroupingConfig};
use alerter::metrics::Metrics;
use alerter::receivers::{Outbox, Receivers};
use schemas::{Anomaly, KpiExplanation};
use serde_json::Value;
use warp::Filter;

const AM_BIN: &str = "/usr/bin/prometheus-alertmanager";
const W: i64 = 900_000;
const SECRET: &str = "test-secret-0123456789";

/// A request received: path, `X-Signature`, body.
type Request = (String, Option<String>, Vec<u8>);

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Request>>>);

impl Recorded {
    fn on(&self, path: &str) -> Vec<(Option<String>, Vec<u8>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, s, b)| (s.clone(), b.clone()))
            .collect()
    }
}

/// A recording server on `addr`: `/am` and `/signed` answer 200, `/refuse` 400.
async fn recorder(addr: SocketAddr, rec: Recorded) {
    let route = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::header::optional::<String>("x-signature"))
        .and(warp::body::bytes())
        .map(move |path: String, sig: Option<String>, body: bytes::Bytes| {
            rec.0.lock().unwrap().push((path.clone(), sig, body.to_vec()));
            let status = if path == "refuse" { 400 } else { 200 };
            warp::reply::with_status(String::new(), warp::http::StatusCode::from_u16(status).unwrap())
        });
    warp::serve(route).run(addr).await;
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_alertmanager(hook: &str) -> Alertmanager {
    assert!(
        std::path::Path::new(AM_BIN).exists(),
        "{AM_BIN} missing: run scripts/install-deps.sh (Debian package prometheus-alertmanager)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  resolve_timeout: 5m\nroute:\n  receiver: rec\n  group_by: [alertname, tenant, agent, kpi]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: rec\n  webhook_configs:\n  - url: {hook}\n    send_resolved: true\n"
    );
    std::fs::write(dir.path().join("am.yml"), config).unwrap();
    let addr = free_addr();
    let child = Command::new(AM_BIN)
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "alertmanager did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Alertmanager {
        child,
        url,
        _dir: dir,
    }
}

fn verdict(window: i64, flagged: bool) -> Anomaly {
    Anomaly {
        anomaly_id: format!("v{window}"),
        window_id: format!("w{window}"),
        tenant_id: "acme".into(),
        agent_id: "support-bot".into(),
        window_start: window * W,
        window_end: (window + 1) * W,
        lstm_score: 0.0,
        transformer_score: 0.0,
        lstm_normalized: 0.0,
        transformer_normalized: 0.0,
        ensemble_score: if flagged { 1.5 } else { 0.1 },
        threshold: 1.0,
        is_anomaly: flagged,
        top_features: vec![],
        model_version: "m".into(),
        scored_at: 0,
        statistical_score: None,
        explanation: vec![KpiExplanation {
            kpi: "success_rate".into(),
            observed: 0.52,
            expected: 0.86,
            low: 0.79,
            high: 0.93,
            evidence: 7.0,
        }],
    }
}

fn settings(am: &str, hook_base: &str) -> settings::Alerter {
    let file = format!(
        "[alerter]\nalertmanager_urls = [\"{am}\"]\nresend_interval_secs = 60\nretry_initial_ms = 50\nretry_max_ms = 200\nrequest_timeout_ms = 2000\n\
         [[alerter.webhooks]]\nname = \"signed\"\nurl = \"{hook_base}/signed\"\nsecret = \"{SECRET}\"\n\
         [[alerter.webhooks]]\nname = \"refusing\"\nurl = \"{hook_base}/refuse\"\nsecret = \"{SECRET}\"\n"
    );
    settings::Settings::load(Some(("t.toml", &file)), &Default::default())
        .unwrap()
        .alerter
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn am_notifications(rec: &Recorded) -> Vec<Value> {
    rec.on("am")
        .into_iter()
        .map(|(_, b)| serde_json::from_slice(&b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_incident_resolved_after_it_ends_and_re_sends_are_merged() {
    let rec = Recorded::default();
    let hook_addr = free_addr();
    let hook_base = format!("http://{hook_addr}");
    let am = start_alertmanager(&format!("{hook_base}/am")).await;
    let metrics = Metrics::default();
    let receivers = Receivers::new(&settings(&am.url, &hook_base), metrics.clone()).unwrap();
    let stop = AtomicBool::new(false);
    // The recorder is down at first: the signed webhook is retried until it comes up.
    let late_rec = rec.clone();
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        recorder(hook_addr, late_rec).await
    });

    let now_window = schemas::time::now_ms() / W;
    let config = GroupingConfig {
        quiet_ms: 2 * W,
        critical_ratio: 2.0,
    };
    let mut book = AlertBook::default();
    let mut outbox = Outbox::default();
    for (i, flagged) in [true, true, false, true].into_iter().enumerate() {
        for change in book.observe(&config, &verdict(now_window - 10 + i as i64, flagged)) {
            outbox.push(&change, 0);
        }
    }
    receivers.deliver(&outbox, &stop).await.unwrap();
    let incident = book.open().next().unwrap().fingerprint();

    // Alertmanager's own view: one active alert with our labels and summary.
    let client = reqwest::Client::new();
    let alerts: Value = client
        .get(format!("{}/api/v2/alerts", am.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["labels"]["alertname"], "AgentKpiAnomaly");
    assert_eq!(a["labels"]["tenant"], "acme");
    assert_eq!(a["labels"]["agent"], "support-bot");
    assert_eq!(a["labels"]["kpi"], "success_rate");
    assert_eq!(a["labels"]["severity"], "warning");
    assert!(a["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("success_rate 0.52, expected 0.86 (0.79-0.93); score 1.50"));
    assert_eq!(a["annotations"]["incident_id"], incident.as_str());

    let firing = wait_for("the firing notification", || {
        let n = am_notifications(&rec);
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(firing[0]["status"], "firing");
    assert_eq!(firing[0]["alerts"].as_array().unwrap().len(), 1);

    // Re-sent (as after a restart and at the re-send interval): merged, no new notification.
    for _ in 0..3 {
        receivers.resend(book.open(), &stop).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(am_notifications(&rec).len(), 1, "a re-send caused a notification");

    // The incident ends: quiet windows until the quiet period passed.
    let mut outbox = Outbox::default();
    for i in 4..8 {
        for change in book.observe(&config, &verdict(now_window - 10 + i, false)) {
            outbox.push(&change, 0);
        }
    }
    assert_eq!(book.open_count(), 0);
    receivers.deliver(&outbox, &stop).await.unwrap();
    let all = wait_for("the resolved notification", || {
        let n = am_notifications(&rec);
        (n.len() >= 2).then_some(n)
    })
    .await;
    assert_eq!(all[1]["status"], "resolved");
    assert_eq!(all[1]["alerts"][0]["labels"]["kpi"], "success_rate");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        am_notifications(&rec).len(),
        2,
        "duplicate notifications: {:?}",
        am_notifications(&rec)
    );

    // The signed webhook: opened then resolved, each verifiable, same incident id.
    let signed = rec.on("signed");
    assert_eq!(signed.len(), 2);
    let mut statuses = Vec::new();
    for (sig, body) in &signed {
        let now = schemas::time::now_ms() / 1000;
        alerter::webhook::verify(SECRET.as_bytes(), sig.as_deref().unwrap(), body, now, 300).unwrap();
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["alert_id"], incident.as_str());
        statuses.push(event["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["firing", "resolved"]);
    let retried = metrics.retried.with_label_values(&["webhook_signed"]).get();
    assert!(retried >= 1, "the webhook that was down was not retried");
    // The refusing receiver (retried only while the server was down): each notification
    // reached it once, was refused with 400, counted as failed and not sent again.
    assert_eq!(rec.on("refuse").len(), 2);
    assert_eq!(metrics.failed.with_label_values(&["webhook_refusing"]).get(), 2);
    assert_eq!(metrics.sent.with_label_values(&["webhook_signed"]).get(), 2);
    assert!(matches!(
        book.observe(&config, &verdict(now_window, false)).as_slice(),
        [] | [Change::Resolved(_)]
    ));
    starter.abort();
}
