//! The crate's one error type and how each case is answered over HTTP: one JSON shape,
//! `{"error": "<code>", "message": "...", "field": "<name>"}` (`field` only when one is to
//! blame), a precise status, `WWW-Authenticate` on 401 and `Retry-After` on 429/503.

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::tokens::TokenError;

/// The realm announced in `WWW-Authenticate`.
pub const REALM: &str = "agentops";

/// Everything that can go wrong in the auth-api.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (not JSON, wrong types, unknown or missing fields, bad query).
    #[error("{message}")]
    BadRequest {
        /// The field to blame, if known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A well-formed value breaks a rule (email format, password length, username rules,
    /// date range).
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        message: String,
    },
    /// Registration: the email or username belongs to another account.
    #[error("{field} is already registered")]
    Taken {
        /// `email` or `username`.
        field: &'static str,
    },
    /// Login failed. Unknown account and wrong password are deliberately the same error.
    #[error("invalid login or password")]
    InvalidCredentials,
    /// No bearer token was sent.
    #[error("missing Authorization header: use `Authorization: Bearer <token>`")]
    MissingToken,
    /// The bearer token is not acceptable.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
    /// A valid token of a user that no longer exists.
    #[error("invalid token: the user no longer exists")]
    UnknownUser,
    /// The user has no grant for this tenant.
    #[error("no access to tenant `{tenant}`")]
    Forbidden {
        /// The tenant asked for.
        tenant: String,
    },
    /// Too many failed logins for this account or client.
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// The password hashing pool and its queue are full.
    #[error("too many logins in progress; retry in {retry_after_secs} s")]
    Overloaded {
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The body is not `application/json`.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The body exceeds `auth_api.max_body_bytes`.
    #[error("request body exceeds auth_api.max_body_bytes")]
    PayloadTooLarge,
    /// No `Content-Length` on a request with a body.
    #[error("send a Content-Length header")]
    LengthRequired,
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// The route exists with another method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A configuration value is not acceptable (start-up only).
    #[error("config key `{key}`: {message}")]
    Config {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An unexpected failure (bcrypt error, a task that panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tests: the field an [`Error::Invalid`] names (panics on anything else).
#[cfg(test)]
pub(crate) fn invalid_field(r: Result<impl std::fmt::Debug>) -> &'static str {
    match r {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: &'static str,
    /// A sentence for people.
    pub message: String,
    /// The request field to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Taken { .. } => StatusCode::CONFLICT,
            Error::InvalidCredentials | Error::MissingToken | Error::InvalidToken(_) | Error::UnknownUser => {
                StatusCode::UNAUTHORIZED
            }
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Overloaded { .. } | Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Config { .. } | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { .. } => "bad_request",
            Error::Invalid { .. } => "invalid_field",
            Error::Taken { .. } => "conflict",
            Error::InvalidCredentials => "invalid_credentials",
            Error::MissingToken | Error::InvalidToken(_) | Error::UnknownUser => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::RateLimited { .. } => "rate_limited",
            Error::Overloaded { .. } => "overloaded",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PayloadTooLarge => "body_too_large",
            Error::LengthRequired => "length_required",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Store(_) => "unavailable",
            Error::Config { .. } | Error::Internal(_) => "internal",
        }
    }

    /// The field to blame, if any.
    pub fn field(&self) -> Option<String> {
        match self {
            Error::BadRequest { field, .. } => field.clone(),
            Error::Invalid { field, .. } | Error::Taken { field } => Some(field.to_string()),
            _ => None,
        }
    }

    /// The message sent to the client: internal details (store, bcrypt) stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Store(_) => "the store is unavailable; retry later".into(),
            Error::Internal(_) | Error::Config { .. } => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.public_message(),
            field: self.field(),
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        match self {
            // RFC 6750 section 3: no error attribute when no credentials were sent.
            Error::MissingToken | Error::InvalidCredentials => Some(format!("Bearer realm=\"{REALM}\"")),
            Error::InvalidToken(_) | Error::UnknownUser => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                self.to_string().replace('"', "'")
            )),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_secs } | Error::Overloaded { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            Error::Store(_) => Some(5),
            _ => None,
        }
    }

    /// The complete HTTP response.
    pub fn to_response(&self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let mut response = warp::reply::with_status(warp::reply::json(&self.body()), status).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert("www-authenticate", value);
        }
        if let Some(secs) = self.retry_after() {
            headers.insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

/// An [`Error`] travelling through warp as a rejection (from filters such as the auth
/// middleware) until the recovery turns it into its response.
#[derive(Debug)]
pub struct Rejected(pub Error);

impl warp::reject::Reject for Rejected {}

impl From<Error> for warp::Rejection {
    fn from(e: Error) -> warp::Rejection {
        warp::reject::custom(Rejected(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_code_and_headers() {
        let r = Error::RateLimited { retry_after_secs: 7 }.to_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let r = Error::MissingToken.to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"agentops\"");
        let r = Error::InvalidToken(TokenError::Expired).to_response();
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
        assert_eq!(Error::Taken { field: "email" }.status(), 409);
        assert_eq!(Error::Taken { field: "email" }.field().as_deref(), Some("email"));
    }

    #[test]
    fn store_details_do_not_reach_the_client() {
        let e = Error::Store(store::Error::Scylla("node 10.0.0.7 down".into()));
        assert_eq!(e.status(), 503);
        assert!(!e.body().message.contains("10.0.0.7"));
    }
}
