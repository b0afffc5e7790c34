//! The HTTP surface: every route and error path with exact statuses and bodies, the JWT attack
//! cases through the middleware, tenant isolation, concurrent registration, rate limiting.
//! The store is a private in-memory SQLite; bcrypt runs at cost 4 (the cost is a parameter,
//! the code path is the same).

use std::net::SocketAddr;
use std::sync::Arc;

use auth_api::config::Config;
use auth_api::routes::{self, ROUTES};
use auth_api::service::AuthService;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use schemas::kpi::{Counts, Latencies};
use schemas::{Anomaly, FeatureContribution};
use serde_json::{json, Value};
use store::sqlite::SqliteStore;
use store::{DailyMetric, Store, Uuid};
use warp::http::HeaderMap;

const SECRET: &str = "test-secret-test-secret-test-secret!";

struct App {
    svc: Arc<AuthService>,
}

async fn app_with(edit: impl FnOnce(&mut Config)) -> App {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(":memory:").await.unwrap());
    store.migrate().await.unwrap();
    let mut config = Config::for_tests(SECRET, 4);
    edit(&mut config);
    App {
        svc: AuthService::new(store, config).await.unwrap(),
    }
}

async fn app() -> App {
    app_with(|_| {}).await
}

struct Res {
    status: u16,
    body: Value,
    headers: HeaderMap,
}

