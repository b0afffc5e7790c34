//! The dashboard page in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core from npm (`integration-tests/browser/dashboard.cjs`), against the auth-api
//! binary on a SQLite store that this test fills directly with a generated week of 9 series
//! of KPI windows (672 each) and an injected incident (12 flagged windows on one series).
//!
//! Checked: a user granted one tenant sees that tenant only; the numbers of the page's table
//! view equal the API's; the incident's windows are shaded on every window chart and listed as
//! alarms with their explanation; an agent named like an HTML element is shown as text; a
//! refused token and an expired one return to sign-in; a user without a grant gets the empty
//! state; the token is in no URL or cookie.
//!
//! Printed, not asserted: the week opened `DASHBOARD_LOADS` times (default 5), each timed by the
//! page's clock from navigation start: the first contentful paint (the page's loading state),
//! the windows' answer received, and the charts with the data on screen (the first task after
//! the frame that follows their drawing). `AUTH_API_BIN` runs another auth-api binary (the
//! release one, for the measured number); `DASHBOARD_SCREENSHOT=docs/dashboard.png` keeps the
//! screenshot.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{free_port, run_bin, Service};
use schemas::kpi::{Counts, Latencies};
use schemas::time::{now_ms, DAY_MS};
use serde_json::{json, Value};
use store::{DailyMetric, KpiWindowRow, WindowVerdict};

const WEEK_START_MS: i64 = 1_759_276_800_000; // 2025-10-01T00:00:00Z
const WINDOW_MS: i64 = 900_000;
const WINDOWS: i64 = 7 * 96;
const INCIDENT_AGENT: &str = "agent-3";
const INCIDENT: std::ops::Range<i64> = 400..412;
const INCIDENT_WINDOWS: usize = 12;
/// An agent id the rule allows (no `/`) that would run script if rendered as HTML.
const HOSTILE_AGENT: &str = "<img src=x onerror=window.pwned=1>";
const PASSWORD: &str = "correct horse battery";

fn agents() -> Vec<String> {
    let mut agents: Vec<String> = (1..=8).map(|i| format!("agent-{i}")).collect();
    agents.push(HOSTILE_AGENT.to_string());
    agents
}

fn window(tenant: &str, agent: &str, series: i64, i: i64) -> KpiWindowRow {
    let tasks = 20 + (i * 7 + series * 13) % 11;
    let incident = agent == INCIDENT_AGENT && INCIDENT.contains(&i);
    let succeeded = if incident { tasks / 2 } else { tasks - 1 - i % 3 };
    let p50 = 300.0 + ((i + series) % 17) as f64 * 5.0;
    let verdict = (i >= 15).then(|| WindowVerdict {
        lstm_score: 0.1,
        transformer_score: 0.2,
        statistical_score: Some(if incident { 9.5 } else { 0.25 }),
        ensemble_score: if incident {
            6.25
        } else {
            0.5 + (i % 5) as f64 * 0.125
        },
        threshold: 3.0,
        is_anomaly: incident,
        model_version: "test".into(),
        explanation: if incident {
            vec![schemas::KpiExplanation {
                kpi: "success_rate".into(),
                observed: succeeded as f64 / tasks as f64,
                expected: 0.9,
                low: 0.84,
                high: 0.96,
                evidence: 9.5,
            }]
        } else {
            Vec::new()
        },
    });
    KpiWindowRow {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        window_start: WEEK_START_MS + i * WINDOW_MS,
        window_end: WEEK_START_MS + (i + 1) * WINDOW_MS,
        revision: 0,
        counts: Counts {
            tasks_total: tasks,
            succeeded,
            failed: tasks - succeeded,
            cancelled: 0,
            tasks_with_intervention: (i + series) % 4,
            interventions: (i + series) % 6,
            cost_micros: tasks * 21_000 + series * 1_000,
        },
        latency: Latencies {
            latency_p50_ms: Some(p50),
            latency_p95_ms: Some(p50 * 3.0),
            latency_p99_ms: Some(p50 * 5.5),
        },
        verdict,
        updated_at_ms: now_ms(),
    }
}

/// Daily rows of `windows` per agent and the tenant roll-up (`*`).
fn daily_rows(windows: &[KpiWindowRow]) -> Vec<DailyMetric> {
    let mut rows: std::collections::BTreeMap<(String, i64), DailyMetric> = Default::default();
    for w in windows {
        let day = (w.window_start - WEEK_START_MS) / DAY_MS;
        for agent in [w.agent_id.as_str(), "*"] {
            let row = rows
                .entry((agent.to_string(), day))
                .or_insert_with(|| DailyMetric {
                    tenant_id: w.tenant_id.clone(),
                    agent_id: agent.to_string(),
                    day: time::macros::date!(2025 - 10 - 01) + time::Duration::days(day),
                    counts: Counts::default(),
                    latency: Latencies {
                        latency_p50_ms: Some(320.0 + day as f64),
                        latency_p95_ms: Some(960.0 + day as f64),
                        latency_p99_ms: Some(1_800.0 + day as f64),
                    },
                    latency_digest: Vec::new(),
                    is_final: true,
                    updated_at_ms: now_ms(),
                });
            row.counts.merge(&w.counts);
        }
    }
    rows.into_values().collect()
}

