//! `aggregator` binary: see the crate docs.

use aggregator::driver;
use anyhow::Context;
use clap::Subcommand;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Subcommand)]
enum Command {
    /// Consume task events and maintain the KPIs until SIGTERM/SIGINT (then checkpoint and exit).
    Run,
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
    /// Print the stored daily rows of a tenant (all agents and the `*` roll-up).
    Show {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// First UTC day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last UTC day (inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: String,
    },
    /// Rebuild the daily rows of a day range from the whole topic (late events included).
    Recompute {
        /// First UTC day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last UTC day (inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: String,
    },
}

fn parse_day(flag: &str, value: &str) -> anyhow::Result<time::Date> {
    schemas::time::parse_day(value).with_context(|| format!("{flag} {value}: expected a date YYYY-MM-DD"))
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing("info");
    let (command, settings) = settings::cli!(Command).load()?;
    let runtime = ops::runtime()?;
    match command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Migrate => {
            runtime.block_on(store::open_migrated(&settings.store.url))?;
        }
        Command::Show { tenant, from, to } => {
            let (from, to) = (parse_day("--from", &from)?, parse_day("--to", &to)?);
            let store = runtime
                .block_on(store::open_migrated(&settings.store.url))
                .context("opening the store")?;
            let query = store::DailyMetricsQuery {
                tenant_id: tenant.clone(),
                agent_id: None,
                from,
                to,
            };
            let rows = runtime.block_on(store.daily_metrics(&query))?;
            println!(
                "{:<10} {:<14} {:<12} {:>7} {:>6} {:>6} {:>9} {:>9} {:>11} {:>5}",
                "day", "tenant", "agent", "tasks", "TSR", "HIR", "P95 ms", "P99 ms", "cost/task", "final"
            );
            for r in rows {
                let c = &r.counts;
                let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
                println!(
                    "{:<10} {:<14} {:<12} {:>7} {:>6} {:>6} {:>9.0} {:>9.0} {:>11} {:>5}",
                    r.day.to_string(),
                    r.tenant_id,
                    r.agent_id,
                    c.tasks_total,
                    pct(c.success_rate()),
                    pct(c.intervention_rate()),
                    r.latency.latency_p95_ms.unwrap_or(f64::NAN),
                    r.latency.latency_p99_ms.unwrap_or(f64::NAN),
                    c.cost_per_task_micros()
                        .map_or("-".to_string(), |v| format!("${:.4}", v / 1e6)),
                    if r.is_final { "yes" } else { "no" }
                );
            }
        }
        Command::Recompute { from, to } => {
            let (from, to) = (parse_day("--from", &from)?, parse_day("--to", &to)?);
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            let store = runtime
                .block_on(store::open_migrated(&settings.store.url))
                .context("opening the store")?;
            let report =
                aggregator::recompute::recompute(&settings, store.as_ref(), runtime.handle(), from, to)?;
            println!(
                "recomputed {from}..={to}: {} records read, {} distinct events in range ({} duplicates, {} invalid records, {} from the future), {} daily rows written",
                report.records, report.events_in_range, report.duplicates, report.invalid, report.future, report.rows_written
            );
        }
        Command::Run => {
            let listen = settings.aggregator.metrics_listen;
            kafka_io::service::run(runtime.handle(), "aggregator", listen, settings, driver::run)?;
        }
    }
    Ok(())
}
