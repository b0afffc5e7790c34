//! `auth-api` binary: see the crate docs.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: settings::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let settings = cli.config.load()?;
    match cli.command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Migrate => {
            store::open_migrated(&settings.store.url).await?;
        }
    }
    Ok(())
}