async fn fill(db: &str) {
    let store = store::open_migrated(&format!("sqlite://{db}")).await.unwrap();
    let mut windows = Vec::new();
    for (s, agent) in agents().iter().enumerate() {
        windows.extend((0..WINDOWS).map(|i| window("acme", agent, s as i64, i)));
    }
    let other: Vec<KpiWindowRow> = (0..WINDOWS).map(|i| window("globex", "spy", 0, i)).collect();
    store.upsert_kpi_windows(&windows, 86_400).await.unwrap();
    store.upsert_kpi_windows(&other, 86_400).await.unwrap();
    store.upsert_daily_metrics(&daily_rows(&windows)).await.unwrap();
    store.upsert_daily_metrics(&daily_rows(&other)).await.unwrap();
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }
}

fn playwright_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PLAYWRIGHT_DIR").expect(
        "PLAYWRIGHT_DIR not set: run scripts/install-deps.sh and `source scripts/lib.sh` (scripts/test.sh does)",
    ));
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "{} has no playwright-core: run scripts/install-playwright.sh",
        dir.display()
    );
    dir
}

/// The value a table cell carries (`data-value`), as a number (`None` for empty).
fn cell_number(cell: &Value) -> Option<f64> {
    cell["value"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap())
}

/// `median (min-max)` of one timing over the loads, in whole ms.
fn spread(loads: &[Value], key: &str) -> String {
    let mut v: Vec<f64> = loads.iter().filter_map(|l| l[key].as_f64()).collect();
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!("{median:.0} ({:.0}-{:.0})", v[0], v[v.len() - 1])
}

