//! The HTTP gateway against a real broker: every accepted event is in the topic exactly once,
//! rejected ones are absent, and with the broker stopped the gateway answers 503 and claims
//! nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use integration_tests::{free_port, run_bin, unique_topic, Service, TansuBroker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use schemas::codec::Decoder;
use schemas::TaskEvent;
use serde_json::{json, Value};

fn event(i: usize, tenant: &str) -> Value {
    let mut e = TaskEvent::example();
    e.event_id = format!("gw-{i}");
    e.task_id = format!("task-{i}");
    e.tenant_id = tenant.into();
    e.agent_id = format!("agent-{}", i % 4);
    serde_json::to_value(e).unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("gateway never became ready");
}

/// Reads the topic until `expected` records arrived or the topic stays quiet for 5 s.
async fn read_topic(broker: &TansuBroker, topic: &str, expected: usize) -> Vec<Result<TaskEvent, String>> {
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let decoder = Decoder::<TaskEvent>::new();
    let mut out = Vec::new();
    loop {
        let wait = if out.len() >= expected {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(30)
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => out.push(
                decoder
                    .decode_sync(m.payload().unwrap_or_default())
                    .map_err(|e| e.to_string()),
            ),
            Ok(Err(e)) => panic!("consumer: {e}"),
            Err(_) => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_land_exactly_once_and_a_stopped_broker_gets_503() {
    let mut broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("events");
    broker.create_topic(&topic, 3).await;
    let port = free_port();
    let env = vec![
        ("AGENTOPS__KAFKA__BROKERS".to_string(), broker.bootstrap()),
        ("AGENTOPS__KAFKA__TOPICS__TASK_EVENTS".to_string(), topic.clone()),
        (
            "AGENTOPS__STORE__URL".to_string(),
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        ),
        (
            "AGENTOPS__INGEST__LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
        (
            "AGENTOPS__INGEST__DELIVERY_TIMEOUT_MS".to_string(),
            "3000".to_string(),
        ),
    ];
    let acme = run_bin(
        "ingest",
        &["api-key", "create", "--tenant", "acme", "--label", "it"],
        &env,
    )
    .trim()
    .to_string();
    let _gateway = Service::start("ingest", &["serve"], &env, &dir.path().join("gateway.log"));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &base).await;

    // 10 batches of 50: every 7th event belongs to another tenant, every 11th has a negative cost.
    let mut expected_accepted = HashMap::new();
    let mut rejected_ids = Vec::new();
    for batch in 0..10 {
        let events: Vec<Value> = (batch * 50..batch * 50 + 50)
            .map(|i| {
                let mut e = event(i, if i % 7 == 0 { "globex" } else { "acme" });
                if i % 11 == 0 {
                    e["cost_micros"] = json!(-1);
                }
                e
            })
            .collect();
        let response = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&acme)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        for r in body["results"].as_array().unwrap() {
            let id = r["event_id"].as_str().unwrap().to_string();
            match r["status"].as_str().unwrap() {
                "accepted" => *expected_accepted.entry(id).or_insert(0) += 1,
                "rejected" => rejected_ids.push(id),
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(expected_accepted.len() + rejected_ids.len(), 500);
    assert_eq!(
        rejected_ids.len(),
        (0..500).filter(|i| i % 7 == 0 || i % 11 == 0).count()
    );

    let records = read_topic(&broker, &topic, expected_accepted.len()).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in records {
        let e = r.expect("only decodable events in the topic");
        assert_eq!(e.tenant_id, "acme");
        *seen.entry(e.event_id).or_insert(0) += 1;
    }
    assert_eq!(
        seen, expected_accepted,
        "every accepted event exactly once, nothing else"
    );

    // The broker goes away: nothing is claimed.
    broker.kill();
    let events: Vec<Value> = (1_000..1_010).map(|i| event(i, "acme")).collect();
    let response = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&acme)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].clone(), body["failed"].clone()),
        (json!(0), json!(10))
    );
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

/// `ingest gen --to http` reports what the gateway rejected (it used to print "0 invalid").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_to_http_reports_what_the_gateway_rejected() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("events");
    broker.create_topic(&topic, 2).await;
    let port = free_port();
    let env = vec![
        ("AGENTOPS__KAFKA__BROKERS".to_string(), broker.bootstrap()),
        ("AGENTOPS__KAFKA__TOPICS__TASK_EVENTS".to_string(), topic.clone()),
        (
            "AGENTOPS__STORE__URL".to_string(),
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        ),
        (
            "AGENTOPS__INGEST__LISTEN".to_string(),
            format!("127.0.0.1:{port}"),
        ),
    ];
    let _gateway = Service::start("ingest", &["serve"], &env, &dir.path().join("gateway.log"));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &base).await;
    let out = dir.path().join("gen");
    let stdout = run_bin(
        "ingest",
        &[
            "gen",
            "--to",
            "http",
            "--out",
            out.to_str().unwrap(),
            "--gateway",
            &base,
            "--tenants",
            "2",
            "--agents",
            "2",
            "--control-agents",
            "1",
            "--days",
            "1",
            "--tasks-per-day",
            "300",
            "--malformed-rate",
            "0.05",
            "--no-incidents",
        ],
        &env,
    );
    // What the gateway itself counted as rejected.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rejected: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("ingest_events_rejected_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(rejected > 0, "{metrics}");
    let summary = stdout
        .lines()
        .find(|l| l.contains(" records ("))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    assert!(
        summary.contains(&format!("; {rejected} rejected by the gateway)")),
        "the summary reports the gateway's {rejected} rejections: {summary}"
    );
    // The generator's malformed records (invalid events and garbage) are what it refused.
    let number_before = |label: &str| -> u64 {
        let head = &summary[..summary
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {summary}"))];
        head.trim_end()
            .rsplit([' ', '('])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        number_before(" invalid,") + number_before(" not events"),
        rejected,
        "{summary}"
    );
}
