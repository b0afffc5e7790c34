//! Loading: layers, precedence, and errors that name the key.

use std::collections::HashMap;

use settings::{Error, Settings};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn err(file: Option<&str>, vars: &[(&str, &str)]) -> String {
    Settings::load(file.map(|t| ("test.toml", t)), &env(vars))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_load() {
    let s = Settings::load(None, &HashMap::new()).unwrap();
    assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(s.kafka.topics.task_events, "agentops.task-events");
    assert_eq!(s.schema_registry.url(), None);
    assert_eq!(s.aggregator.window_secs, 900);
}

#[test]
fn env_overrides_file_overrides_defaults() {
    let file = "[kafka]\nbrokers = \"file:9092\"\nsession_timeout_ms = 9000\n";
    let s = Settings::load(
        Some(("f.toml", file)),
        &env(&[
            ("AGENTOPS__KAFKA__BROKERS", "env:9092"),
            ("AGENTOPS__KAFKA__TOPICS__ANOMALIES", "a2"),
        ]),
    )
    .unwrap();
    assert_eq!(s.kafka.brokers, "env:9092");
    assert_eq!(s.kafka.session_timeout_ms, 9000);
    assert_eq!(s.kafka.topics.anomalies, "a2");
    assert_eq!(
        s.kafka.topics.task_events, "agentops.task-events",
        "untouched keys keep defaults"
    );
}

#[test]
fn env_numbers_are_typed_and_numeric_looking_strings_stay_strings() {
    let s = Settings::load(
        None,
        &env(&[
            ("AGENTOPS__AGGREGATOR__WINDOW_SECS", "600"),
            ("AGENTOPS__KAFKA__TOPICS__LATE_EVENTS", "2024"),
        ]),
    )
    .unwrap();
    assert_eq!(s.aggregator.window_secs, 600);
    assert_eq!(s.kafka.topics.late_events, "2024");
}

#[test]
fn other_variables_are_ignored() {
    assert!(Settings::load(None, &env(&[("PATH", "/bin"), ("AGENTOPS_X", "1")])).is_ok());
}

#[test]
fn wrong_type_names_the_key() {
    let e = err(None, &[("AGENTOPS__KAFKA__SESSION_TIMEOUT_MS", "soon")]);
    assert!(e.starts_with("config key `kafka.session_timeout_ms`:"), "{e}");
}

#[test]
fn unknown_key_names_the_key() {
    let e = err(Some("[kafka]\nbrokerz = \"x\"\n"), &[]);
    assert!(e.contains("kafka") && e.contains("brokerz"), "{e}");
}

#[test]
fn bad_listen_address_names_the_key() {
    let e = err(None, &[("AGENTOPS__INGEST__LISTEN", "localhost")]);
    assert!(e.starts_with("config key `ingest.listen`:"), "{e}");
}

#[test]
fn syntax_error_names_the_file() {
    let e = err(Some("[kafka\n"), &[]);
    assert!(e.starts_with("config test.toml:"), "{e}");
}

#[test]
fn semantic_checks_name_the_key() {
    let cases = [
        ("AGENTOPS__STORE__URL", "postgres://x", "store.url"),
        ("AGENTOPS__AGGREGATOR__WINDOW_SECS", "7", "aggregator.window_secs"),
        (
            "AGENTOPS__SCHEMA_REGISTRY__URL",
            "registry:8081",
            "schema_registry.url",
        ),
        (
            "AGENTOPS__KAFKA__TOPICS__ANOMALIES",
            "agentops.task-events",
            "kafka.topics",
        ),
        ("AGENTOPS__AUTH_API__BCRYPT_COST", "3", "auth_api.bcrypt_cost"),
        ("AGENTOPS__KAFKA__BROKERS", "\"\"", "kafka.brokers"),
        (
            "AGENTOPS__KAFKA__FETCH_WAIT_MAX_MS",
            "0",
            "kafka.fetch_wait_max_ms",
        ),
        (
            "AGENTOPS__KAFKA__FETCH_WAIT_MAX_MS",
            "300001",
            "kafka.fetch_wait_max_ms",
        ),
        (
            "AGENTOPS__AGGREGATOR__ASSIGNMENT",
            "first",
            "aggregator.assignment",
        ),
    ];
    for (var, value, key) in cases {
        let e = err(None, &[(var, value)]);
        assert!(
            e.starts_with(&format!("config key `{key}`:")),
            "{var}={value}: {e}"
        );
    }
}

#[test]
fn the_future_skew_is_bounded_by_the_lateness_and_names_its_key() {
    let s = Settings::load(None, &HashMap::new()).unwrap();
    assert_eq!(
        (s.events.max_future_skew_secs, s.events.max_future_skew_ms()),
        (60, 60_000)
    );
    let at_limit = Settings::load(
        None,
        &env(&[
            ("AGENTOPS__EVENTS__MAX_FUTURE_SKEW_SECS", "120"),
            ("AGENTOPS__AGGREGATOR__ALLOWED_LATENESS_SECS", "120"),
        ]),
    )
    .unwrap();
    assert_eq!(at_limit.events.max_future_skew_secs, 120);
    let e = err(
        None,
        &[
            ("AGENTOPS__EVENTS__MAX_FUTURE_SKEW_SECS", "121"),
            ("AGENTOPS__AGGREGATOR__ALLOWED_LATENESS_SECS", "120"),
        ],
    );
    assert!(
        e.starts_with(
            "config key `events.max_future_skew_secs`: 121 exceeds aggregator.allowed_lateness_secs (120)"
        ),
        "{e}"
    );
    let e = err(None, &[("AGENTOPS__EVENTS__MAX_FUTURE_SKEW_SECS", "-1")]);
    assert!(e.starts_with("config key `events.max_future_skew_secs`:"), "{e}");
}

#[test]
fn jwt_secret_is_required_by_its_user_and_masked() {
    let s = Settings::load(None, &HashMap::new()).unwrap();
    let e = s.auth_api.require_jwt_secret().unwrap_err();
    assert!(matches!(
        e,
        Error::Invalid {
            key: "auth_api.jwt_secret",
            ..
        }
    ));
    let secret = "s".repeat(40);
    let s = Settings::load(None, &env(&[("AGENTOPS__AUTH_API__JWT_SECRET", &secret)])).unwrap();
    assert_eq!(s.auth_api.require_jwt_secret().unwrap().expose(), secret);
    assert!(
        !format!("{s:?}").contains(&secret),
        "Debug must not print secrets"
    );
}

#[test]
fn otlp_prices_load_from_a_file_and_bad_ones_name_the_key() {
    let s = Settings::load(None, &HashMap::new()).unwrap();
    assert_eq!(s.ingest.otlp.cost_attribute, "agentops.cost_usd");
    assert_eq!(s.ingest.otlp.prices["gpt-4o"].output_usd_per_mtok, 10.0);
    let file =
        "[ingest.otlp.prices]\n\"my-model\" = { input_usd_per_mtok = 1.0, output_usd_per_mtok = 2.0 }\n";
    let s = Settings::load(Some(("f.toml", file)), &HashMap::new()).unwrap();
    assert_eq!(s.ingest.otlp.prices["my-model"].input_usd_per_mtok, 1.0);
    assert!(s.ingest.otlp.prices.contains_key("gpt-4o"), "defaults stay");
    let negative = "[ingest.otlp.prices]\nm = { input_usd_per_mtok = -1.0, output_usd_per_mtok = 2.0 }\n";
    assert!(err(Some(negative), &[]).contains("`ingest.otlp.prices`"));
    let unknown = "[ingest.otlp.prices]\nm = { input = 1.0, output_usd_per_mtok = 2.0 }\n";
    assert!(
        err(Some(unknown), &[]).contains("ingest.otlp.prices.m"),
        "{}",
        err(Some(unknown), &[])
    );
    assert!(err(None, &[("AGENTOPS__INGEST__OTLP__COST_ATTRIBUTE", " ")])
        .contains("`ingest.otlp.cost_attribute`"));
}

#[test]
fn assignments_are_parsed_once_into_the_partitions_they_name() {
    use settings::Assignment;
    let s = Settings::load(
        None,
        &env(&[
            ("AGENTOPS__AGGREGATOR__ASSIGNMENT", "0, 2"),
            ("AGENTOPS__SCORER__ASSIGNMENT", "3"),
        ]),
    )
    .unwrap();
    assert_eq!(s.aggregator.assignment, Assignment::Partitions(vec![0, 2]));
    assert_eq!(s.scorer.assignment, Assignment::Partitions(vec![3]));
    let defaults = Settings::load(None, &HashMap::new()).unwrap();
    assert_eq!(defaults.aggregator.assignment, Assignment::Group);
    let e = err(None, &[("AGENTOPS__SCORER__ASSIGNMENT", "1,1")]);
    assert!(e.starts_with("config key `scorer.assignment`:"), "{e}");
}

#[test]
fn the_window_retention_is_one_day_to_twenty_years_and_names_its_key() {
    let days = |value: &str| {
        Settings::load(None, &env(&[("AGENTOPS__STORE__WINDOW_RETENTION_DAYS", value)]))
            .map(|s| s.store.window_retention_secs())
    };
    assert_eq!(
        Settings::load(None, &HashMap::new())
            .unwrap()
            .store
            .window_retention_days,
        90
    );
    assert_eq!(days("1").unwrap(), 86_400);
    assert_eq!(days("7300").unwrap(), 7_300 * 86_400);
    for bad in ["0", "7301"] {
        let e = days(bad).unwrap_err().to_string();
        assert!(
            e.starts_with("config key `store.window_retention_days`:") && e.contains("between 1 and 7300"),
            "{bad}: {e}"
        );
    }
}
