//! [`AuthService`]: what the routes and the CLI do, over the store, the bcrypt pool, the token
//! keys and the login limiter. No HTTP types here.

use std::sync::{Arc, Mutex};

use schemas::time::now_ms;
use schemas::Anomaly;
use store::{Store, User};

use crate::accounts::{LoginRequest, RegisterRequest, TokenResponse, UserView};
use crate::admin;
use crate::config::Config;
use crate::dashboard::{
    self, AnomalyParams, DailyParams, DailyRow, WindowColumns, WindowLayout, WindowParams, WindowRow,
    WindowsBody,
};
use crate::metrics::Metrics;
use crate::passwords::{Hasher, MAX_PASSWORD_BYTES};
use crate::rate_limit::{LoginLimiter, DEFAULT_CAPACITY};
use crate::tokens::{now_secs, Tokens};
use crate::user_cache::{GrantCache, UserCache};
use crate::{Error, Result};

/// The service state shared by every request.
pub struct AuthService {
    store: Arc<dyn Store>,
    hasher: Hasher,
    tokens: Tokens,
    limiter: Mutex<LoginLimiter>,
    users: Mutex<UserCache>,
    grants: Mutex<GrantCache>,
    metrics: Metrics,
    config: Config,
}

/// Users held by the middleware's cache at most.
const USER_CACHE_CAPACITY: usize = 100_000;

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// The service over `store` (migrated) with `config`. Computes the dummy bcrypt hash (one
    /// bcrypt run, off the async runtime).
    pub async fn new(store: Arc<dyn Store>, config: Config) -> Result<Arc<AuthService>> {
        let metrics = Metrics::new();
        let (cost, slots, queue) = (
            config.bcrypt_cost,
            config.bcrypt_max_concurrent,
            config.bcrypt_max_queue,
        );
        let hasher = tokio::task::spawn_blocking(move || Hasher::new(cost, slots, queue))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??
            .with_metrics(metrics.clone());
        let tokens = Tokens::new(
            &config.jwt_secret,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.token_ttl,
            config.jwt_leeway,
        );
        let limiter = LoginLimiter::new(
            config.login_max_failures_per_account,
            config.login_max_failures_per_client,
            config.login_failure_window,
            DEFAULT_CAPACITY,
        );
        Ok(Arc::new(AuthService {
            store,
            hasher,
            tokens,
            limiter: Mutex::new(limiter),
            users: Mutex::new(UserCache::new(
                config.user_cache_ttl.as_millis() as u64,
                USER_CACHE_CAPACITY,
            )),
            grants: Mutex::new(GrantCache::new(
                config.user_cache_ttl.as_millis() as u64,
                USER_CACHE_CAPACITY,
            )),
            metrics,
            config,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics (with the pool gauges sampled now).
    pub fn metrics(&self) -> &Metrics {
        self.metrics.bcrypt_queued.set(self.hasher.queued() as i64);
        self.metrics.bcrypt_running.set(self.hasher.running() as i64);
        &self.metrics
    }

    /// The token keys (tests and the benchmark issue tokens directly).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Registers a user: rules, bcrypt, store (which keeps email and username unique).
    pub async fn register(&self, req: RegisterRequest) -> Result<UserView> {
        let outcome = self.register_inner(req).await;
        let label = match &outcome {
            Ok(_) => "created",
            Err(Error::Invalid { .. }) => "invalid",
            Err(Error::Taken { .. }) => "taken",
            Err(Error::Overloaded { .. }) => "overloaded",
            Err(_) => "error",
        };
        self.metrics.registrations.with_label_values(&[label]).inc();
        outcome
    }

    async fn register_inner(&self, req: RegisterRequest) -> Result<UserView> {
        admin::create_user(self.store.as_ref(), &self.hasher, req).await
    }

    /// Logs in with email or username and password from client address `client`.
    pub async fn login(&self, req: LoginRequest, client: &str) -> Result<TokenResponse> {
        let outcome = self.login_inner(req, client).await;
        let label = match &outcome {
            Ok(_) => "success",
            Err(Error::InvalidCredentials) => "invalid_credentials",
            Err(Error::RateLimited { .. }) => "rate_limited",
            Err(Error::Overloaded { .. }) => "overloaded",
            Err(_) => "error",
        };
        self.metrics.logins.with_label_values(&[label]).inc();
        outcome
    }

    async fn login_inner(&self, req: LoginRequest, client: &str) -> Result<TokenResponse> {
        let login = store::normalize_login(req.login.trim());
        if login.is_empty() || login.len() > 254 || req.password.len() > 4 * MAX_PASSWORD_BYTES {
            // Nothing that could exist: no lookup, but still counted against the client.
            self.limit_failure(&format!("login:{login}"), client)?;
            return Err(Error::InvalidCredentials);
        }
        let user = self.store.user_by_login(&login).await?;
        let account = match &user {
            Some(u) => format!("user:{}", u.id),
            None => format!("login:{login}"),
        };
        let now = now_ms() as u64;
        if let Err(limited) = self.limiter().check(&account, client, now) {
            return Err(Error::RateLimited {
                retry_after_secs: limited.retry_after_secs(),
            });
        }
        let matches = self
            .hasher
            .verify(req.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        match user {
            Some(user) if matches => {
                self.limiter().record_success(&account);
                let issued = self.tokens.issue(user.id, now_secs());
                tracing::info!(user_id = %user.id, jti = %issued.jti, "login");
                Ok(TokenResponse {
                    access_token: issued.token,
                    token_type: "Bearer",
                    expires_in: issued.expires_in,
                })
            }
            _ => {
                self.limiter().record_failure(&account, client, now_ms() as u64);
                Err(Error::InvalidCredentials)
            }
        }
    }

    fn limit_failure(&self, account: &str, client: &str) -> Result<()> {
        let now = now_ms() as u64;
        let mut limiter = self.limiter();
        if let Err(limited) = limiter.check(account, client, now) {
            return Err(Error::RateLimited {
                retry_after_secs: limited.retry_after_secs(),
            });
        }
        limiter.record_failure(account, client, now);
        Ok(())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        // The limiter holds no invariant a panic could break halfway: keep using it.
        self.limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The middleware's work: the user of a valid bearer token in `authorization`, loaded from
    /// the store (a deleted user's tokens stop working at once).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<User> {
        let outcome = self.authenticate_inner(authorization).await;
        if let Err(e) = &outcome {
            let reason = match e {
                Error::MissingToken => "missing",
                Error::InvalidToken(t) => t.reason(),
                Error::UnknownUser => "unknown_user",
                _ => "error",
            };
            self.metrics.token_rejections.with_label_values(&[reason]).inc();
        }
        outcome
    }

    async fn authenticate_inner(&self, authorization: Option<&str>) -> Result<User> {
        let header = authorization.ok_or(Error::MissingToken)?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(Error::MissingToken),
        };
        let (user_id, _claims) = self.tokens.verify(token, now_secs())?;
        let now = now_ms() as u64;
        if let Some(user) = self.user_cache().get(user_id, now) {
            return Ok(user);
        }
        let user = self.store.user_by_id(user_id).await?.ok_or(Error::UnknownUser)?;
        self.user_cache().put(user.id, user.clone(), now);
        Ok(user)
    }

    fn user_cache(&self) -> std::sync::MutexGuard<'_, UserCache> {
        // A plain map: nothing a panic could leave half-done.
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn grant_cache(&self) -> std::sync::MutexGuard<'_, GrantCache> {
        // A plain map: nothing a panic could leave half-done.
        self.grants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenants granted to `user`.
    pub async fn tenants(&self, user: &User) -> Result<Vec<String>> {
        Ok(self.store.tenants_of_user(user.id).await?)
    }

    /// Checks the grant, from the grants read less than `user_cache_ttl_ms` ago.
    async fn authorize(&self, user: &User, tenant: &str) -> Result<()> {
        let now = now_ms() as u64;
        let cached = self.grant_cache().get(user.id, now);
        let granted = match cached {
            Some(granted) => granted,
            None => {
                let granted: std::sync::Arc<[String]> = self.store.tenants_of_user(user.id).await?.into();
                self.grant_cache().put(user.id, granted.clone(), now);
                granted
            }
        };
        dashboard::authorize(&granted, tenant)
    }

    /// Daily metrics of a tenant granted to `user`. Parameters are checked before the grant, so
    /// a bad query is `422` whoever asks; the grant is checked before any data is read.
    pub async fn daily_metrics(
        &self,
        user: &User,
        tenant: &str,
        params: &DailyParams,
    ) -> Result<Vec<DailyRow>> {
        let query = params.query(tenant)?;
        self.authorize(user, tenant).await?;
        let rows = self.store.daily_summaries(&query).await?;
        Ok(rows.iter().map(DailyRow::from).collect())
    }

    /// Anomaly verdicts of a tenant granted to `user`.
    pub async fn anomalies(&self, user: &User, tenant: &str, params: &AnomalyParams) -> Result<Vec<Anomaly>> {
        let query = params.query(tenant)?;
        self.authorize(user, tenant).await?;
        Ok(self.store.anomalies(&query).await?)
    }

    /// KPI windows with their verdicts of a tenant granted to `user`.
    pub async fn windows(&self, user: &User, tenant: &str, params: &WindowParams) -> Result<WindowsBody> {
        let query = params.query(tenant)?;
        let layout = params.layout()?;
        self.authorize(user, tenant).await?;
        let rows = self.store.kpi_windows(&query).await?;
        Ok(match layout {
            WindowLayout::Rows => WindowsBody::Rows {
                windows: rows.iter().map(WindowRow::from).collect(),
            },
            WindowLayout::Columns => WindowsBody::Columns {
                columns: Box::new(WindowColumns::from_rows(&rows)),
            },
        })
    }

    /// Whether the store answers.
    pub async fn ready(&self) -> bool {
        self.store.applied_migrations().await.is_ok()
    }

    /// Grants `tenant` to the user with this email or username (see [`admin::grant`]).
    pub async fn grant(&self, login: &str, tenant: &str) -> Result<User> {
        let user = admin::grant(self.store.as_ref(), login, tenant).await?;
        self.grant_cache().remove(user.id);
        Ok(user)
    }

    /// Revokes `tenant` from the user; false when it was not granted.
    pub async fn revoke(&self, login: &str, tenant: &str) -> Result<bool> {
        let revoked = admin::revoke(self.store.as_ref(), login, tenant).await?;
        if let Ok(user) = admin::user(self.store.as_ref(), login).await {
            self.grant_cache().remove(user.id);
        }
        Ok(revoked)
    }

    /// Deletes the user; its tokens stop working at once in this process (other processes:
    /// within `user_cache_ttl_ms`).
    pub async fn delete_user(&self, login: &str) -> Result<User> {
        let user = admin::delete_user(self.store.as_ref(), login).await?;
        self.user_cache().remove(user.id);
        self.grant_cache().remove(user.id);
        Ok(user)
    }
}
