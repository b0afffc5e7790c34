//! `scorer` binary: see the crate docs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use scorer::features::FEATURES;
use scorer::metrics::Metrics;
use scorer::models::{init_runtime, runtime_path, ModelSet};
use scorer::{offline, service};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Consume KPI windows, score them and publish verdicts (until SIGTERM/Ctrl-C).
    Run,
    /// Load the model set (manifest, hashes, model signatures, a probe inference) and print it.
    CheckModels {
        /// Model directory (default: scorer.model_dir).
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Score a CSV series (`timestamp,<feature>...` with raw feature values) offline.
    Offline {
        /// The series.
        #[arg(long)]
        csv: PathBuf,
        /// Where the scores go (CSV).
        #[arg(long)]
        out: PathBuf,
        /// Labelled incident windows (JSON `[{"start","end"}]`): print event-level metrics.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Model directory (default: scorer.model_dir).
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn")),
        )
        .init();
    let cli = Cli::parse();
    let settings = cli.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let load_models = |dir: Option<PathBuf>| -> anyhow::Result<ModelSet> {
        let dir = dir.unwrap_or_else(|| PathBuf::from(&settings.scorer.model_dir));
        init_runtime(&runtime_path(&settings.scorer.onnxruntime_path))?;
        Ok(ModelSet::load(&dir, settings.scorer.intra_threads)?)
    };
    match cli.command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Migrate => {
            runtime.block_on(store::open_migrated(&settings.store.url))?;
        }
        Command::CheckModels { models } => {
            let set = load_models(models)?;
            let m = &set.manifest;
            println!(
                "model set {} in {}: {} s windows, sequences of {}, last {} scored, weights lstm {} / transformer {}, threshold {}",
                m.version,
                set.dir.display(),
                m.window_secs,
                m.sequence_length,
                m.score_positions,
                m.ensemble.weights.lstm,
                m.ensemble.weights.transformer,
                m.ensemble.threshold
            );
        }
        Command::Offline { csv, out, labels, models } => {
            let mut set = load_models(models)?;
            let rows = offline::read_series(&csv)?;
            let scored = offline::score_series(&mut set, &rows, settings.scorer.max_batch)?;
            offline::write_scores(&out, &scored)?;
            let flagged = scored.iter().filter(|s| s.verdict.is_anomaly).count();
            eprintln!(
                "{} periods, {} scored, {flagged} flagged (features {FEATURES:?}); scores in {}",
                rows.len(),
                scored.len(),
                out.display()
            );
            if let Some(labels) = labels {
                let labels = offline::read_labels(&labels)?;
                let periods: Vec<(i64, bool)> = scored.iter().map(|s| (s.at_ms, s.verdict.is_anomaly)).collect();
                let m = offline::event_metrics(&periods, &labels);
                println!(
                    "incidents {} detected {} | alarms {} false {} | precision {:.3} recall {:.3} F1 {:.3} | delays (min) {:?}",
                    m.incidents,
                    m.detected,
                    m.true_alarms + m.false_alarms,
                    m.false_alarms,
                    m.precision(),
                    m.recall(),
                    m.f1(),
                    m.delays_ms.iter().map(|d| d / 60_000).collect::<Vec<_>>()
                );
            }
        }
        Command::Run => {
            let models = load_models(None)?;
            let store = runtime.block_on(store::open_migrated(&settings.store.url))?;
            let topics = &settings.kafka.topics;
            runtime.block_on(kafka_io::ensure_topics(
                &settings.kafka,
                &[&topics.kpi_windows, &topics.anomalies, &topics.dead_letter],
            ))?;
            let metrics = Metrics::new();
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(settings.scorer.metrics_listen))
                .with_context(|| format!("scorer.metrics_listen: cannot bind {}", settings.scorer.metrics_listen))?;
            runtime.spawn(scorer::metrics::serve(metrics.clone(), listener));
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            runtime.spawn(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                tracing::info!("stopping: flushing the current batch");
                flag.store(true, Ordering::Relaxed);
            });
            let deps = service::Deps {
                settings: settings.clone(),
                store,
                runtime: runtime.handle().clone(),
                models,
                metrics,
            };
            service::run(deps, stop)?;
        }
    }
    Ok(())
}
