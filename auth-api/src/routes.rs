//! The HTTP surface (warp): the route table, the auth middleware, JSON bodies and the
//! mapping of every failure to its response.
//!
//! [`ROUTES`] lists every (method, path) served; the OpenAPI document and the router are both
//! checked against it by tests, and metrics label requests with its templates.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use store::User;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::accounts::{LoginRequest, RegisterRequest, UserView};
use crate::dashboard::{AnomalyParams, DailyParams, WindowParams};
use crate::error::Rejected;
use crate::service::AuthService;
use crate::Error;

/// One route: method, path template (OpenAPI style, `{param}`), whether it needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Whether a bearer token is required.
    pub protected: bool,
}

const fn route(method: &'static str, path: &'static str, protected: bool) -> Route {
    Route {
        method,
        path,
        protected,
    }
}

/// Every route the service serves.
pub const ROUTES: &[Route] = &[
    route("POST", "/api/v1/register", false),
    route("POST", "/api/users/register", false),
    route("POST", "/api/v1/login", false),
    route("POST", "/api/auth/login", false),
    route("GET", "/api/v1/profile", true),
    route("GET", "/api/users/me", true),
    route("GET", "/api/v1/tenants", true),
    route("GET", "/api/v1/tenants/{tenant}/metrics/daily", true),
    route("GET", "/api/v1/tenants/{tenant}/anomalies", true),
    route("GET", "/api/v1/tenants/{tenant}/windows", true),
    route("GET", "/api/openapi.json", false),
    route("GET", "/healthz", false),
    route("GET", "/readyz", false),
    route("GET", "/metrics", false),
];

/// The metrics label of a request: `"<METHOD> <template>"` of the route it hits, or
/// `"unmatched"` (never the raw path: tenant ids would explode the label set).
pub fn route_label(method: &str, path: &str) -> &'static str {
    static LABELS: std::sync::OnceLock<Vec<(Route, String)>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| (*r, format!("{} {}", r.method, r.path)))
            .collect()
    });
    labels
        .iter()
        .find(|(r, _)| r.method == method && template_matches(r.path, path))
        .map(|(_, label)| label.as_str())
        .unwrap_or("unmatched")
}

