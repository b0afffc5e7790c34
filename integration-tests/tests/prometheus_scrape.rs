//! A real Prometheus (Debian `prometheus`) scrapes every service of the pipeline: the gateway
//! (`ingest serve`), `aggregator run`, `scorer run`, `auth-api serve` and `alerter run` run as
//! their binaries on a Tansu broker, and Prometheus runs with a generated configuration (one
//! scrape job per service every second) and the pipeline's alert rules
//! (`ops/rules/agentops.rules.yml`). Asserted through Prometheus's HTTP API: every target is up,
//! a known metric of each service was scraped under its job (the gateway's request counter with
//! the requests the test made), and the rule groups are loaded and evaluate with health `ok`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::{env_value, free_port, pipeline_env, unique_topic, Service, TansuBroker};
use serde_json::Value;

const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
/// Unauthenticated `POST /v1/events` the test sends the gateway (each answered 401, counted).
const REFUSED_POSTS: usize = 3;

/// A Prometheus process owned by the test, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus with `config`, a fresh TSDB under `dir` and its API on a free port.
    fn start(dir: &Path, config: &Path) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS_BIN).exists(),
            "{PROMETHEUS_BIN} missing: run scripts/install-deps.sh (Debian package prometheus)"
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `data` of a `GET` on the HTTP API, or why there is none yet.
    async fn api(
        &self,
        client: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, String> {
        let response = client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("{path}: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("{path} {query:?}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// The series of an instant `query`: (labels, value).
    async fn query(&self, client: &reqwest::Client, query: &str) -> Result<Vec<(Value, f64)>, String> {
        let data = self.api(client, "/api/v1/query", &[("query", query)]).await?;
        Ok(data["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), value)
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus's configuration: one job per `(job, address)`, scraped and evaluated every second.
fn prometheus_config(targets: &[(&str, String)], rules: &Path) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
        rules.display()
    );
    for (job, address) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
        ));
    }
    config
}

/// What is still missing, or `None` once every check passes.
async fn missing(
    prometheus: &Prometheus,
    client: &reqwest::Client,
    jobs: &[(&str, String)],
    known: &[(&str, &str)],
) -> Option<String> {
    let mut missing = Vec::new();
    match prometheus.query(client, "up").await {
        Ok(series) => {
            let up: BTreeMap<String, f64> = series
                .iter()
                .map(|(labels, v)| (labels["job"].as_str().unwrap_or_default().to_string(), *v))
                .collect();
            for (job, _) in jobs {
                if up.get(*job) != Some(&1.0) {
                    missing.push(format!("up{{job=\"{job}\"}} is {:?}", up.get(*job)));
                }
            }
        }
        Err(e) => missing.push(e),
    }
    for (job, metric) in known {
        match prometheus
            .query(client, &format!("{{__name__=\"{metric}\",job=\"{job}\"}}"))
            .await
        {
            Ok(series) if !series.is_empty() => {}
            Ok(_) => missing.push(format!("no {metric} from job {job}")),
            Err(e) => missing.push(e),
        }
    }
    let refused = "ingest_requests_total{job=\"ingest\",status=\"401\"}";
    match prometheus.query(client, refused).await {
        Ok(series) if series.len() == 1 && series[0].1 == REFUSED_POSTS as f64 => {}
        Ok(series) => missing.push(format!("{refused}: {series:?}, expected {REFUSED_POSTS}")),
        Err(e) => missing.push(e),
    }
    match prometheus.api(client, "/api/v1/rules", &[]).await {
        Ok(data) => {
            let groups = data["groups"].as_array().cloned().unwrap_or_default();
            if groups.is_empty() {
                missing.push("no rule group loaded".to_string());
            }
            for group in &groups {
                let rules = group["rules"].as_array().cloned().unwrap_or_default();
                if rules.is_empty() {
                    missing.push(format!("rule group {} has no rules", group["name"]));
                }
                for rule in rules {
                    if rule["health"] != "ok" {
                        missing.push(format!(
                            "rule {} health {} {}",
                            rule["name"], rule["health"], rule["lastError"]
                        ));
                    }
                }
            }
        }
        Err(e) => missing.push(e),
    }
    (!missing.is_empty()).then(|| missing.join("\n"))
}

fn log_tails(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "--- {name}\n{}",
                lines[lines.len().saturating_sub(10)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_loads_the_rules() {
    let started = Instant::now();
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentops.db").display().to_string();
    let topic = unique_topic("events");
    let mut env = pipeline_env(&broker, &db, &topic, 500);
    env.retain(|(k, _)| k != "AGENTOPS__AGGREGATOR__METRICS_LISTEN");
    let address = |port: u16| format!("127.0.0.1:{port}");
    let jobs: Vec<(&str, String)> = vec![
        ("ingest", address(free_port())),
        ("aggregator", address(free_port())),
        (
            "scorer",
            env_value(&env, "AGENTOPS__SCORER__METRICS_LISTEN").to_string(),
        ),
        ("auth-api", address(free_port())),
        ("alerter", address(free_port())),
    ];
    let listen = |job: &str| jobs.iter().find(|(j, _)| *j == job).unwrap().1.clone();
    env.extend(
        [
            ("AGENTOPS__INGEST__LISTEN", listen("ingest")),
            ("AGENTOPS__AGGREGATOR__METRICS_LISTEN", listen("aggregator")),
            ("AGENTOPS__AUTH_API__LISTEN", listen("auth-api")),
            ("AGENTOPS__ALERTER__METRICS_LISTEN", listen("alerter")),
            (
                "AGENTOPS__AUTH_API__JWT_SECRET",
                "prometheus-scrape-test-secret-of-at-least-32-bytes".to_string(),
            ),
            ("AGENTOPS__ALERTER__CONSUMER_GROUP", unique_topic("alerter")),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env.extend(integration_tests::own_all_partitions(&[
        "aggregator",
        "scorer",
        "alerter",
    ]));
    integration_tests::prepare_pipeline(&broker, &env, 1, 1).await;

    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let _services = [
        Service::start("ingest", &["serve"], &env, &log("ingest")),
        Service::start("aggregator", &["run"], &env, &log("aggregator")),
        Service::start("scorer", &["run"], &env, &log("scorer")),
        Service::start("auth-api", &["serve"], &env, &log("auth-api")),
        Service::start("alerter", &["run"], &env, &log("alerter")),
    ];
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/rules/agentops.rules.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&jobs, &rules.canonicalize().unwrap())).unwrap();
    let prometheus = Prometheus::start(dir.path(), &config);

    // Requests the gateway refuses (no API key), to find counted in Prometheus.
    let client = reqwest::Client::new();
    let gateway = format!("http://{}", listen("ingest"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{gateway}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "gateway never answered\n{}",
            log_tails(dir.path(), &["ingest"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..REFUSED_POSTS {
        let r = client
            .post(format!("{gateway}/v1/events"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    let known = [
        ("ingest", "ingest_requests_total"),
        ("aggregator", "aggregator_events_in_total"),
        ("scorer", "scorer_windows_in_total"),
        // Prometheus's own scrapes are counted requests of the auth-api.
        ("auth-api", "auth_api_requests_total"),
        ("alerter", "alerter_alerts_open"),
    ];
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let Some(missing) = missing(&prometheus, &client, &jobs, &known).await else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "after {:?}:\n{missing}\n{}",
            started.elapsed(),
            log_tails(
                dir.path(),
                &[
                    "prometheus",
                    "ingest",
                    "aggregator",
                    "scorer",
                    "auth-api",
                    "alerter"
                ]
            )
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let groups = prometheus.api(&client, "/api/v1/rules", &[]).await.unwrap();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["agentops-pipeline"]);
    println!(
        "every service scraped and the rules loaded after {:?}",
        started.elapsed()
    );
}
