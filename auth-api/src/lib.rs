//! The auth and dashboard API: user registration and login (bcrypt, HS256 JWT), the bearer
//! middleware, the profile, dashboard queries scoped to the tenants granted to a user, and the
//! dashboard page that shows them.
//!
//! It owns the users' HTTP surface and its security rules; users and grants are stored
//! through [`store::Store`] (migration 3), metrics and anomalies are read from it.
//!
//! # Layout
//! - [`config`]: `[auth_api]` validated into [`config::Config`].
//! - [`accounts`]: request/response JSON, email and username rules (pure).
//! - [`passwords`]: password rules (pure) and the bounded bcrypt pool.
//! - [`tokens`]: issuing and verifying JWTs against a clock passed in (pure).
//! - [`rate_limit`]: the failed-login limiter (pure, bounded memory).
//! - [`dashboard`]: query parameters, the tenant-scope rule, rows (pure).
//! - [`user_cache`]: the short-lived caches of users and of their grants (pure).
//! - [`admin`]: users and grants over the store, shared with the CLI (no token key needed).
//! - [`service`]: [`service::AuthService`], the use cases over the store.
//! - [`routes`]: the warp filters, the route table, the auth middleware, error recovery.
//! - [`ui`]: the dashboard page (static files embedded in the binary, strict CSP).
//! - [`openapi`], [`metrics`], [`error`].
//!
//! # Example
//! ```no_run
//! # async fn demo() -> auth_api::Result<()> {
//! let store = store::open_migrated("sqlite://data/agentops.db").await?;
//! let config = auth_api::config::Config::for_tests(&"k".repeat(32), 12);
//! let service = auth_api::service::AuthService::new(store, config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await.unwrap();
//! auth_api::run(listener, service, std::future::pending()).await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod accounts;
pub mod admin;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod rate_limit;
pub mod routes;
pub mod service;
pub mod tokens;
pub mod ui;
pub mod user_cache;

use std::future::Future;
use std::sync::Arc;

pub use error::{Error, Result};

/// Serves every route on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: Arc<service::AuthService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes::routes(service))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
