//! `alerter` binary: see the crate docs.

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
    /// Consume anomaly verdicts and send alerts until SIGTERM/SIGINT (then checkpoint and exit).
    Run,
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing("info");
    let cli = Cli::parse();
    let settings = cli.config.load()?;
    match cli.command {
        Command::CheckConfig => println!("{:#?}", settings.alerter),
        Command::Run => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let store = runtime.block_on(kafka_io::open_store_and_topics(&settings))?;
            let stop = ops::stop_flag(runtime.handle());
            let metrics = alerter::metrics::Metrics::new();
            ops::serve_on(
                runtime.handle(),
                settings.alerter.metrics_listen,
                "alerter.metrics_listen",
                metrics.registry.clone(),
                metrics.ready.clone(),
            )?;
            let deps = alerter::service::Deps {
                settings,
                store,
                runtime: runtime.handle().clone(),
                metrics,
            };
            ops::run_on_thread("alerter", move || {
                alerter::service::run(deps, stop).map_err(anyhow::Error::from)
            })?;
        }
    }
    Ok(())
}
