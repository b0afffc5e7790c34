//! `aggregator` binary: see the crate docs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
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
    /// Consume task events and maintain the KPIs until SIGTERM/SIGINT (then checkpoint and exit).
    Run,
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let settings = cli.config.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Migrate => {
            runtime.block_on(store::open_migrated(&settings.store.url))?;
        }
        Command::Run => {
            let store = runtime
                .block_on(store::open_migrated(&settings.store.url))
                .context("opening the store")?;
            runtime
                .block_on(kafka_io::ensure_topics(
                    &settings.kafka,
                    &settings.kafka.topics.all(),
                ))
                .context("creating topics")?;
            let stop = Arc::new(AtomicBool::new(false));
            let signal_stop = stop.clone();
            runtime.spawn(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("stopping");
                signal_stop.store(true, Ordering::Relaxed);
            });
            let deps = aggregator::driver::Deps {
                settings,
                store,
                runtime: runtime.handle().clone(),
            };
            let handle = std::thread::Builder::new()
                .name("aggregator".into())
                .spawn(move || aggregator::driver::run(deps, stop))?;
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("aggregator thread panicked"))??;
        }
    }
    Ok(())
}
