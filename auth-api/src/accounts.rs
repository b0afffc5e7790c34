//! Accounts: the JSON of registration, login and profile, and the rules for emails and
//! usernames (pure).

use serde::{Deserialize, Serialize};
use store::User;
use time::format_description::well_known::Rfc3339;

use crate::passwords::check_password;
use crate::{Error, Result};

/// Longest email accepted (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Username length bounds, in characters.
pub const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;

/// `POST /api/v1/register`, `POST /api/users/register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address.
    pub email: String,
    /// Password: 8 characters to 72 bytes.
    pub password: String,
    /// Optional user name.
    #[serde(default)]
    pub username: Option<String>,
}

/// `POST /api/v1/login`, `POST /api/auth/login`: `login` or one of its aliases `email` /
/// `username` names the account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email or username.
    #[serde(alias = "email", alias = "username")]
    pub login: String,
    /// Password.
    pub password: String,
}

/// A user as the API shows it: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// User id.
    pub id: String,
    /// Email (lowercase).
    pub email: String,
    /// User name (lowercase), or null.
    pub username: Option<String>,
    /// Registration time, RFC 3339 UTC.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.to_string(),
            email: u.email.clone(),
            username: u.username.clone(),
            created_at: rfc3339_ms(u.created_at_ms),
        }
    }
}

/// The answer to a successful login.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Epoch milliseconds as RFC 3339 (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A registration that passed every rule: normalized email and username, checked password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Lowercase email.
    pub email: String,
    /// Lowercase username.
    pub username: Option<String>,
    /// The password (to be hashed).
    pub password: String,
}

impl NewAccount {
    /// Applies the rules to a request; the error names the first field that breaks one.
    pub fn parse(req: RegisterRequest) -> Result<NewAccount> {
        let email = normalize_email(&req.email)?;
        let username = match req.username.as_deref() {
            None => None,
            Some(name) => Some(normalize_username(name)?),
        };
        check_password(&req.password)?;
        Ok(NewAccount {
            email,
            username,
            password: req.password,
        })
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// An email address in its stored form (lowercase), or why it is not one. Deliberately
/// simpler than RFC 5322: `local@domain`, local part of printable ASCII without quotes,
/// spaces, `(),:;<>@[\]`; a domain of at least two dot-separated labels of letters, digits and
/// inner hyphens, with an alphabetic top-level label.
pub fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.to_lowercase();
    if email.is_empty() {
        return Err(invalid("email", "must not be empty"));
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(invalid(
            "email",
            format!("must be at most {MAX_EMAIL_BYTES} bytes"),
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid("email", "must look like name@example.com"));
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"(),:;<>@[\\]".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    if !(local_ok && domain_ok) {
        return Err(invalid("email", "must look like name@example.com"));
    }
    Ok(email)
}

/// A username in its stored form (lowercase), or why it is not one: 3 to 32 ASCII letters,
/// digits, `_`, `.` or `-`, starting with a letter (so it never contains `@` and never looks
/// like an email or an id).
pub fn normalize_username(raw: &str) -> Result<String> {
    let name = raw.to_ascii_lowercase();
    let n = name.chars().count();
    if !USERNAME_CHARS.contains(&n) {
        return Err(invalid(
            "username",
            format!(
                "must be {} to {} characters",
                USERNAME_CHARS.start(),
                USERNAME_CHARS.end()
            ),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid("username", "must start with a letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(invalid(
            "username",
            "may contain only letters, digits, `_`, `.` and `-`",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::error::invalid_field as field;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("Ada.Lovelace+x@Example.co.UK").unwrap(),
            "ada.lovelace+x@example.co.uk"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@exa_mple.com",
            "ada@-example.com",
            "ada@example.c0m",
            "ada@example..com",
            "a da@example.com",
            ".ada@example.com",
            "ada..l@example.com",
            "\"ada\"@example.com",
            "adä@example.com",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(250)),
        ] {
            assert_eq!(field(normalize_email(bad)), "email", "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(normalize_username("Ada_L.1-x").unwrap(), "ada_l.1-x");
        for bad in ["ab", &"a".repeat(33), "1ada", "_ada", "ada@x", "ada l", "adä", ""] {
            assert_eq!(field(normalize_username(bad)), "username", "{bad}");
        }
    }

    #[test]
    fn registration_names_the_first_bad_field() {
        let req = |email: &str, password: &str, username: Option<&str>| RegisterRequest {
            email: email.into(),
            password: password.into(),
            username: username.map(String::from),
        };
        assert_eq!(field(NewAccount::parse(req("bad", "short", Some("x")))), "email");
        assert_eq!(
            field(NewAccount::parse(req("a@b.io", "short", Some("x")))),
            "username"
        );
        assert_eq!(field(NewAccount::parse(req("a@b.io", "short", None))), "password");
        let ok = NewAccount::parse(req("A@B.io", "long enough", Some("Ada"))).unwrap();
        assert_eq!(
            (ok.email.as_str(), ok.username.as_deref()),
            ("a@b.io", Some("ada"))
        );
    }

    #[test]
    fn the_view_has_no_hash_and_an_rfc3339_time() {
        let u = User {
            id: store::Uuid::from_u128(1),
            email: "a@b.io".into(),
            username: None,
            password_hash: "$2b$12$secret".into(),
            created_at_ms: 1_764_000_000_123,
            updated_at_ms: 0,
        };
        let json = serde_json::to_string(&UserView::from(&u)).unwrap();
        assert!(!json.contains("2b$12"), "{json}");
        assert!(
            json.contains("\"created_at\":\"2025-11-24T16:00:00.123Z\""),
            "{json}"
        );
    }

    proptest! {
        /// Whatever is accepted is stored lowercase, stays accepted (idempotent), and has
        /// exactly one `@`.
        #[test]
        fn accepted_emails_are_normal(local in "[A-Za-z0-9._%+-]{1,20}", domain in "[A-Za-z0-9]{1,10}", tld in "[A-Za-z]{2,6}") {
            let raw = format!("{local}@{domain}.{tld}");
            if let Ok(e) = normalize_email(&raw) {
                prop_assert_eq!(&e, &raw.to_lowercase());
                prop_assert_eq!(normalize_email(&e).unwrap(), e.clone());
                prop_assert_eq!(e.matches('@').count(), 1);
            }
        }

        #[test]
        fn usernames_never_contain_at(name in "\\PC{0,40}") {
            if let Ok(n) = normalize_username(&name) {
                prop_assert!(!n.contains('@'));
                prop_assert_eq!(normalize_username(&n).unwrap(), n.clone());
            }
        }
    }
}
