//! `alerter` binary: see the crate docs.

use alerter::service;
use clap::Subcommand;

#[derive(Subcommand)]
enum Command {
    /// Consume anomaly verdicts and send alerts until SIGTERM/SIGINT (then checkpoint and exit).
    Run,
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing("info");
    let (command, settings) = settings::cli!(Command).load()?;
    match command {
        Command::CheckConfig => println!("{:#?}", settings.alerter),
        Command::Run => {
            let runtime = ops::runtime()?;
            let listen = settings.alerter.metrics_listen;
            kafka_io::service::run(runtime.handle(), "alerter", listen, settings, service::run)?;
        }
    }
    Ok(())
}