/// Whether a concrete path fits a template (`{x}` matches one non-empty segment).
pub fn template_matches(template: &str, path: &str) -> bool {
    let mut t = template.trim_start_matches('/').split('/');
    let mut p = path.trim_start_matches('/').split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let param = ts.starts_with('{') && ts.ends_with('}');
                if !(param && !ps.is_empty() || ts == ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The methods served at a concrete path (for the `Allow` header of a `405`), in table order.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for r in ROUTES.iter().filter(|r| template_matches(r.path, path)) {
        if !methods.contains(&r.method) {
            methods.push(r.method);
        }
    }
    methods
}

/// A path parameter as the text it encodes: warp hands path segments over raw, so
/// `caf%C3%A9` is decoded here to `café` (once: `%25` gives a literal `%`; `+` stays `+`).
/// A `%` without two hex digits after it, or bytes that are not UTF-8 once decoded, are a
/// `400` naming the parameter.
pub fn decode_path_param(name: &str, raw: &str) -> crate::Result<String> {
    let bad = |message: String| Error::BadRequest {
        field: Some(name.to_string()),
        message: format!("{name}: {message}"),
    };
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => {
                    return Err(bad(format!(
                        "`%` at byte {i} of the path segment is not followed by two hex digits"
                    )))
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| {
        bad(format!(
            "the path segment is not UTF-8 once percent-decoded (invalid byte at {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The client address used for rate limiting: the TCP peer, or (only when trusted) the last
/// `X-Forwarded-For` entry, which is the one the trusted proxy appended.
pub fn client_address(
    remote: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trust_forwarded_for: bool,
) -> String {
    if trust_forwarded_for {
        if let Some(ip) = forwarded_for
            .and_then(|h| h.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
        {
            return ip.to_string();
        }
    }
    remote
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The field a serde message blames (`missing field `x``, `unknown field `x``).
fn blamed_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// A JSON body as `T`: `415` unless `application/json`, `400` naming the field when it does
/// not parse (unknown fields included).
pub fn parse_json<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> crate::Result<T> {
    let is_json = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let field = if path == "." || path == "?" || path.is_empty() {
            blamed_field(&message)
        } else {
            Some(path)
        };
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("body is not valid JSON: {message}")
            }
            // The position adds nothing to a named field.
            _ => {
                let suffix = format!(" at line {} column {}", inner.line(), inner.column());
                message
                    .strip_suffix(&suffix)
                    .map(str::to_string)
                    .unwrap_or(message)
            }
        };
        Error::BadRequest { field, message }
    })
}

fn parse_query<T: DeserializeOwned>(query: &str) -> crate::Result<T> {
    serde_urlencoded::from_str(query).map_err(|e| {
        let message = e.to_string();
        Error::BadRequest {
            field: blamed_field(&message),
            message: format!("query string: {message}"),
        }
    })
}

/// The body of a tenant route: the tenant's id next to the fields of the route's own body
/// (serialized straight from the rows, no JSON tree).
#[derive(serde::Serialize)]
struct TenantResponse<B> {
    tenant_id: String,
    #[serde(flatten)]
    body: B,
}

/// The body of the daily-metrics route, next to the tenant id.
#[derive(serde::Serialize)]
struct DailyBody {
    rows: Vec<crate::dashboard::DailyRow>,
}

/// The body of the anomalies route, next to the tenant id.
#[derive(serde::Serialize)]
struct AnomaliesBody {
    anomalies: Vec<schemas::Anomaly>,
}

/// The query of a `GET /api/v1/tenants/{tenant}/...` route and the service call it makes.
trait TenantQuery: DeserializeOwned + Send + 'static {
    /// What the route answers next to the tenant id.
    type Body: serde::Serialize + Send;

    /// The answer for `tenant`, granted to `user`.
    fn fetch<'a>(
        &'a self,
        svc: &'a AuthService,
        user: &'a User,
        tenant: &'a str,
    ) -> impl std::future::Future<Output = crate::Result<Self::Body>> + Send + 'a;
}

impl TenantQuery for DailyParams {
    type Body = DailyBody;

    async fn fetch(&self, svc: &AuthService, user: &User, tenant: &str) -> crate::Result<DailyBody> {
        let rows = svc.daily_metrics(user, tenant, self).await?;
        Ok(DailyBody { rows })
    }
}

impl TenantQuery for AnomalyParams {
    type Body = AnomaliesBody;

    async fn fetch(&self, svc: &AuthService, user: &User, tenant: &str) -> crate::Result<AnomaliesBody> {
        let anomalies = svc.anomalies(user, tenant, self).await?;
        Ok(AnomaliesBody { anomalies })
    }
}

impl TenantQuery for WindowParams {
    type Body = crate::dashboard::WindowsBody;

    async fn fetch(&self, svc: &AuthService, user: &User, tenant: &str) -> crate::Result<Self::Body> {
        svc.windows(user, tenant, self).await
    }
}

/// A tenant route: `GET` on `path` (its one parameter the percent-encoded tenant id) for an
/// authenticated user, the raw query parsed as `Q`, answered `200` with the tenant id and
/// `Q`'s body, or the error's response.
fn tenant_get<Q: TenantQuery>(
    path: impl Filter<Extract = (String,), Error = Rejection> + Clone,
    svc: &Arc<AuthService>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    path.and(warp::get())
        .and(with_service(svc))
        .and(authenticated(svc))
        .and(raw_query())
        .then(
            |tenant: String, svc: Arc<AuthService>, user: User, query: String| async move {
                let result = async {
                    let tenant = decode_path_param("tenant", &tenant)?;
                    let params: Q = parse_query(&query)?;
                    let body = params.fetch(&svc, &user, &tenant).await?;
                    Ok(TenantResponse {
                        tenant_id: tenant,
                        body,
                    })
                }
                .await;
                respond(StatusCode::OK, result)
            },
        )
}

fn json_reply<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

fn respond<T: serde::Serialize>(status: StatusCode, result: crate::Result<T>) -> Response {
    match result {
        Ok(value) => json_reply(status, &value),
        Err(e) => e.to_response(),
    }
}

fn with_service(
    svc: &Arc<AuthService>,
) -> impl Filter<Extract = (Arc<AuthService>,), Error = Infallible> + Clone {
    let svc = svc.clone();
    warp::any().map(move || svc.clone())
}

/// The auth middleware: the user of a valid bearer token, or a rejection that becomes `401`
/// with `WWW-Authenticate`.
pub fn authenticated(svc: &Arc<AuthService>) -> impl Filter<Extract = (User,), Error = Rejection> + Clone {
    with_service(svc)
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|svc: Arc<AuthService>, header: Option<String>| async move {
            svc.authenticate(header.as_deref()).await.map_err(Rejection::from)
        })
}

/// A JSON body of at most `limit` bytes as `T`.
fn json_body<T: DeserializeOwned + Send + 'static>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(|ct: Option<String>| async move {
            // 415 before reading (or limiting) the body.
            let is_json = ct
                .as_deref()
                .and_then(|c| c.split(';').next())
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
            if is_json {
                Ok(ct)
            } else {
                Err(Rejection::from(Error::UnsupportedMediaType))
            }
        })
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
        .and_then(|ct: Option<String>, body: Bytes| async move {
            parse_json::<T>(ct.as_deref(), &body).map_err(Rejection::from)
        })
}

fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Every route of the service, with request metrics and error recovery.
pub fn routes(svc: Arc<AuthService>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let limit = svc.config().max_body_bytes;
    let trust_xff = svc.config().trust_forwarded_for;

    let profile_path = warp::path!("api" / "v1" / "profile")
        .or(warp::path!("api" / "users" / "me"))
        .unify();
    let profile = profile_path
        .and(warp::get())
        .and(authenticated(&svc))
        .map(|user: User| {
            let mut r = json_reply(StatusCode::OK, &UserView::from(&user));
            r.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            r
        });

    let register_path = warp::path!("api" / "v1" / "register")
        .or(warp::path!("api" / "users" / "register"))
        .unify();
    let register = register_path
        .and(warp::post())
        .and(with_service(&svc))
        .and(json_body::<RegisterRequest>(limit))
        .then(|svc: Arc<AuthService>, req: RegisterRequest| async move {
            respond(StatusCode::CREATED, svc.register(req).await)
        });

    let login_path = warp::path!("api" / "v1" / "login")
        .or(warp::path!("api" / "auth" / "login"))
        .unify();
    let login = login_path
        .and(warp::post())
        .and(with_service(&svc))
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and(json_body::<LoginRequest>(limit))
        .then(
            move |svc: Arc<AuthService>,
                  remote: Option<SocketAddr>,
                  xff: Option<String>,
                  req: LoginRequest| async move {
                let client = client_address(remote, xff.as_deref(), trust_xff);
                let mut r = respond(StatusCode::OK, svc.login(req, &client).await);
                r.headers_mut()
                    .insert("cache-control", HeaderValue::from_static("no-store"));
                r
            },
        );

    let tenants = warp::path!("api" / "v1" / "tenants")
        .and(warp::get())
        .and(with_service(&svc))
        .and(authenticated(&svc))
        .then(|svc: Arc<AuthService>, user: User| async move {
            respond(
                StatusCode::OK,
                svc.tenants(&user)
                    .await
                    .map(|t| serde_json::json!({ "tenants": t })),
            )
        });

    let daily = tenant_get::<DailyParams>(
        warp::path!("api" / "v1" / "tenants" / String / "metrics" / "daily"),
        &svc,
    );
    let anomalies =
        tenant_get::<AnomalyParams>(warp::path!("api" / "v1" / "tenants" / String / "anomalies"), &svc);
    let windows =
        tenant_get::<WindowParams>(warp::path!("api" / "v1" / "tenants" / String / "windows"), &svc);

    let openapi = warp::path!("api" / "openapi.json").and(warp::get()).map(|| {
        warp::reply::with_header(crate::openapi::DOCUMENT, "content-type", "application/json").into_response()
    });
    let operations = ops::endpoints(svc.metrics().registry().clone(), readiness(&svc));

    let log_metrics = svc.metrics().clone();
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        log_metrics.observe_request(
            route_label(info.method().as_str(), info.path()),
            info.status().as_u16(),
            info.elapsed().as_secs_f64(),
        );
    });

    let served = profile
        .or(login)
        .unify()
        .or(register)
        .unify()
        .or(tenants)
        .unify()
        .or(daily)
        .unify()
        .or(anomalies)
        .unify()
        // Boxed: one more filter in this chain's type overflows the trait solver's recursion
        // limit in optimized builds.
        .or(windows.boxed())
        .unify()
        .or(crate::ui::routes().boxed())
        .unify()
        .or(openapi)
        .unify()
        .or(operations)
        .unify()
        .recover(recover)
        .unify()
        .or(warp::any().map(|| Error::NotFound.to_response()))
        .unify();
    warp::path::full()
        .and(served)
        .map(|path: warp::path::FullPath, mut r: Response| {
            if r.status() == StatusCode::METHOD_NOT_ALLOWED {
                let allow = allowed_methods(path.as_str()).join(", ");
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    r.headers_mut().insert("allow", value);
                }
            }
            r.headers_mut()
                .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            r
        })
        .with(log)
}

