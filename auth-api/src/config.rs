//! The service's own view of `[auth_api]`: checked once at start-up, then plain values.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Error, Result};

/// Everything the service needs from the settings, validated.
#[derive(Clone)]
pub struct Config {
    /// Address of the API.
    pub listen: SocketAddr,
    /// HS256 key (at least 32 bytes).
    pub jwt_secret: Vec<u8>,
    /// `iss` of issued tokens, required on verification.
    pub jwt_issuer: String,
    /// `aud` of issued tokens, required on verification.
    pub jwt_audience: String,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`.
    pub jwt_leeway: Duration,
    /// bcrypt cost.
    pub bcrypt_cost: u32,
    /// bcrypt jobs at once (resolved: at least 1).
    pub bcrypt_max_concurrent: usize,
    /// bcrypt jobs waiting at most.
    pub bcrypt_max_queue: usize,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Failed-login burst per account.
    pub login_max_failures_per_account: u32,
    /// Failed-login burst per client address.
    pub login_max_failures_per_client: u32,
    /// Window in which the failure allowances recover.
    pub login_failure_window: Duration,
    /// Whether the last `X-Forwarded-For` entry is the client address.
    pub trust_forwarded_for: bool,
    /// How long the middleware reuses a user read from the store (zero: never).
    pub user_cache_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("jwt_secret", &"***")
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("token_ttl", &self.token_ttl)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .field("bcrypt_max_concurrent", &self.bcrypt_max_concurrent)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::Config {
        key,
        message: message.into(),
    }
}

/// `auth_api.bcrypt_cost`, validated: all that `auth-api create-user` needs of `[auth_api]`
/// (it signs no token, so it runs without `auth_api.jwt_secret`).
pub fn bcrypt_cost(s: &settings::AuthApi) -> Result<u32> {
    if !(4..=31).contains(&s.bcrypt_cost) {
        return Err(invalid(
            "auth_api.bcrypt_cost",
            format!("{} is outside 4..=31", s.bcrypt_cost),
        ));
    }
    Ok(s.bcrypt_cost)
}

impl Config {
    /// Validates `[auth_api]`; `cpus` is the number of CPUs (passed in: pure).
    pub fn from_settings(s: &settings::AuthApi, cpus: usize) -> Result<Config> {
        let secret = s.require_jwt_secret().map_err(|e| match e {
            settings::Error::Invalid { message, .. } => invalid("auth_api.jwt_secret", message),
            other => invalid("auth_api.jwt_secret", other.to_string()),
        })?;
        if s.jwt_issuer.trim().is_empty() {
            return Err(invalid("auth_api.jwt_issuer", "must not be empty"));
        }
        if s.jwt_audience.trim().is_empty() {
            return Err(invalid("auth_api.jwt_audience", "must not be empty"));
        }
        let bcrypt_cost = bcrypt_cost(s)?;
        if s.token_ttl_secs == 0 || s.token_ttl_secs > 86_400 {
            return Err(invalid("auth_api.token_ttl_secs", "must be in 1..=86400"));
        }
        if s.jwt_leeway_secs > 300 {
            return Err(invalid("auth_api.jwt_leeway_secs", "must be at most 300"));
        }
        if s.max_body_bytes < 1024 {
            return Err(invalid("auth_api.max_body_bytes", "must be at least 1024"));
        }
        if s.login_max_failures_per_account == 0 {
            return Err(invalid(
                "auth_api.login_max_failures_per_account",
                "must be at least 1",
            ));
        }
        if s.login_max_failures_per_client == 0 {
            return Err(invalid(
                "auth_api.login_max_failures_per_client",
                "must be at least 1",
            ));
        }
        if s.user_cache_ttl_ms > 60_000 {
            return Err(invalid("auth_api.user_cache_ttl_ms", "must be at most 60000"));
        }
        if s.login_failure_window_secs == 0 {
            return Err(invalid("auth_api.login_failure_window_secs", "must be positive"));
        }
        let bcrypt_max_concurrent = match s.bcrypt_max_concurrent {
            0 => cpus.saturating_sub(1).max(1),
            n => n,
        };
        Ok(Config {
            listen: s.listen,
            jwt_secret: secret.expose().as_bytes().to_vec(),
            jwt_issuer: s.jwt_issuer.clone(),
            jwt_audience: s.jwt_audience.clone(),
            token_ttl: Duration::from_secs(s.token_ttl_secs),
            jwt_leeway: Duration::from_secs(s.jwt_leeway_secs),
            bcrypt_cost,
            bcrypt_max_concurrent,
            bcrypt_max_queue: s.bcrypt_max_queue,
            max_body_bytes: s.max_body_bytes,
            login_max_failures_per_account: s.login_max_failures_per_account,
            login_max_failures_per_client: s.login_max_failures_per_client,
            login_failure_window: Duration::from_secs(s.login_failure_window_secs),
            trust_forwarded_for: s.trust_forwarded_for,
            user_cache_ttl: Duration::from_millis(s.user_cache_ttl_ms),
        })
    }

    /// A configuration for tests and benchmarks: the defaults with this secret and cost.
    pub fn for_tests(secret: &str, bcrypt_cost: u32) -> Config {
        let env = std::collections::HashMap::from([
            ("AGENTOPS__AUTH_API__JWT_SECRET".to_string(), secret.to_string()),
            (
                "AGENTOPS__AUTH_API__BCRYPT_COST".to_string(),
                bcrypt_cost.to_string(),
            ),
        ]);
        let settings = settings::Settings::load(None, &env).expect("default settings load");
        Config::from_settings(&settings.auth_api, 2).expect("test config is valid")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config> {
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (format!("AGENTOPS__AUTH_API__{k}"), v.to_string()))
            .collect();
        env.entry("AGENTOPS__AUTH_API__JWT_SECRET".into())
            .or_insert_with(|| "s".repeat(32));
        let settings = settings::Settings::load(None, &env).unwrap();
        Config::from_settings(&settings.auth_api, 2)
    }

    #[test]
    fn defaults_are_valid_and_leave_a_core_free() {
        let c = load(&[]).unwrap();
        assert_eq!(c.bcrypt_cost, 12);
        assert_eq!(c.token_ttl, Duration::from_secs(3600));
        assert_eq!(c.bcrypt_max_concurrent, 1, "2 CPUs: 1 for bcrypt");
        assert!(!c.trust_forwarded_for);
        let settings = settings::Settings::load(
            None,
            &HashMap::from([("AGENTOPS__AUTH_API__JWT_SECRET".into(), "s".repeat(32))]),
        )
        .unwrap();
        assert_eq!(
            Config::from_settings(&settings.auth_api, 16)
                .unwrap()
                .bcrypt_max_concurrent,
            15
        );
        assert_eq!(
            Config::from_settings(&settings.auth_api, 1)
                .unwrap()
                .bcrypt_max_concurrent,
            1
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |r: Result<Config>| match r {
            Err(Error::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(load(&[("JWT_SECRET", "short")])), "auth_api.jwt_secret");
        assert_eq!(key(load(&[("JWT_ISSUER", " ")])), "auth_api.jwt_issuer");
        assert_eq!(
            key(load(&[("TOKEN_TTL_SECS", "100000")])),
            "auth_api.token_ttl_secs"
        );
        assert_eq!(
            key(load(&[("JWT_LEEWAY_SECS", "3600")])),
            "auth_api.jwt_leeway_secs"
        );
        assert_eq!(
            key(load(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0")])),
            "auth_api.login_max_failures_per_account"
        );
    }

    #[test]
    fn the_secret_is_not_printed() {
        let c = load(&[("JWT_SECRET", &"k".repeat(40))]).unwrap();
        assert!(!format!("{c:?}").contains("kkkk"));
    }
}
