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
    /// Print a tenant's stored anomalies as alarms (runs of flagged windows per agent), and,
    /// given the generator's `incidents.json`, which injected incidents they caught.
    Show {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// The generator's incidents (labels) to compare with.
        #[arg(long)]
        incidents: Option<PathBuf>,
    },
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing("info,ort=warn");
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
        Command::Show { tenant, incidents } => {
            let store = runtime.block_on(store::open_migrated(&settings.store.url))?;
            let query = store::AnomalyQuery {
                tenant_id: tenant.clone(),
                from_ms: 0,
                to_ms: i64::MAX,
                min_score: f64::MIN,
                only_flagged: true,
            };
            let flagged = runtime.block_on(store.anomalies(&query))?;
            let labels: Vec<serde_json::Value> = match incidents {
                Some(path) => serde_json::from_slice(
                    &std::fs::read(&path).with_context(|| path.display().to_string())?,
                )?,
                None => Vec::new(),
            };
            print_alarms(&tenant, &flagged, &labels);
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
        Command::Offline {
            csv,
            out,
            labels,
            models,
        } => {
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
                let periods: Vec<(i64, bool)> =
                    scored.iter().map(|s| (s.at_ms, s.verdict.is_anomaly)).collect();
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
                .with_context(|| {
                    format!(
                        "scorer.metrics_listen: cannot bind {}",
                        settings.scorer.metrics_listen
                    )
                })?;
            runtime.spawn(scorer::metrics::serve(metrics.clone(), listener));
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            runtime.spawn(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
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

fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// Alarms: runs of consecutive flagged windows of one agent.
fn print_alarms(tenant: &str, flagged: &[schemas::Anomaly], incidents: &[serde_json::Value]) {
    let mut sorted: Vec<&schemas::Anomaly> = flagged.iter().collect();
    sorted.sort_by(|a, b| (&a.agent_id, a.window_start).cmp(&(&b.agent_id, b.window_start)));
    let mut alarms: Vec<(String, i64, i64, f64, String, usize)> = Vec::new();
    for a in sorted {
        let top = a
            .top_features
            .first()
            .map(|f| f.feature.clone())
            .unwrap_or_default();
        match alarms.last_mut() {
            Some(last) if last.0 == a.agent_id && last.2 == a.window_start => {
                last.2 = a.window_end;
                last.5 += 1;
                if a.ensemble_score > last.3 {
                    last.3 = a.ensemble_score;
                    last.4 = top;
                }
            }
            _ => alarms.push((
                a.agent_id.clone(),
                a.window_start,
                a.window_end,
                a.ensemble_score,
                top,
                1,
            )),
        }
    }
    println!(
        "anomalies of {tenant}: {} flagged windows in {} alarms",
        flagged.len(),
        alarms.len()
    );
    println!(
        "{:<14} {:<17} {:<17} {:>7} {:>9}  driven by",
        "agent", "from (UTC)", "to (UTC)", "windows", "max score"
    );
    for (agent, start, end, score, top, n) in &alarms {
        println!(
            "{agent:<14} {:<17} {:<17} {n:>7} {score:>9.2}  {top}",
            utc(*start),
            utc(*end)
        );
    }
    let mine: Vec<&serde_json::Value> = incidents.iter().filter(|i| i["tenant_id"] == tenant).collect();
    if !mine.is_empty() {
        println!("injected incidents of {tenant}:");
        for i in mine {
            let (agent, start, end) = (
                i["agent_id"].as_str().unwrap_or_default(),
                i["start_ms"].as_i64().unwrap_or_default(),
                i["end_ms"].as_i64().unwrap_or_default(),
            );
            let caught = alarms
                .iter()
                .filter(|a| a.0 == agent && a.1 <= end && a.2 > start)
                .map(|a| a.1)
                .min();
            let verdict = match caught {
                Some(t) => format!("DETECTED (first flagged window {})", utc(t)),
                None => "missed".to_string(),
            };
            println!(
                "  {agent:<14} {:<20} {} .. {}  {verdict}",
                i["kind"].as_str().unwrap_or_default(),
                utc(start),
                utc(end)
            );
        }
    }
}
