//! The `auth-api` binary's user and grant commands: they sign no token, so they run without
//! `auth_api.jwt_secret`; a user and grants made with them are then read through the HTTP
//! routes, tenant ids percent-encoded in the path.

use std::process::{Command, Output};
use std::sync::Arc;

use auth_api::config::Config;
use auth_api::routes;
use auth_api::service::AuthService;
use schemas::kpi::{Counts, Latencies};
use serde_json::{json, Value};
use store::DailyMetric;

const PASSWORD: &str = "correct horse battery";

/// Runs `auth-api <args>` on the SQLite file `db` with no `AGENTOPS*` variable but the store
/// URL and a low bcrypt cost: in particular without `AGENTOPS__AUTH_API__JWT_SECRET`.
fn cli(db: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-api"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("AGENTOPS")) {
        cmd.env_remove(key);
    }
    let mut child = cmd
        .env("AGENTOPS__STORE__URL", format!("sqlite://{}", db.display()))
        .env("AGENTOPS__AUTH_API__BCRYPT_COST", "4")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("auth-api binary");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {text}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn daily(tenant: &str, day: time::Date) -> DailyMetric {
    DailyMetric {
        tenant_id: tenant.into(),
        agent_id: "*".into(),
        day,
        counts: Counts {
            tasks_total: 10,
            succeeded: 9,
            failed: 1,
            cancelled: 0,
            tasks_with_intervention: 1,
            interventions: 1,
            cost_micros: 1000,
        },
        latency: Latencies {
            latency_p50_ms: Some(100.0),
            latency_p95_ms: Some(200.0),
            latency_p99_ms: Some(300.0),
        },
        latency_digest: vec![1, 2, 3],
        is_final: true,
        updated_at_ms: 0,
    }
}

#[tokio::test]
async fn user_and_grant_commands_run_without_the_jwt_secret_and_their_grants_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");

    let created = ok(cli(
        &db,
        &["create-user", "--email", "ada@example.com"],
        &format!("{PASSWORD}\n"),
    ));
    assert!(created.contains("\"email\":\"ada@example.com\""), "{created}");
    for tenant in ["café", "big corp", "acme"] {
        let out = ok(cli(
            &db,
            &["grant", "--email", "ada@example.com", "--tenant", tenant],
            "",
        ));
        assert!(
            out.starts_with(&format!("granted tenant {tenant} to ada@example.com")),
            "{out}"
        );
    }
    ok(cli(
        &db,
        &["revoke", "--email", "ada@example.com", "--tenant", "acme"],
        "",
    ));
    // The id rule of every entry point: a grant that breaks it names the key and fails.
    let refused = cli(
        &db,
        &["grant", "--email", "ada@example.com", "--tenant", "a/b"],
        "",
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("tenant: must not contain '/'"), "{stderr}");
    // A password of exactly 72 bytes is accepted here too.
    ok(cli(
        &db,
        &["create-user", "--email", "q72@example.com"],
        &format!("{}\n", "€".repeat(24)),
    ));

    // The service, with a secret, over the same file.
    let store = store::open_migrated(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<DailyMetric> = ["café", "big corp", "acme"]
        .into_iter()
        .map(|t| daily(t, time::macros::date!(2025 - 10 - 01)))
        .collect();
    store.upsert_daily_metrics(&rows).await.unwrap();
    let config = Config::for_tests("cli-test-secret-cli-test-secret-cli!", 4);
    let svc: Arc<AuthService> = AuthService::new(store, config).await.unwrap();
    let api = routes::routes(svc.clone());
    for (email, password) in [
        ("ada@example.com", PASSWORD.to_string()),
        ("q72@example.com", "€".repeat(24)),
    ] {
        let r = warp::test::request()
            .method("POST")
            .path("/api/v1/login")
            .header("content-type", "application/json")
            .body(json!({"login": email, "password": password}).to_string())
            .reply(&api)
            .await;
        assert_eq!(r.status(), 200, "{email}");
    }
    let token = svc
        .tokens()
        .issue(
            svc.store()
                .user_by_login("ada@example.com")
                .await
                .unwrap()
                .unwrap()
                .id,
            auth_api::tokens::now_secs(),
        )
        .token;
    let get = |path: String| {
        warp::test::request()
            .path(&path)
            .header("authorization", format!("Bearer {token}"))
            .reply(&api)
    };
    for (segment, tenant, status) in [
        ("caf%C3%A9", "café", 200),
        ("big%20corp", "big corp", 200),
        ("acme", "acme", 403),
    ] {
        let r = get(format!(
            "/api/v1/tenants/{segment}/metrics/daily?from=2025-10-01&to=2025-10-01"
        ))
        .await;
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(r.status(), status, "{segment}: {body}");
        if status == 200 {
            assert_eq!(body["tenant_id"], tenant);
            assert_eq!(body["rows"][0]["tenant_id"], tenant);
        }
    }
}

#[test]
fn serve_still_requires_the_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&dir.path().join("x.db"), &["check-config"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth_api.jwt_secret"), "{stderr}");
}
