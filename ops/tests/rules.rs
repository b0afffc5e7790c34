//! The pipeline's alert rules (`ops/rules/agentops.rules.yml`) pass `promtool check rules` and
//! their unit tests (`promtool test rules`, Debian package `prometheus`, installed by
//! `scripts/install-deps.sh`).

use std::path::PathBuf;
use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool missing: run scripts/install-deps.sh (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rules_are_valid() {
    promtool(&["check", "rules", "agentops.rules.yml"]);
}

#[test]
fn the_rules_fire_as_their_unit_tests_expect() {
    promtool(&["test", "rules", "agentops.rules.test.yml"]);
}

/// The metrics the rules are written against (some through a `{__name__=~...}` selector) are
/// ones the services export (their names appear in the services' metric definitions).
#[test]
fn the_rules_name_metrics_the_services_export() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = String::new();
    for file in [
        "aggregator/src/metrics.rs",
        "scorer/src/metrics.rs",
        "ingest/src/gateway/metrics.rs",
        "alerter/src/metrics.rs",
    ] {
        sources.push_str(&std::fs::read_to_string(root.join(file)).unwrap());
    }
    for name in [
        "aggregator_consumer_lag",
        "scorer_consumer_lag",
        "alerter_consumer_lag",
        "aggregator_dead_lettered_total",
        "alerter_dead_lettered_total",
        "aggregator_checkpoint_seconds",
        "alerter_last_checkpoint_timestamp_seconds",
        "scorer_model_reloads_total",
        "ingest_requests_total",
        "alerter_notifications_retried_total",
        "alerter_notifications_sent_total",
        "alerter_notifications_failed_total",
    ] {
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "no service exports {name}"
        );
    }
}

/// The Helm chart ships its own copy of the rules (a chart cannot read files outside its
/// folder): it must be the same file, byte for byte.
#[test]
fn the_chart_ships_the_same_rules() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let here = std::fs::read(root.join("ops/rules/agentops.rules.yml")).unwrap();
    let chart = std::fs::read(root.join("helm/agentops/files/agentops.rules.yml")).unwrap();
    assert!(
        here == chart,
        "helm/agentops/files/agentops.rules.yml differs from ops/rules/agentops.rules.yml: \
         cp ops/rules/agentops.rules.yml helm/agentops/files/"
    );
}
