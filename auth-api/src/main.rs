//! `auth-api` binary: see the crate docs.
// warp types the route tree as one nested type; optimized builds need a deeper limit.
#![recursion_limit = "512"]

use std::io::BufRead as _;

use anyhow::Context;
use auth_api::accounts::RegisterRequest;
use auth_api::admin;
use auth_api::config::Config;
use auth_api::passwords::Hasher;
use auth_api::service::AuthService;
use clap::Subcommand;

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
    /// Serve the API (applies migrations first); SIGTERM or Ctrl-C drains and stops.
    Serve,
    /// Create a user; the password is read from the first line of stdin.
    CreateUser {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Optional user name.
        #[arg(long)]
        username: Option<String>,
    },
    /// Let a user read a tenant's dashboards.
    Grant {
        /// The user's email (or username).
        #[arg(long)]
        email: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Withdraw a tenant from a user.
    Revoke {
        /// The user's email (or username).
        #[arg(long)]
        email: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Delete a user and its grants; its tokens stop working at once.
    DeleteUser {
        /// The user's email (or username).
        #[arg(long)]
        email: String,
    },
}

/// The whole service (`serve`): needs every `[auth_api]` key, the JWT secret included.
async fn service(settings: &settings::Settings) -> anyhow::Result<std::sync::Arc<AuthService>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = Config::from_settings(&settings.auth_api, cpus)?;
    Ok(AuthService::new(store(settings).await?, config).await?)
}

/// The store alone: what the user and grant commands need (they sign no token, so they run
/// without `auth_api.jwt_secret`).
async fn store(settings: &settings::Settings) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    store::open_migrated(&settings.store.url)
        .await
        .context("opening the store")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::init_tracing("info");
    let (command, settings) = settings::cli!(Command).load()?;
    match command {
        Command::CheckConfig => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            Config::from_settings(&settings.auth_api, cpus)?;
            println!("{settings:#?}");
        }
        Command::Migrate => {
            store::open_migrated(&settings.store.url).await?;
        }
        Command::Serve => {
            let service = service(&settings).await?;
            let listen = service.config().listen;
            let listener = ops::bind(listen, "auth_api.listen").await?;
            tracing::info!(%listen, bcrypt_cost = service.config().bcrypt_cost, "auth-api listening");
            auth_api::run(listener, service, ops::shutdown_signal()).await;
        }
        Command::CreateUser { email, username } => {
            let cost = auth_api::config::bcrypt_cost(&settings.auth_api)?;
            let store = store(&settings).await?;
            let hasher = tokio::task::spawn_blocking(move || Hasher::new(cost, 1, 1)).await??;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            let request = RegisterRequest {
                email,
                password,
                username,
            };
            let user = admin::create_user(store.as_ref(), &hasher, request).await?;
            println!("{}", serde_json::to_string(&user)?);
        }
        Command::Grant { email, tenant } => {
            let user = admin::grant(store(&settings).await?.as_ref(), &email, &tenant).await?;
            println!("granted tenant {tenant} to {} ({})", user.email, user.id);
        }
        Command::Revoke { email, tenant } => {
            if !admin::revoke(store(&settings).await?.as_ref(), &email, &tenant).await? {
                anyhow::bail!("{email} had no grant for tenant {tenant}");
            }
            println!("revoked tenant {tenant} from {email}");
        }
        Command::DeleteUser { email } => {
            let user = admin::delete_user(store(&settings).await?.as_ref(), &email).await?;
            println!("deleted {} ({})", user.email, user.id);
        }
    }
    Ok(())
}