impl App {
    async fn send(&self, req: warp::test::RequestBuilder) -> Res {
        let res = req.reply(&routes::routes(self.svc.clone())).await;
        Res {
            status: res.status().as_u16(),
            body: serde_json::from_slice(res.body()).unwrap_or(Value::Null),
            headers: res.headers().clone(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Res {
        self.send(
            warp::test::request()
                .method("POST")
                .path(path)
                .header("content-type", "application/json")
                .remote_addr(peer("10.0.0.1"))
                .body(body.to_string()),
        )
        .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Res {
        let mut req = warp::test::request().method("GET").path(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req).await
    }

    async fn register(&self, email: &str, username: Option<&str>) -> Value {
        let mut body = json!({"email": email, "password": "correct horse battery"});
        if let Some(u) = username {
            body["username"] = json!(u);
        }
        let r = self.post("/api/v1/register", &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    async fn token(&self, login: &str) -> String {
        let r = self
            .post(
                "/api/v1/login",
                &json!({"login": login, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

fn err(code: &str, message: &str, field: Option<&str>) -> Value {
    let mut v = json!({"error": code, "message": message});
    if let Some(f) = field {
        v["field"] = json!(f);
    }
    v
}

// ---------------------------------------------------------------- registration

#[tokio::test]
async fn register_answers_201_with_the_user_and_never_the_hash() {
    let app = app().await;
    for (path, email, name) in [
        ("/api/v1/register", "Ada@Example.com", Some("Ada_L")),
        ("/api/users/register", "grace@example.com", None),
    ] {
        let r = app
            .post(
                path,
                &json!({"email": email, "password": "correct horse battery", "username": name}),
            )
            .await;
        assert_eq!(r.status, 201, "{path}: {}", r.body);
        let obj = r.body.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "email", "id", "username"]);
        assert_eq!(r.body["email"], email.to_lowercase());
        assert_eq!(r.body["username"], json!(name.map(str::to_lowercase)));
        Uuid::parse_str(r.body["id"].as_str().unwrap()).unwrap();
        assert!(r.body["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(!r.body.to_string().contains("$2b$"));
        let stored = app.svc.store().user_by_login(email).await.unwrap().unwrap();
        assert!(
            stored.password_hash.starts_with("$2b$04$"),
            "bcrypt at the configured cost"
        );
    }
}

#[tokio::test]
async fn invalid_registrations_name_the_field() {
    let app = app().await;
    let long = "p".repeat(73);
    let cases = [
        (
            json!({"email": "not-an-email", "password": "correct horse"}),
            422,
            err(
                "invalid_field",
                "email: must look like name@example.com",
                Some("email"),
            ),
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            422,
            err(
                "invalid_field",
                "password: must be at least 8 characters",
                Some("password"),
            ),
        ),
        (
            json!({"email": "a@example.com", "password": long}),
            422,
            err(
                "invalid_field",
                "password: must be at most 72 bytes (UTF-8); longer passwords are not truncated but refused",
                Some("password"),
            ),
        ),
        (
            json!({"email": "a@example.com", "password": "correct horse", "username": "1x"}),
            422,
            err(
                "invalid_field",
                "username: must be 3 to 32 characters",
                Some("username"),
            ),
        ),
        (
            json!({"email": "a@example.com", "password": "correct horse", "username": "ada@home"}),
            422,
            err(
                "invalid_field",
                "username: may contain only letters, digits, `_`, `.` and `-`",
                Some("username"),
            ),
        ),
        (
            json!({"email": "a@example.com", "password": "correct horse", "role": "admin"}),
            400,
            err(
                "bad_request",
                "unknown field `role`, expected one of `email`, `password`, `username`",
                Some("role"),
            ),
        ),
        (
            json!({"email": "a@example.com"}),
            400,
            err("bad_request", "missing field `password`", Some("password")),
        ),
        (
            json!({"email": 5, "password": "correct horse"}),
            400,
            err(
                "bad_request",
                "invalid type: integer `5`, expected a string",
                Some("email"),
            ),
        ),
    ];
    for (body, status, expected) in cases {
        let r = app.post("/api/v1/register", &body).await;
        assert_eq!((r.status, &r.body), (status, &expected), "{body}");
    }
    assert!(app
        .svc
        .store()
        .user_by_login("a@example.com")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_password_of_exactly_72_bytes_registers_and_logs_in_and_73_is_refused() {
    let app = app().await;
    let cases = [
        ("q72@example.com", "q".repeat(72)),
        ("euro72@example.com", "€".repeat(24)),
        ("q71@example.com", "q".repeat(71)),
        ("mixed72@example.com", format!("{}{}", "€".repeat(23), "qqq")),
    ];
    for (email, password) in &cases {
        let r = app
            .post("/api/v1/register", &json!({"email": email, "password": password}))
            .await;
        assert_eq!(r.status, 201, "{} bytes: {}", password.len(), r.body);
        let login = |password: String| json!({"login": email, "password": password});
        let r = app.post("/api/v1/login", &login(password.clone())).await;
        assert_eq!(r.status, 200, "{} bytes", password.len());
        // Every byte counts: without the last character, or with one more, no match.
        let mut shorter = password.clone();
        shorter.pop();
        assert_eq!(app.post("/api/v1/login", &login(shorter)).await.status, 401);
        let longer = format!("{password}q");
        assert_eq!(app.post("/api/v1/login", &login(longer)).await.status, 401);
    }
    let too_long = err(
        "invalid_field",
        "password: must be at most 72 bytes (UTF-8); longer passwords are not truncated but refused",
        Some("password"),
    );
    for password in ["q".repeat(73), format!("{}q", "€".repeat(24)), "€".repeat(25)] {
        let r = app
            .post(
                "/api/v1/register",
                &json!({"email": "long@example.com", "password": password}),
            )
            .await;
        assert_eq!((r.status, &r.body), (422, &too_long), "{} bytes", password.len());
    }
}

#[tokio::test]
async fn bodies_must_be_json_of_bounded_size() {
    let app = app_with(|c| c.max_body_bytes = 1024).await;
    let r = app
        .send(
            warp::test::request()
                .method("POST")
                .path("/api/v1/register")
                .header("content-type", "application/json")
                .body("{\"email\": "),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"], "bad_request");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .starts_with("body is not valid JSON"));

    let r = app
        .send(
            warp::test::request()
                .method("POST")
                .path("/api/v1/register")
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            415,
            err(
                "unsupported_media_type",
                "send the body as application/json",
                None
            )
        )
    );

    let big = json!({"email": "a@example.com", "password": "x".repeat(2000)});
    let r = app.post("/api/v1/register", &big).await;
    assert_eq!(
        (r.status, r.body),
        (
            413,
            err(
                "body_too_large",
                "request body exceeds auth_api.max_body_bytes",
                None
            )
        )
    );
    let r = app.post("/api/v1/login", &big).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn a_taken_email_or_username_is_409_naming_it() {
    let app = app().await;
    app.register("ada@example.com", Some("ada")).await;
    let r = app
        .post(
            "/api/users/register",
            &json!({"email": "ADA@example.com", "password": "correct horse", "username": "other"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (409, err("conflict", "email is already registered", Some("email")))
    );
    let r = app
        .post(
            "/api/v1/register",
            &json!({"email": "new@example.com", "password": "correct horse", "username": "ADA"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            409,
            err("conflict", "username is already registered", Some("username"))
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registration_of_one_email_yields_exactly_one_user() {
    // A queue long enough for every request: this test is about uniqueness, not overload.
    let app = app_with(|c| c.bcrypt_max_queue = 64).await;
    let filter = routes::routes(app.svc.clone());
    let requests = (0..24).map(|i| {
        let filter = filter.clone();
        tokio::spawn(async move {
            warp::test::request()
                .method("POST")
                .path(if i % 2 == 0 { "/api/v1/register" } else { "/api/users/register" })
                .header("content-type", "application/json")
                .body(json!({"email": "race@example.com", "password": "correct horse", "username": format!("racer{i}")}).to_string())
                .reply(&filter)
                .await
        })
    });
    let mut statuses: Vec<u16> = Vec::new();
    for r in futures::future::join_all(requests).await {
        let r = r.unwrap();
        if r.status() == 409 {
            let body: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(body["field"], "email");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 23, "{statuses:?}");
    let user = app
        .svc
        .store()
        .user_by_login("race@example.com")
        .await
        .unwrap()
        .unwrap();
    let winners = (0..24)
        .filter(|i| user.username.as_deref() == Some(format!("racer{i}").as_str()))
        .count();
    assert_eq!(winners, 1);
}

// ---------------------------------------------------------------- login

#[tokio::test]
async fn login_by_email_or_username_on_both_routes_returns_a_valid_token() {
    let app = app().await;
    let user = app.register("ada@example.com", Some("ada")).await;
    for (path, key, login) in [
        ("/api/v1/login", "login", "ada@example.com"),
        ("/api/auth/login", "email", "ADA@Example.com"),
        ("/api/v1/login", "username", "Ada"),
    ] {
        let r = app
            .post(path, &json!({key: login, "password": "correct horse battery"}))
            .await;
        assert_eq!(r.status, 200, "{path} {key}: {}", r.body);
        assert_eq!(r.body["token_type"], "Bearer");
        assert_eq!(r.body["expires_in"], 3600);
        assert_eq!(r.headers["cache-control"], "no-store");
        let token = r.body["access_token"].as_str().unwrap();
        let (id, claims) = app
            .svc
            .tokens()
            .verify(token, auth_api::tokens::now_secs())
            .unwrap();
        assert_eq!(id.to_string(), user["id"].as_str().unwrap());
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("agentops-auth", "agentops-dashboard")
        );
        assert_eq!(claims.exp - claims.iat, 3600);
        assert!(!claims.jti.is_empty());
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same_and_both_pay_for_bcrypt() {
    let app = app().await;
    app.register("ada@example.com", None).await;
    let bcrypt_runs = |app: &App| {
        let (text, _) = app.svc.metrics().render();
        let text = String::from_utf8(text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("auth_api_bcrypt_seconds_count "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = bcrypt_runs(&app);
    let wrong = app
        .post(
            "/api/v1/login",
            &json!({"login": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/login",
            &json!({"login": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body,
        err("invalid_credentials", "invalid login or password", None)
    );
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    assert_eq!(
        wrong.headers["www-authenticate"],
        unknown.headers["www-authenticate"]
    );
    assert_eq!(
        bcrypt_runs(&app) - before,
        2,
        "the unknown user verified the dummy hash"
    );
    let r = app
        .post("/api/v1/login", &json!({"login": "ada@example.com"}))
        .await;
    assert_eq!((r.status, r.body["field"].clone()), (400, json!("password")));
}

#[tokio::test]
async fn repeated_failures_for_one_account_are_429_with_retry_after_even_with_the_right_password() {
    let app = app_with(|c| c.login_max_failures_per_account = 3).await;
    app.register("ada@example.com", None).await;
    app.register("grace@example.com", None).await;
    for i in 0..3 {
        let r = app
            .send(
                warp::test::request()
                    .method("POST")
                    .path("/api/v1/login")
                    .header("content-type", "application/json")
                    .remote_addr(peer(&format!("10.0.1.{i}")))
                    .body(json!({"login": "ada@example.com", "password": "guess number"}).to_string()),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = app
        .post(
            "/api/v1/login",
            &json!({"login": "ADA@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 300, "900 s / 3 failures: one refills every 300 s");
    // Other accounts are not affected.
    app.token("grace@example.com").await; // asserts 200
}

async fn attempt(app: &App, login: String, xff: &str) -> Res {
    app.send(
        warp::test::request()
            .method("POST")
            .path("/api/v1/login")
            .header("content-type", "application/json")
            .header("x-forwarded-for", xff)
            .remote_addr(peer("192.0.2.1"))
            .body(json!({"login": login, "password": "guess number"}).to_string()),
    )
    .await
}

#[tokio::test]
async fn repeated_failures_from_one_client_are_429_and_forwarded_for_is_not_trusted_by_default() {
    let app = app_with(|c| c.login_max_failures_per_client = 2).await;
    assert_eq!(attempt(&app, "a@example.com".into(), "1.1.1.1").await.status, 401);
    assert_eq!(attempt(&app, "b@example.com".into(), "2.2.2.2").await.status, 401);
    let r = attempt(&app, "c@example.com".into(), "3.3.3.3").await;
    assert_eq!(r.status, 429, "a spoofed X-Forwarded-For does not escape");
    assert!(r.headers.contains_key("retry-after"));

    let trusted = app_with(|c| {
        c.login_max_failures_per_client = 2;
        c.trust_forwarded_for = true;
    })
    .await;
    for i in 0..4 {
        let r = attempt(
            &trusted,
            format!("u{i}@example.com"),
            &format!("9.9.9.9, 10.0.0.{i}"),
        )
        .await;
        assert_eq!(r.status, 401, "behind a trusted proxy each client has its budget");
    }
}

// ---------------------------------------------------------------- middleware and profile

#[tokio::test]
async fn profile_on_both_routes_shows_the_user_without_the_hash() {
    let app = app().await;
    let user = app.register("ada@example.com", Some("ada")).await;
    let token = app.token("ada").await;
    for path in ["/api/v1/profile", "/api/users/me"] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!((r.status, &r.body), (200, &user), "{path}");
        assert!(!r.body.to_string().contains("$2b$"));
        assert!(r.body.get("password_hash").is_none());
        assert_eq!(r.headers["cache-control"], "no-store");
    }
}

fn forge(header: Value, claims: Value, key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let message = format!("{}.{}", b64(&header), b64(&claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    format!(
        "{message}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn the_middleware_refuses_every_bad_credential_with_401_and_www_authenticate() {
    let app = app().await;
    let user = app.register("ada@example.com", None).await;
    let id = user["id"].as_str().unwrap().to_string();
    let now = auth_api::tokens::now_secs();
    let claims = json!({
        "sub": id, "iss": "agentops-auth", "aud": "agentops-dashboard",
        "iat": now - 10, "exp": now + 600, "jti": "x"
    });
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let key = SECRET.as_bytes();
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let good = forge(hs256.clone(), claims.clone(), key);
    assert_eq!(
        app.get("/api/v1/profile", Some(&good)).await.status,
        200,
        "control"
    );
    let parts: Vec<&str> = good.split('.').collect();
    let tampered_claims = URL_SAFE_NO_PAD.encode(with("sub", json!(Uuid::new_v4().to_string())).to_string());
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "no header",
            None,
            "missing Authorization header: use `Authorization: Bearer <token>`",
        ),
        (
            "basic scheme",
            Some(format!("Basic {good}")),
            "missing Authorization header: use `Authorization: Bearer <token>`",
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.",
                &good[..good.rfind('.').unwrap()].replacen(
                    parts[0],
                    &URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                    1
                )
            )),
            "invalid token: algorithm not accepted",
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                forge(
                    hs256.clone(),
                    claims.clone(),
                    b"some-other-key-some-other-key-123"
                )
            )),
            "invalid token: bad signature",
        ),
        (
            "alg confusion HS512",
            Some(format!(
                "Bearer {}",
                forge(json!({"alg": "HS512"}), claims.clone(), key)
            )),
            "invalid token: algorithm not accepted",
        ),
        (
            "alg confusion RS256",
            Some(format!(
                "Bearer {}",
                forge(json!({"alg": "RS256"}), claims.clone(), key)
            )),
            "invalid token: algorithm not accepted",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                forge(hs256.clone(), with("exp", json!(now - 60)), key)
            )),
            "invalid token: token expired",
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                forge(hs256.clone(), with("nbf", json!(now + 600)), key)
            )),
            "invalid token: token not yet valid",
        ),
        (
            "missing exp",
            Some(format!("Bearer {}", forge(hs256.clone(), without("exp"), key))),
            "invalid token: missing or invalid claim `exp`",
        ),
        (
            "wrong aud",
            Some(format!(
                "Bearer {}",
                forge(hs256.clone(), with("aud", json!("other")), key)
            )),
            "invalid token: wrong audience",
        ),
        (
            "wrong iss",
            Some(format!(
                "Bearer {}",
                forge(hs256.clone(), with("iss", json!("other")), key)
            )),
            "invalid token: wrong issuer",
        ),
        (
            "tampered payload",
            Some(format!("Bearer {}.{}.{}", parts[0], tampered_claims, parts[2])),
            "invalid token: bad signature",
        ),
        (
            "malformed",
            Some("Bearer not.a.jwt".into()),
            "invalid token: malformed token",
        ),
        (
            "malformed header",
            Some(format!(
                "Bearer {}.{}.{}",
                URL_SAFE_NO_PAD.encode("{oops"),
                parts[1],
                parts[2]
            )),
            "invalid token: malformed token",
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            "invalid token: malformed token",
        ),
    ];
    for (name, header, message) in cases {
        let mut req = warp::test::request().method("GET").path("/api/v1/profile");
        if let Some(h) = &header {
            req = req.header("authorization", h.as_str());
        }
        let r = app.send(req).await;
        assert_eq!(
            (r.status, &r.body),
            (401, &err("unauthorized", message, None)),
            "{name}"
        );
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("Bearer realm=\"agentops\""), "{name}: {www}");
        assert_eq!(
            www.contains("error=\"invalid_token\""),
            header.is_some() && !name.starts_with("basic"),
            "{name}: {www}"
        );
    }
}

#[tokio::test]
async fn a_deleted_users_token_stops_working() {
    let app = app().await;
    app.register("ada@example.com", None).await;
    let token = app.token("ada@example.com").await;
    assert_eq!(app.get("/api/users/me", Some(&token)).await.status, 200);
    app.svc.delete_user("ada@example.com").await.unwrap();
    let r = app.get("/api/users/me", Some(&token)).await;
    assert_eq!(
        (r.status, r.body),
        (
            401,
            err("unauthorized", "invalid token: the user no longer exists", None)
        )
    );
}

#[tokio::test]
async fn without_the_user_cache_a_deletion_by_another_process_is_seen_at_once() {
    let app = app_with(|c| c.user_cache_ttl = std::time::Duration::ZERO).await;
    let user = app.register("ada@example.com", None).await;
    let token = app.token("ada@example.com").await;
    assert_eq!(app.get("/api/v1/profile", Some(&token)).await.status, 200);
    // Straight through the store, as the CLI in another process does.
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    assert!(app.svc.store().delete_user(id).await.unwrap());
    assert_eq!(app.get("/api/v1/profile", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn a_grant_revoked_by_another_process_stops_within_the_cache_ttl() {
    for ttl_ms in [0, 60_000] {
        let app = app_with(|c| c.user_cache_ttl = std::time::Duration::from_millis(ttl_ms)).await;
        seed(&app).await;
        let user = app.register("ada@example.com", None).await;
        app.svc.grant("ada@example.com", "acme").await.unwrap();
        let token = app.token("ada@example.com").await;
        let path = "/api/v1/tenants/acme/metrics/daily?from=2025-10-01&to=2025-10-03";
        assert_eq!(app.get(path, Some(&token)).await.status, 200);
        // Straight through the store, as the CLI in another process does.
        let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
        assert!(app.svc.store().revoke_tenant(id, "acme").await.unwrap());
        let expected = if ttl_ms == 0 { 403 } else { 200 };
        assert_eq!(app.get(path, Some(&token)).await.status, expected, "ttl {ttl_ms}");
        // Through this process: at once, whatever the TTL.
        app.svc.grant("ada@example.com", "acme").await.unwrap();
        assert_eq!(app.get(path, Some(&token)).await.status, 200);
        assert!(app.svc.revoke("ada@example.com", "acme").await.unwrap());
        assert_eq!(app.get(path, Some(&token)).await.status, 403, "ttl {ttl_ms}");
    }
}

// ---------------------------------------------------------------- dashboards

fn daily(tenant: &str, agent: &str, day: time::Date, total: i64) -> DailyMetric {
    DailyMetric {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        day,
        counts: Counts {
            tasks_total: total,
            succeeded: total - 1,
            failed: 1,
            cancelled: 0,
            tasks_with_intervention: 1,
            interventions: 1,
            cost_micros: total * 100,
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

fn anomaly(tenant: &str, agent: &str, start: i64, score: f64) -> Anomaly {
    Anomaly {
        anomaly_id: format!("{tenant}-{agent}-{start}"),
        window_id: format!("w-{start}"),
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        window_start: start,
        window_end: start + 60_000,
        lstm_score: 0.1,
        transformer_score: 0.1,
        lstm_normalized: score,
        transformer_normalized: score,
        ensemble_score: score,
        threshold: 3.0,
        is_anomaly: score >= 3.0,
        top_features: vec![FeatureContribution {
            feature: "latency_p95".into(),
            contribution: 1.0,
        }],
        model_version: "m1".into(),
        scored_at: start,
        statistical_score: None,
        explanation: Vec::new(),
    }
}

const OCT_1_MS: i64 = 1_759_276_800_000;
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

async fn seed(app: &App) {
    use time::macros::date;
    let mut rows = Vec::new();
    let mut anomalies = Vec::new();
    for (i, t) in TENANTS.iter().enumerate() {
        for day in [
            date!(2025 - 10 - 01),
            date!(2025 - 10 - 02),
            date!(2025 - 10 - 03),
        ] {
            rows.push(daily(t, "*", day, 10 + i as i64));
            rows.push(daily(t, "bot", day, 5 + i as i64));
        }
        for (k, score) in [1.0, 3.5, 7.0].into_iter().enumerate() {
            anomalies.push(anomaly(t, "bot", OCT_1_MS + k as i64 * 60_000, score));
        }
    }
    app.svc.store().upsert_daily_metrics(&rows).await.unwrap();
    app.svc.store().upsert_anomalies(&anomalies).await.unwrap();
}

#[tokio::test]
async fn tenant_isolation_no_user_reads_a_tenant_not_granted_to_it() {
    let app = app().await;
    seed(&app).await;
    let grants: [(&str, &[&str]); 4] = [
        ("u1@example.com", &["acme"]),
        ("u2@example.com", &["globex", "initech"]),
        ("u3@example.com", &[]),
        ("u4@example.com", &["acme", "umbrella"]),
    ];
    let mut tokens = Vec::new();
    for (email, tenants) in grants {
        app.register(email, None).await;
        for t in tenants {
            app.svc.grant(email, t).await.unwrap();
        }
        tokens.push(app.token(email).await);
    }
    // Revoked grants stop at once.
    app.svc.grant("u3@example.com", "acme").await.unwrap();
    assert!(app.svc.revoke("u3@example.com", "acme").await.unwrap());

    let mut reads = 0;
    for ((email, granted), token) in grants.iter().zip(&tokens) {
        let r = app.get("/api/v1/tenants", Some(token)).await;
        assert_eq!(
            (r.status, &r.body),
            (200, &json!({"tenants": granted})),
            "{email}"
        );
        for tenant in TENANTS.iter().chain(["nosuch", "ACME", "acme "].iter()) {
            let segment = tenant.replace(' ', "%20");
            let paths = [
                format!("/api/v1/tenants/{segment}/metrics/daily?from=2025-10-01&to=2025-10-03"),
                format!("/api/v1/tenants/{segment}/metrics/daily?from=2025-10-01&to=2025-10-03&agent=bot"),
                format!(
                    "/api/v1/tenants/{segment}/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z"
                ),
            ];
            for path in paths {
                let r = app.get(&path, Some(token)).await;
                if granted.contains(tenant) {
                    assert_eq!(r.status, 200, "{email} {path}: {}", r.body);
                    let items = r.body["rows"]
                        .as_array()
                        .or(r.body["anomalies"].as_array())
                        .unwrap();
                    assert!(!items.is_empty(), "{email} {path}");
                    for item in items {
                        assert_eq!(item["tenant_id"], *tenant, "{email} {path}");
                    }
                    reads += 1;
                } else {
                    assert_eq!(
                        (r.status, &r.body),
                        (
                            403,
                            &err("forbidden", &format!("no access to tenant `{tenant}`"), None)
                        ),
                        "{email} {path}"
                    );
                }
            }
        }
    }
    assert_eq!(
        reads,
        5 * 3,
        "every granted (user, tenant) pair was read on every route"
    );
}

/// Seeds daily rows (roll-up and `big bot`, three days) and three verdicts for each tenant.
async fn seed_tenants(app: &App, tenants: &[&str]) {
    use time::macros::date;
    let mut rows = Vec::new();
    let mut anomalies = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        for day in [
            date!(2025 - 10 - 01),
            date!(2025 - 10 - 02),
            date!(2025 - 10 - 03),
        ] {
            rows.push(daily(t, "*", day, 10 + i as i64));
            rows.push(daily(t, "big bot", day, 5 + i as i64));
        }
        for (k, score) in [1.0, 3.5, 7.0].into_iter().enumerate() {
            anomalies.push(anomaly(t, "big bot", OCT_1_MS + k as i64 * 60_000, score));
        }
    }
    app.svc.store().upsert_daily_metrics(&rows).await.unwrap();
    app.svc.store().upsert_anomalies(&anomalies).await.unwrap();
}

/// Reads a tenant through `segment` (its percent-encoded form) on both dashboard routes:
/// the status of each and the tenant ids of the items returned.
async fn read_tenant(app: &App, token: &str, segment: &str) -> Vec<(u16, Value, Vec<String>)> {
    let mut out = Vec::new();
    for path in [
        format!("/api/v1/tenants/{segment}/metrics/daily?from=2025-10-01&to=2025-10-03"),
        format!("/api/v1/tenants/{segment}/metrics/daily?from=2025-10-01&to=2025-10-03&agent=big%20bot"),
        format!("/api/v1/tenants/{segment}/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z"),
    ] {
        let r = app.get(&path, Some(token)).await;
        let items = r.body["rows"]
            .as_array()
            .or(r.body["anomalies"].as_array())
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["tenant_id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push((r.status, r.body, items));
    }
    out
}

#[tokio::test]
async fn tenant_ids_are_percent_decoded_on_every_dashboard_route() {
    let app = app().await;
    let tenants = ["café", "big corp", "caf%C3%A9", "a+b", "acme"];
    seed_tenants(&app, &tenants).await;
    app.register("ada@example.com", None).await;
    app.register("bob@example.com", None).await;
    for t in ["café", "big corp", "a+b"] {
        app.svc.grant("ada@example.com", t).await.unwrap();
    }
    // Bob's tenant is literally named `caf%C3%A9`: not café.
    app.svc.grant("bob@example.com", "caf%C3%A9").await.unwrap();
    let ada = app.token("ada@example.com").await;
    let bob = app.token("bob@example.com").await;

    for (segment, tenant) in [
        ("caf%C3%A9", "café"),
        ("caf%c3%a9", "café"),
        ("big%20corp", "big corp"),
        ("big%20c%6Frp", "big corp"),
        ("a+b", "a+b"),
        ("a%2Bb", "a+b"),
    ] {
        let reads = read_tenant(&app, &ada, segment).await;
        for (i, (status, body, items)) in reads.into_iter().enumerate() {
            assert_eq!(status, 200, "{segment} #{i}: {body}");
            assert_eq!(body["tenant_id"], tenant, "{segment} #{i}");
            // 2 series x 3 days; one of them; 3 verdicts.
            assert_eq!(items.len(), [6, 3, 3][i], "{segment} #{i}");
            assert!(items.iter().all(|t| t == tenant), "{segment} #{i}: {items:?}");
        }
    }
    let r = app.get("/api/v1/tenants", Some(&ada)).await;
    assert_eq!(r.body, json!({"tenants": ["a+b", "big corp", "café"]}));

    // Decoded once: `%25` is a literal `%`. Ada (granted café) cannot read the tenant named
    // `caf%C3%A9`, and Bob (granted that one) cannot read café.
    for (status, body, _) in read_tenant(&app, &ada, "caf%25C3%25A9").await {
        assert_eq!(
            (status, body),
            (403, err("forbidden", "no access to tenant `caf%C3%A9`", None))
        );
    }
    for (status, body, _) in read_tenant(&app, &bob, "caf%C3%A9").await {
        assert_eq!(
            (status, body),
            (403, err("forbidden", "no access to tenant `café`", None))
        );
    }
    for (status, body, items) in read_tenant(&app, &bob, "caf%25C3%25A9").await {
        assert_eq!(status, 200, "{body}");
        assert!(
            items.iter().all(|t| t == "caf%C3%A9") && !items.is_empty(),
            "{items:?}"
        );
    }
    // The raw `+` of a path is not a space.
    for (status, body, _) in read_tenant(&app, &bob, "big+corp").await {
        assert_eq!(
            (status, body),
            (403, err("forbidden", "no access to tenant `big+corp`", None))
        );
    }

    // Segments that are not UTF-8 once decoded, or not an encoding at all: 400 naming the
    // tenant; decoded ids that break the id rule: 422, like every other entry point.
    let cases = [
        (
            "caf%E9",
            400,
            err(
                "bad_request",
                "tenant: the path segment is not UTF-8 once percent-decoded (invalid byte at 3)",
                Some("tenant"),
            ),
        ),
        (
            "caf%C3",
            400,
            err(
                "bad_request",
                "tenant: the path segment is not UTF-8 once percent-decoded (invalid byte at 3)",
                Some("tenant"),
            ),
        ),
        (
            "100%",
            400,
            err(
                "bad_request",
                "tenant: `%` at byte 3 of the path segment is not followed by two hex digits",
                Some("tenant"),
            ),
        ),
        (
            "acme%2F..",
            422,
            err("invalid_field", "tenant: must not contain '/'", Some("tenant")),
        ),
        (
            "%20%20",
            422,
            err("invalid_field", "tenant: must not be empty", Some("tenant")),
        ),
        (
            &"%C3%A9".repeat(65),
            422,
            err(
                "invalid_field",
                "tenant: is 130 bytes, at most 128 allowed",
                Some("tenant"),
            ),
        ),
    ];
    for (segment, status, expected) in cases {
        for (got, body, _) in read_tenant(&app, &ada, segment).await {
            assert_eq!((got, &body), (status, &expected), "{segment}");
        }
    }
}

#[tokio::test]
async fn grants_follow_the_id_rule() {
    let app = app().await;
    app.register("ada@example.com", None).await;
    for tenant in ["café", "big corp", &"é".repeat(64)] {
        app.svc.grant("ada@example.com", tenant).await.unwrap();
    }
    for bad in ["", "  ", "a/b", &"x".repeat(129)] {
        let e = app.svc.grant("ada@example.com", bad).await.unwrap_err();
        assert!(
            matches!(e, auth_api::Error::Invalid { field: "tenant", .. }),
            "{bad:?}: {e:?}"
        );
    }
}

#[tokio::test]
async fn dashboard_queries_filter_and_validate() {
    let app = app().await;
    seed(&app).await;
    app.register("ada@example.com", None).await;
    app.svc.grant("ada@example.com", "acme").await.unwrap();
    let token = app.token("ada@example.com").await;

    let r = app
        .get(
            "/api/v1/tenants/acme/metrics/daily?from=2025-10-02&to=2025-10-03&agent=*",
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200);
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["day"], "2025-10-02");
    assert_eq!(rows[0]["agent_id"], "*");
    assert_eq!(rows[0]["tasks_total"], 10);
    assert_eq!(rows[0]["success_rate"], 0.9);
    assert!(rows[0].get("latency_digest").is_none());

    let r = app
        .get(
            "/api/v1/tenants/acme/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z&min_score=3.5",
            Some(&token),
        )
        .await;
    let scores: Vec<f64> = r.body["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ensemble_score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores, vec![3.5, 7.0]);

    let cases = [
        (
            "/api/v1/tenants/acme/metrics/daily?to=2025-10-03",
            400,
            err("bad_request", "query string: missing field `from`", Some("from")),
        ),
        (
            "/api/v1/tenants/acme/metrics/daily",
            400,
            err("bad_request", "query string: missing field `from`", Some("from")),
        ),
        (
            "/api/v1/tenants/acme/metrics/daily?from=2025-10-01&to=2025-10-03&limit=5",
            400,
            err(
                "bad_request",
                "query string: unknown field `limit`, expected one of `from`, `to`, `agent`",
                Some("limit"),
            ),
        ),
        (
            "/api/v1/tenants/acme/metrics/daily?from=10/01/2025&to=2025-10-03",
            422,
            err("invalid_field", "from: must be a date YYYY-MM-DD", Some("from")),
        ),
        (
            "/api/v1/tenants/acme/metrics/daily?from=2025-10-03&to=2025-10-01",
            422,
            err("invalid_field", "to: must not be before `from`", Some("to")),
        ),
        (
            "/api/v1/tenants/acme/anomalies?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z&min_score=high",
            400,
            err("bad_request", "query string: invalid float literal", None),
        ),
        (
            "/api/v1/tenants/acme/anomalies?from=yesterday&to=2025-10-02T00:00:00Z",
            422,
            err(
                "invalid_field",
                "from: must be an RFC 3339 time like 2025-10-01T00:00:00Z",
                Some("from"),
            ),
        ),
    ];
    for (path, status, body) in cases {
        let r = app.get(path, Some(&token)).await;
        assert_eq!((r.status, &r.body), (status, &body), "{path}");
    }
    // Without a token: 401 before anything else.
    let r = app
        .get(
            "/api/v1/tenants/acme/metrics/daily?from=2025-10-01&to=2025-10-03",
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}

// ---------------------------------------------------------------- operations

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!((r.status, r.body), (200, json!({"status": "ok"})));
    let r = app.get("/readyz", None).await;
    assert_eq!((r.status, r.body), (200, json!({"store": true})));
    let r = app.get("/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        serde_json::from_str::<Value>(auth_api::openapi::DOCUMENT).unwrap()
    );

    app.get("/api/v1/profile", None).await;
    let res = warp::test::request()
        .path("/metrics")
        .reply(&routes::routes(app.svc.clone()))
        .await;
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(res.body().to_vec()).unwrap();
    assert!(
        text.contains(r#"auth_api_requests_total{route="GET /api/v1/profile",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"auth_api_token_rejections_total{reason="missing"} 1"#),
        "{text}"
    );
    assert!(text.contains("auth_api_bcrypt_queued 0"));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let app = app().await;
    let r = app.get("/api/v2/profile", None).await;
    assert_eq!((r.status, r.body), (404, err("not_found", "no such route", None)));
    let r = app
        .send(warp::test::request().method("DELETE").path("/api/v1/profile"))
        .await;
    assert_eq!(
        (r.status, r.body),
        (
            405,
            err("method_not_allowed", "method not allowed on this route", None)
        )
    );
    assert_eq!(r.headers["allow"], "GET");
    let r = app.get("/api/v1/login", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    for route in ROUTES {
        let path = route.path.replace("{tenant}", "caf%C3%A9");
        let method = if route.method == "GET" { "POST" } else { "PUT" };
        let r = app.send(warp::test::request().method(method).path(&path)).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.headers["allow"], route.method, "{method} {path}");
    }
    assert!(app
        .get("/api/v2/profile", None)
        .await
        .headers
        .get("allow")
        .is_none());
}

/// The statuses the document lists for a route.
fn documented(route: &routes::Route) -> Vec<u16> {
    let doc: Value = serde_json::from_str(auth_api::openapi::DOCUMENT).unwrap();
    doc["paths"][route.path][route.method.to_lowercase()]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn every_error_a_route_answers_is_in_its_openapi_entry() {
    let app = app_with(|c| c.max_body_bytes = 1024).await;
    app.register("ada@example.com", None).await;
    app.svc.grant("ada@example.com", "acme").await.unwrap();
    let token = app.token("ada@example.com").await;
    let mut checked = 0;
    for route in ROUTES {
        let path = |tenant: &str| route.path.replace("{tenant}", tenant);
        let mut answers = Vec::new();
        if route.method == "POST" {
            for (content_type, body) in [
                ("text/plain", "{}".to_string()),
                ("application/json", "{".to_string()),
                ("application/json", "{}".to_string()),
                (
                    "application/json",
                    format!("{{\"email\": \"{}\"}}", "x".repeat(2000)),
                ),
            ] {
                let req = warp::test::request()
                    .method("POST")
                    .path(&path("acme"))
                    .header("content-type", content_type)
                    .remote_addr(peer("10.0.0.9"))
                    .body(body);
                answers.push(app.send(req).await.status);
            }
        }
        if route.protected {
            answers.push(app.get(&path("acme"), None).await.status);
        }
        if route.path.contains("{tenant}") {
            for (tenant, query) in [
                ("initech", "?from=2025-10-01&to=2025-10-02"),
                ("acme", "?limit=1"),
                ("acme", "?from=2025-10-01&to=yesterday"),
                ("caf%E9", "?from=2025-10-01&to=2025-10-02"),
            ] {
                answers.push(
                    app.get(&format!("{}{query}", path(tenant)), Some(&token))
                        .await
                        .status,
                );
            }
        }
        let listed = documented(route);
        for status in answers {
            assert!(
                listed.contains(&status),
                "{} {} answers {status}, its OpenAPI entry lists {listed:?}",
                route.method,
                route.path
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 4 + 6 + 3 * 4);
}

#[tokio::test]
async fn the_router_serves_every_route_of_the_table_and_nothing_else_under_api() {
    let app = app().await;
    app.register("ada@example.com", None).await;
    let token = app.token("ada@example.com").await;
    for route in ROUTES {
        let path = route.path.replace("{tenant}", "acme");
        let mut req = warp::test::request()
            .method(route.method)
            .path(&path)
            .header("authorization", format!("Bearer {token}"));
        if route.method == "POST" {
            req = req.header("content-type", "application/json").body("{}");
        }
        let r = app.send(req).await;
        assert!(
            r.status != 404 && r.status != 405,
            "{} {} answered {}",
            route.method,
            route.path,
            r.status
        );
        // Protected routes refuse a request without a token.
        if route.protected {
            let r = app
                .send(warp::test::request().method(route.method).path(&path))
                .await;
            assert_eq!(r.status, 401, "{} {}", route.method, route.path);
        }
    }
}

#[tokio::test]
async fn serves_on_a_socket_and_shuts_down_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(auth_api::run(listener, app.svc.clone(), async {
        let _ = stopped.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    stop.send(()).unwrap();
    server.await.unwrap();
}

// ---------------------------------------------------------------- KPI windows and the page

fn kpi_window(tenant: &str, agent: &str, start: i64, flagged: Option<bool>) -> store::KpiWindowRow {
    store::KpiWindowRow {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        window_start: start,
        window_end: start + 900_000,
        revision: 0,
        counts: Counts {
            tasks_total: 20,
            succeeded: 15,
            failed: 5,
            cancelled: 0,
            tasks_with_intervention: 4,
            interventions: 6,
            cost_micros: 50_000,
        },
        latency: Latencies {
            latency_p50_ms: Some(300.0),
            latency_p95_ms: Some(1_500.0),
            latency_p99_ms: Some(2_500.0),
        },
        verdict: flagged.map(|is_anomaly| store::WindowVerdict {
            lstm_score: 1.0,
            transformer_score: 2.0,
            statistical_score: Some(9.0),
            ensemble_score: if is_anomaly { 6.5 } else { 0.5 },
            threshold: 3.0,
            is_anomaly,
            model_version: "m1".into(),
            explanation: vec![schemas::KpiExplanation {
                kpi: "success_rate".into(),
                observed: 0.75,
                expected: 0.9,
                low: 0.85,
                high: 0.95,
                evidence: 9.0,
            }],
        }),
        updated_at_ms: time::OffsetDateTime::now_utc().unix_timestamp() * 1_000,
    }
}

#[tokio::test]
async fn kpi_windows_are_scoped_validated_and_ordered() {
    let app = app().await;
    let rows = vec![
        kpi_window("acme", "crm", OCT_1_MS, None),
        kpi_window("acme", "bot", OCT_1_MS + 900_000, Some(true)),
        kpi_window("acme", "bot", OCT_1_MS, Some(false)),
        kpi_window("globex", "bot", OCT_1_MS, Some(true)),
    ];
    app.svc.store().upsert_kpi_windows(&rows, 86_400).await.unwrap();
    app.register("ada@example.com", None).await;
    app.svc.grant("ada@example.com", "acme").await.unwrap();
    let token = app.token("ada@example.com").await;
    let path = "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z";
    let r = app.get(path, Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["tenant_id"], "acme");
    let windows = r.body["windows"].as_array().unwrap();
    let keys: Vec<(i64, &str)> = windows
        .iter()
        .map(|w| {
            (
                w["window_start"].as_i64().unwrap(),
                w["agent_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [(OCT_1_MS, "bot"), (OCT_1_MS, "crm"), (OCT_1_MS + 900_000, "bot")]
    );
    assert_eq!(windows[0]["success_rate"], 0.75);
    assert_eq!(windows[0]["cost_per_task_micros"], 2_500.0);
    assert_eq!(windows[0]["verdict"]["is_anomaly"], false);
    assert!(windows[1]["verdict"].is_null(), "not scored: {}", windows[1]);
    assert_eq!(windows[2]["verdict"]["ensemble_score"], 6.5);
    assert_eq!(windows[2]["verdict"]["explanation"][0]["kpi"], "success_rate");
    let flagged = windows[2].clone();
    let r = app.get(&format!("{path}&agent=crm"), Some(&token)).await;
    assert_eq!(r.body["windows"].as_array().unwrap().len(), 1);
    // The same windows as columns (what the page reads): each field once, in the same order.
    let r = app.get(&format!("{path}&layout=columns"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["tenant_id"], "acme");
    assert!(r.body.get("windows").is_none(), "{}", r.body);
    let c = &r.body["columns"];
    assert_eq!(c["agents"], json!(["bot", "crm"]));
    assert_eq!(c["agent"], json!([0, 1, 0]));
    assert_eq!(c["window_start"], json!([OCT_1_MS, OCT_1_MS, OCT_1_MS + 900_000]));
    assert_eq!(c["success_rate"], json!([0.75, 0.75, 0.75]));
    assert_eq!(c["cost_per_task_micros"], json!([2_500.0, 2_500.0, 2_500.0]));
    assert_eq!(c["ensemble_score"], json!([0.5, null, 6.5]));
    assert_eq!(c["is_anomaly"], json!([false, false, true]));
    assert_eq!(c["flagged"], json!([flagged]));

    // The same 403 as the other routes, for another tenant and for one that does not exist.
    for tenant in ["globex", "nobody"] {
        let r = app
            .get(
                &format!(
                    "/api/v1/tenants/{tenant}/windows?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z"
                ),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 403, "{tenant}: {}", r.body);
    }
    let cases = [
        (
            "/api/v1/tenants/acme/windows?from=2025-10-01&to=2025-10-02T00:00:00Z",
            422,
            err(
                "invalid_field",
                "from: must be an RFC 3339 time like 2025-10-01T00:00:00Z",
                Some("from"),
            ),
        ),
        (
            "/api/v1/tenants/acme/windows?from=2025-10-02T00:00:00Z&to=2025-10-01T00:00:00Z",
            422,
            err("invalid_field", "to: must be after `from`", Some("to")),
        ),
        (
            "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-11-01T00:00:00.001Z",
            422,
            err("invalid_field", "to: at most 31 days per query", Some("to")),
        ),
        (
            "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z&agent=a%2Fb",
            422,
            err("invalid_field", "agent: must not contain '/'", Some("agent")),
        ),
        (
            "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-10-02T00:00:00Z&layout=table",
            422,
            err(
                "invalid_field",
                "layout: must be `rows` or `columns`",
                Some("layout"),
            ),
        ),
        (
            "/api/v1/tenants/acme/windows?to=2025-10-02T00:00:00Z",
            400,
            err("bad_request", "query string: missing field `from`", Some("from")),
        ),
    ];
    for (path, status, body) in cases {
        let r = app.get(path, Some(&token)).await;
        assert_eq!((r.status, &r.body), (status, &body), "{path}");
    }
    // Exactly 31 days is allowed.
    let r = app
        .get(
            "/api/v1/tenants/acme/windows?from=2025-10-01T00:00:00Z&to=2025-11-01T00:00:00Z",
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get(path, None).await.status, 401);
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_a_strict_csp() {
    let app = app().await;
    for path in ["/", "/ui"] {
        let r = app.send(warp::test::request().method("GET").path(path)).await;
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.headers["location"], "/ui/");
    }
    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        (
            "/ui/vendor/uplot/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let res = warp::test::request()
            .method("GET")
            .path(path)
            .reply(&routes::routes(app.svc.clone()))
            .await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'self'; script-src 'self'; style-src 'self';"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(res.headers()["x-frame-options"], "DENY");
        assert!(!res.body().is_empty());
    }
    // Revalidation: the file's tag answers 304 without a body, another tag the file.
    let routes = routes::routes(app.svc.clone());
    let fresh = warp::test::request()
        .method("GET")
        .path("/ui/app.js")
        .reply(&routes)
        .await;
    assert_eq!(fresh.headers()["cache-control"], "no-cache");
    let etag = fresh.headers()["etag"].to_str().unwrap().to_string();
    let cached = warp::test::request()
        .method("GET")
        .path("/ui/app.js")
        .header("if-none-match", &etag)
        .reply(&routes)
        .await;
    assert_eq!(cached.status(), 304);
    assert!(cached.body().is_empty());
    assert_eq!(cached.headers()["etag"].to_str().unwrap(), etag);
    assert!(cached.headers().contains_key("content-security-policy"));
    let other = warp::test::request()
        .method("GET")
        .path("/ui/app.js")
        .header("if-none-match", "\"0123456789abcdef\"")
        .reply(&routes)
        .await;
    assert_eq!(other.status(), 200);
    assert_eq!(other.body(), fresh.body());
    let r = app
        .send(warp::test::request().method("GET").path("/ui/secret.txt"))
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .send(warp::test::request().method("GET").path("/ui/../Cargo.toml"))
        .await;
    assert_eq!(r.status, 404);
}