/// What `/readyz` awaits: the probe `store` (the store answers).
fn readiness(svc: &Arc<AuthService>) -> ops::Readiness {
    let svc = svc.clone();
    ops::Readiness::new().probe("store", move || {
        let svc = svc.clone();
        async move { svc.ready().await }
    })
}

/// Turns rejections into the one JSON error shape.
async fn recover(rejection: Rejection) -> Result<Response, Rejection> {
    let error = if let Some(Rejected(e)) = rejection.find::<Rejected>() {
        return Ok(e.to_response());
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Error::PayloadTooLarge
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        Error::LengthRequired
    } else if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        Error::UnsupportedMediaType
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Error::MethodNotAllowed
    } else if rejection.is_not_found() {
        Error::NotFound
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        Error::BadRequest {
            field: None,
            message: e.to_string(),
        }
    } else {
        return Err(rejection);
    };
    Ok(error.to_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_parameter() {
        assert!(template_matches(
            "/api/v1/tenants/{tenant}/anomalies",
            "/api/v1/tenants/acme/anomalies"
        ));
        assert!(!template_matches(
            "/api/v1/tenants/{tenant}/anomalies",
            "/api/v1/tenants//anomalies"
        ));
        assert!(!template_matches(
            "/api/v1/tenants/{tenant}/anomalies",
            "/api/v1/tenants/a/b/anomalies"
        ));
        assert!(template_matches("/healthz", "/healthz"));
        assert!(!template_matches("/healthz", "/healthz/x"));
        assert_eq!(
            route_label("GET", "/api/v1/tenants/acme/metrics/daily"),
            "GET /api/v1/tenants/{tenant}/metrics/daily"
        );
        assert_eq!(route_label("POST", "/api/v1/profile"), "unmatched");
        assert_eq!(route_label("GET", "/nope"), "unmatched");
    }

    #[test]
    fn allowed_methods_come_from_the_table() {
        assert_eq!(allowed_methods("/api/v1/profile"), ["GET"]);
        assert_eq!(allowed_methods("/api/v1/login"), ["POST"]);
        assert_eq!(allowed_methods("/api/v1/tenants/caf%C3%A9/anomalies"), ["GET"]);
        assert!(allowed_methods("/nope").is_empty());
    }

    #[test]
    fn path_params_are_percent_decoded_once() {
        let ok = |raw: &str| decode_path_param("tenant", raw).unwrap();
        assert_eq!(ok("acme"), "acme");
        assert_eq!(ok("caf%C3%A9"), "café");
        assert_eq!(ok("caf%c3%a9"), "café", "hex digits in either case");
        assert_eq!(ok("big%20corp"), "big corp");
        assert_eq!(ok("a+b"), "a+b", "`+` is a space only in query strings");
        assert_eq!(ok("caf%25C3%25A9"), "caf%C3%A9", "decoded once");
        assert_eq!(ok("acme%2F.."), "acme/..");
        assert_eq!(ok("%E2%82%AC"), "€");
        assert_eq!(ok(""), "");
        let bad = |raw: &str| match decode_path_param("tenant", raw) {
            Err(Error::BadRequest { field, message }) => {
                assert_eq!(field.as_deref(), Some("tenant"), "{raw}");
                message
            }
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(
            bad("caf%E9"),
            "tenant: the path segment is not UTF-8 once percent-decoded (invalid byte at 3)"
        );
        assert_eq!(
            bad("%C3"),
            "tenant: the path segment is not UTF-8 once percent-decoded (invalid byte at 0)"
        );
        for raw in ["%", "a%2", "%zz", "%%41", "%2"] {
            assert!(bad(raw).contains("is not followed by two hex digits"), "{raw}");
        }
    }

    proptest::proptest! {
        /// Any text survives being percent-encoded (every byte, or only the reserved ones)
        /// and decoded.
        #[test]
        fn decoding_inverts_encoding(text in "\\PC{0,20}", all in proptest::bool::ANY) {
            let encoded: String = text
                .bytes()
                .map(|b| {
                    if all || !(b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                        format!("%{b:02X}")
                    } else {
                        char::from(b).to_string()
                    }
                })
                .collect();
            proptest::prop_assert_eq!(decode_path_param("t", &encoded).unwrap(), text);
        }
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let xff = Some("203.0.113.9, 198.51.100.7");
        assert_eq!(client_address(Some(peer), xff, false), "10.1.2.3");
        assert_eq!(
            client_address(Some(peer), xff, true),
            "198.51.100.7",
            "the last hop"
        );
        assert_eq!(client_address(Some(peer), Some("garbage"), true), "10.1.2.3");
        assert_eq!(client_address(None, None, false), "unknown");
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: String,
            b: Option<u32>,
        }
        let field = |ct: Option<&str>, body: &str| match parse_json::<T>(ct, body.as_bytes()) {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let json = Some("application/json");
        assert_eq!(field(json, r#"{"a":"x","zz":1}"#).as_deref(), Some("zz"));
        assert_eq!(field(json, r#"{"b":1}"#).as_deref(), Some("a"));
        assert_eq!(field(json, r#"{"a":"x","b":"no"}"#).as_deref(), Some("b"));
        assert_eq!(field(json, r#"{"a":1}"#).as_deref(), Some("a"));
        assert_eq!(field(json, "{"), None);
        assert!(parse_json::<T>(Some("application/json; charset=utf-8"), br#"{"a":"x"}"#).is_ok());
        assert!(matches!(
            parse_json::<T>(Some("text/plain"), br#"{"a":"x"}"#),
            Err(Error::UnsupportedMediaType)
        ));
        assert!(matches!(
            parse_json::<T>(None, br#"{"a":"x"}"#),
            Err(Error::UnsupportedMediaType)
        ));
    }
}