fn text(cell: &Value) -> &str {
    cell["text"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_granted_tenants_numbers_and_its_incident() {
    let playwright = playwright_dir();
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: run scripts/install-deps.sh (Debian package chromium)"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let db = db.to_str().unwrap();
    fill(db).await;

    let port = free_port();
    let env: Vec<(String, String)> = vec![
        ("AGENTOPS__STORE__URL".into(), format!("sqlite://{db}")),
        ("AGENTOPS__AUTH_API__LISTEN".into(), format!("127.0.0.1:{port}")),
        (
            "AGENTOPS__AUTH_API__JWT_SECRET".into(),
            "browser-test-secret-browser-test-secret".into(),
        ),
        ("AGENTOPS__AUTH_API__BCRYPT_COST".into(), "4".into()),
    ];
    let _api = Service::start("auth-api", &["serve"], &env, &dir.path().join("auth-api.log"));
    let api = Api {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .client
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "auth-api did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for email in ["ops@example.com", "outsider@example.com"] {
        let (status, body) = api
            .post("/api/v1/register", json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    run_bin(
        "auth-api",
        &["grant", "--email", "ops@example.com", "--tenant", "acme"],
        &env,
    );
    let (status, login) = api
        .post(
            "/api/v1/login",
            json!({"login": "ops@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap();
    let windows = api
        .get(
            "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-10-08T00:00:00Z",
            token,
        )
        .await["windows"]
        .as_array()
        .unwrap()
        .clone();
    let daily = api
        .get(
            "/api/v1/tenants/acme/metrics/daily?from=2025-10-01&to=2025-10-07&agent=*",
            token,
        )
        .await["rows"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(windows.len(), 9 * WINDOWS as usize);
    let flagged: Vec<&Value> = windows
        .iter()
        .filter(|w| w["verdict"]["is_anomaly"] == true)
        .collect();
    assert_eq!(flagged.len(), INCIDENT_WINDOWS);

    let screenshot = std::env::var("DASHBOARD_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("dashboard.png"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.cjs");
    let output = Command::new("node")
        .arg(&script)
        .env("BASE_URL", &api.base)
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("CHROMIUM_BIN", &chromium)
        .env("GRANTED_LOGIN", "ops@example.com")
        .env("OUTSIDER_LOGIN", "outsider@example.com")
        .env("PASSWORD", PASSWORD)
        .env("HASH", "tenant=acme&from=2025-10-01&to=2025-10-07")
        .env("SCREENSHOT", &screenshot)
        .env(
            "LOADS",
            std::env::var("DASHBOARD_LOADS").unwrap_or_else(|_| "5".into()),
        )
        .output()
        .expect("run node (scripts/install-playwright.sh installs it)");
    assert!(
        output.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    let loads = page["loads"].as_array().unwrap();
    assert!(!loads.is_empty());
    for load in loads {
        // The page marks when its charts hold the data and when that frame is on screen.
        assert!(
            load["rendered_ms"].as_f64().is_some() && load["painted_ms"].as_f64().is_some(),
            "{load}"
        );
        assert!(
            load["painted_ms"].as_f64() >= load["rendered_ms"].as_f64(),
            "{load}"
        );
    }
    println!(
        "dashboard, a week of 9 series ({} windows, {:.0} KB as columns), {} loads, ms after navigation start, median (min-max): \
         charts with the data on screen {}; first contentful paint {}; windows answer received {}; charts built {}",
        windows.len(),
        loads[0]["windows_bytes"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        loads.len(),
        spread(loads, "painted_ms"),
        spread(loads, "first_contentful_paint_ms"),
        spread(loads, "data_ms"),
        spread(loads, "rendered_ms"),
    );

    // The granted tenant only.
    assert_eq!(page["tenants"], json!(["acme"]));
    // The table view holds the API's numbers, row by row.
    let rows = page["windows"].as_array().unwrap();
    assert_eq!(rows.len(), windows.len());
    for (row, w) in rows.iter().zip(&windows) {
        let row = row.as_array().unwrap();
        assert_eq!(text(&row[1]), w["agent_id"].as_str().unwrap());
        assert_eq!(text(&row[2]), w["tasks_total"].to_string());
        for (i, field) in [
            (3, "success_rate"),
            (4, "intervention_rate"),
            (5, "latency_p50_ms"),
            (6, "latency_p95_ms"),
            (7, "latency_p99_ms"),
            (8, "cost_per_task_micros"),
        ] {
            assert_eq!(cell_number(&row[i]), w[field].as_f64(), "{field} of {w}");
        }
        assert_eq!(cell_number(&row[9]), w["verdict"]["ensemble_score"].as_f64());
        let is_flagged = w["verdict"]["is_anomaly"] == true;
        assert_eq!(text(&row[10]), if is_flagged { "yes" } else { "no" });
    }
    let daily_rows = page["daily"].as_array().unwrap();
    assert_eq!(daily_rows.len(), daily.len());
    assert_eq!(daily.len(), 7);
    for (row, d) in daily_rows.iter().zip(&daily) {
        assert_eq!(text(&row[0]), d["day"].as_str().unwrap());
        assert_eq!(text(&row[2]), d["tasks_total"].to_string());
        assert_eq!(cell_number(&row[3]), d["success_rate"].as_f64());
        assert_eq!(cell_number(&row[8]), d["cost_per_task_micros"].as_f64());
    }
    // The incident: shaded on every window chart, listed as alarms, explained on click.
    assert_eq!(page["charts"], 10, "5 KPIs by day and by window");
    assert_eq!(page["shaded"], json!(vec![INCIDENT_WINDOWS; 5]));
    let alarms = page["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), INCIDENT_WINDOWS);
    assert!(alarms
        .iter()
        .all(|a| text(&a[1]) == INCIDENT_AGENT && text(&a[3]).starts_with("success_rate 0.")));
    let explain = page["explain"].as_str().unwrap();
    assert!(
        explain.starts_with(&format!("{INCIDENT_AGENT}, 2025-10-05 04:00 UTC, score 6.25"))
            && explain.contains("expected 0.900 (0.840–0.960)"),
        "{explain}"
    );
    // Server strings are text, never HTML.
    assert_eq!(page["pwned"], false);
    assert_eq!(page["injected_elements"], 0);
    assert!(rows.iter().any(|r| text(&r[1]) == HOSTILE_AGENT));
    assert!(page["agents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == HOSTILE_AGENT));
    // The token lives in sessionStorage only.
    assert_eq!(page["token_in_url"], false);
    assert_eq!(page["cookies"], 0);
    // Refused and expired tokens return to sign-in.
    assert!(page["refused_token"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert_eq!(page["refused_token"]["dashboard_hidden"], true);
    assert_eq!(page["refused_token"]["token_kept"], false);
    assert!(page["expired_token"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // No grant: the empty state.
    assert!(
        page["outsider"]["status"]
            .as_str()
            .unwrap()
            .starts_with("No tenant is granted"),
        "{}",
        page["outsider"]
    );
    assert_eq!(page["outsider"]["tenants"], json!([]));
    assert_eq!(page["outsider"]["content_hidden"], true);
    assert_eq!(
        page["console_errors"],
        json!([]),
        "no CSP violation or script error"
    );
}
