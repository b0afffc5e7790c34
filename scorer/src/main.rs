//! `scorer` binary: see the crate docs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use schemas::{Anomaly, KpiWindow};
use scorer::detector::DetectorParams;
use scorer::features::FEATURES;
use scorer::metrics::Metrics;
use scorer::models::{init_runtime, runtime_path, ModelSet};
use scorer::{assess, evaluation, latency, offline, service, tuning};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What a detector tuned on the tuning sets may cost there (`tune`, `evaluate`).
#[derive(Args)]
struct BudgetArgs {
    /// Most false alarms per series-day allowed on the tuning sets (pooled).
    #[arg(long, default_value_t = 0.005)]
    budget: f64,
    /// Longest median delay (minutes) of the step incidents (all kinds but slow drift, a
    /// missed one counting as never caught) allowed on the tuning sets (pooled), where a
    /// threshold within the false alarms reaches it; 0: unbounded. 5 min under the 30-min
    /// target: on unseen data the median lies a few minutes above the tuning sets'.
    #[arg(long, default_value_t = 25)]
    max_median_delay_min: i64,
}

impl BudgetArgs {
    /// The budget (a delay of 0 minutes: unbounded).
    fn budget(&self) -> evaluation::Budget {
        evaluation::Budget {
            false_alarms_per_series_day: self.budget,
            median_step_delay_ms: (self.max_median_delay_min > 0)
                .then_some(self.max_median_delay_min * 60_000),
        }
    }
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
    /// Score KPI windows from a CSV file offline, with the service's detector, models and
    /// ensemble; with labels, judge the alarms (see the README's Scorer section).
    Offline {
        /// The windows (`tenant_id,agent_id,window_start,tasks_total,succeeded,...`).
        #[arg(long)]
        windows: PathBuf,
        /// Where the scores go (CSV).
        #[arg(long)]
        out: PathBuf,
        /// Labelled incidents (the generator's `incidents.json` shape).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Model directory (default: scorer.model_dir).
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Write the detector's evidence for every window of a data set (the models' training input).
    Features {
        /// The windows CSV.
        #[arg(long)]
        windows: PathBuf,
        /// Output directory (`features.f32`, `mask.f32`, `tasks.f32`, `features.json`).
        #[arg(long)]
        out: PathBuf,
        /// Detector parameters as JSON (default: the built-in ones for `aggregator.window_secs`).
        #[arg(long)]
        detector: Option<PathBuf>,
    },
    /// Fit a model set to data: each autoencoder's calibration and the statistical member's
    /// per-KPI scales on normal data sets, then the ensemble weights and threshold on labelled
    /// tuning sets (pooled) under the false-alarm budget; rewrites the manifest.
    Tune {
        /// Model directory.
        #[arg(long)]
        models: PathBuf,
        /// Data sets of normal traffic (directories with `windows.csv`).
        #[arg(long, num_args = 1.., required = true)]
        normal: Vec<PathBuf>,
        /// The labelled tuning sets (directories with `windows.csv` and `incidents.json`),
        /// pooled; without any only the calibration is fitted and the weights and threshold
        /// are kept.
        #[arg(long, num_args = 1..)]
        tuning: Vec<PathBuf>,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Export stored KPI windows (the `kpi_windows` table, see `store.window_retention_days`)
    /// as a windows CSV: a tenant's own history for `scorer tune`, `scorer offline` or
    /// retraining the autoencoders (`python -m agentops_train fit`).
    ExportWindows {
        /// Tenants to export (repeat the flag).
        #[arg(long, required = true)]
        tenant: Vec<String>,
        /// First day (UTC, `YYYY-MM-DD`).
        #[arg(long)]
        from: String,
        /// Last day, inclusive (UTC, `YYYY-MM-DD`).
        #[arg(long)]
        to: String,
        /// The CSV to write (e.g. `DIR/windows.csv`).
        #[arg(long)]
        out: PathBuf,
    },
    /// The evaluation table: every detector row tuned on the tuning sets under the budget and
    /// judged on unseen sets (mean ± sd), next to "flag every window"; false alarms on clean
    /// sets.
    Evaluate {
        /// Model directory (default: scorer.model_dir).
        #[arg(long)]
        models: Option<PathBuf>,
        /// The labelled tuning sets, pooled.
        #[arg(long, num_args = 1.., required = true)]
        tuning: Vec<PathBuf>,
        /// Unseen labelled sets.
        #[arg(long, num_args = 1.., required = true)]
        eval: Vec<PathBuf>,
        /// Clean sets (no incidents): false alarms only.
        #[arg(long, num_args = 1..)]
        clean: Vec<PathBuf>,
        #[command(flatten)]
        budget: BudgetArgs,
        /// Only the statistical member (no ONNX models needed).
        #[arg(long)]
        statistical_only: bool,
        /// Detector parameters as JSON for `--statistical-only` (default: the built-in ones for
        /// `aggregator.window_secs`).
        #[arg(long)]
        detector: Option<PathBuf>,
        /// The table as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The table as Markdown.
        #[arg(long)]
        markdown: Option<PathBuf>,
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
    /// Window close -> verdict latency: reads the KPI-window and anomaly topics to their ends
    /// and prints the quantiles of (verdict record time - window record time) per window.
    Latency,
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Apply the store migrations and exit.
    Migrate,
}

fn main() -> anyhow::Result<()> {
    ops::init_tracing("info,ort=warn");
    let (command, settings) = settings::cli!(Command).load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let load_models = |dir: Option<PathBuf>| -> anyhow::Result<ModelSet> {
        let dir = dir.unwrap_or_else(|| PathBuf::from(&settings.scorer.model_dir));
        init_runtime(&runtime_path(&settings.scorer.onnxruntime_path))?;
        Ok(ModelSet::load(&dir, settings.scorer.intra_threads)?)
    };
    match command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Latency => {
            let topics = &settings.kafka.topics;
            let codecs = kafka_io::codec::Codecs::from_settings(&settings.schema_registry);
            let windows = codecs.decoder::<KpiWindow>();
            let verdicts = codecs.decoder::<Anomaly>();
            let closed = latency::read_first_seen(&settings.kafka, &topics.kpi_windows, |bytes| {
                windows
                    .decode_sync(bytes)
                    .or_else(|_| runtime.block_on(windows.decode(bytes)))
                    .ok()
                    .map(|w| w.window_id)
            })?;
            let scored = latency::read_first_seen(&settings.kafka, &topics.anomalies, |bytes| {
                verdicts
                    .decode_sync(bytes)
                    .or_else(|_| runtime.block_on(verdicts.decode(bytes)))
                    .ok()
                    .map(|a| a.window_id)
            })?;
            match latency::join(&closed, &scored) {
                Some(r) => println!("{}", serde_json::to_string_pretty(&r)?),
                None => anyhow::bail!(
                    "no window of {} has a verdict on {}",
                    topics.kpi_windows,
                    topics.anomalies
                ),
            }
        }
        Command::Migrate => {
            runtime.block_on(store::open_migrated(&settings.store.url))?;
        }
        Command::ExportWindows {
            tenant,
            from,
            to,
            out,
        } => {
            let day = |key: &str, value: &str| {
                schemas::time::parse_day(value)
                    .map(schemas::time::day_start_ms)
                    .with_context(|| format!("--{key} `{value}`: expected YYYY-MM-DD"))
            };
            let (from_ms, to_ms) = (day("from", &from)?, day("to", &to)? + schemas::time::DAY_MS);
            let store = runtime.block_on(store::open_migrated(&settings.store.url))?;
            let mut records = Vec::new();
            for tenant_id in tenant {
                let query = store::KpiWindowQuery {
                    tenant_id,
                    agent_id: None,
                    from_ms,
                    to_ms,
                };
                records.extend(runtime.block_on(store.kpi_windows(&query))?.into_iter().map(|w| {
                    offline::WindowRecord::of(w.tenant_id, w.agent_id, w.window_start, &w.counts, &w.latency)
                }));
            }
            let n = offline::write_windows(&out, records)?;
            eprintln!("{n} KPI windows written to {}", out.display());
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
                "model set {} in {}: {} s windows, sequences of {}, last {} scored, weights lstm {} / transformer {} / statistical {}, threshold {}",
                m.version,
                set.dir.display(),
                m.window_secs,
                m.sequence_length,
                m.score_positions,
                m.ensemble.weights.lstm,
                m.ensemble.weights.transformer,
                m.ensemble.weights.statistical,
                m.ensemble.threshold
            );
        }
        Command::Offline {
            windows,
            out,
            labels,
            models,
        } => {
            let mut set = load_models(models)?;
            let series = offline::read_windows(&windows, set.manifest.window_ms())?;
            let scored = offline::score(&mut set, &series, settings.scorer.max_batch)?;
            offline::write_scores(&out, &scored)?;
            let flagged: usize = scored
                .iter()
                .flat_map(|s| s.verdicts.iter().flatten())
                .filter(|v| v.is_anomaly)
                .count();
            eprintln!(
                "{} series, {} windows, {flagged} flagged (features {FEATURES:?}); scores in {}",
                series.len(),
                series.iter().map(|s| s.windows.len()).sum::<usize>(),
                out.display()
            );
            if let Some(labels) = labels {
                let labels = offline::read_labels(&labels)?;
                let r = offline::judge_ensemble(&set.manifest, &scored, &labels);
                println!("{}", serde_json::to_string_pretty(&tuning::Summary::from(&r))?);
            }
        }
        Command::Features {
            windows,
            out,
            detector,
        } => {
            let params = read_detector(detector.as_deref(), settings.aggregator.window_secs)?;
            let series = offline::read_windows(&windows, i64::from(settings.aggregator.window_secs) * 1000)?;
            offline::write_features(&out, &series, &params)?;
            eprintln!("evidence of {} series written to {}", series.len(), out.display());
        }
        Command::Tune {
            models,
            normal,
            tuning,
            budget,
        } => {
            let budget = budget.budget();
            let mut set = load_models(Some(models.clone()))?;
            let (manifest, report) =
                assess::tune(&mut set, &normal, &tuning, &budget, settings.scorer.max_batch)?;
            let path = models.join(scorer::manifest::MANIFEST_FILE);
            std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
                .with_context(|| path.display().to_string())?;
            eprintln!(
                "{}: weights lstm {} / transformer {} / statistical {}, threshold {}",
                path.display(),
                manifest.ensemble.weights.lstm,
                manifest.ensemble.weights.transformer,
                manifest.ensemble.weights.statistical,
                manifest.ensemble.threshold
            );
            if let Some(r) = report {
                eprintln!("on the tuning sets: {}", tuning::budget_outcome(&r, &budget));
            }
        }
        Command::Evaluate {
            models,
            tuning,
            eval,
            clean,
            budget,
            statistical_only,
            detector,
            out,
            markdown,
        } => {
            let budget = budget.budget();
            let table = if statistical_only {
                let params = read_detector(detector.as_deref(), settings.aggregator.window_secs)?;
                assess::evaluate_statistical(
                    &params,
                    &tuning,
                    &eval,
                    &clean,
                    &budget,
                    i64::from(settings.aggregator.window_secs) * 1000,
                )?
            } else {
                let mut set = load_models(models)?;
                assess::evaluate(
                    &mut set,
                    &tuning,
                    &eval,
                    &clean,
                    &budget,
                    settings.scorer.max_batch,
                )?
            };
            let text = table.markdown();
            println!("{text}");
            if let Some(path) = markdown {
                std::fs::write(&path, &text).with_context(|| path.display().to_string())?;
            }
            if let Some(path) = out {
                std::fs::write(&path, serde_json::to_string_pretty(&table)? + "\n")
                    .with_context(|| path.display().to_string())?;
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
            let metrics = Metrics::default();
            metrics.consumer.serve_on(
                runtime.handle(),
                settings.scorer.metrics_listen,
                "scorer.metrics_listen",
            )?;
            let stop = ops::stop_flag(runtime.handle());
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

/// Detector parameters from a JSON file, or the built-in ones for `window_secs`.
fn read_detector(path: Option<&std::path::Path>, window_secs: u32) -> anyhow::Result<DetectorParams> {
    let Some(path) = path else {
        return Ok(DetectorParams::for_window(window_secs));
    };
    let params: DetectorParams =
        serde_json::from_slice(&std::fs::read(path).with_context(|| path.display().to_string())?)
            .with_context(|| format!("{}: detector parameters", path.display()))?;
    params.check().map_err(anyhow::Error::msg)?;
    Ok(params)
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

/// Alarms: runs of consecutive flagged windows of one agent, with what drove their strongest
/// window; given the generator's incidents, which ones they caught (by the evaluation's rule).
fn print_alarms(tenant: &str, flagged: &[schemas::Anomaly], incidents: &[serde_json::Value]) {
    struct Alarm<'a> {
        agent: &'a str,
        start: i64,
        end: i64,
        windows: usize,
        strongest: &'a schemas::Anomaly,
    }
    let mut sorted: Vec<&schemas::Anomaly> = flagged.iter().collect();
    sorted.sort_by(|a, b| (&a.agent_id, a.window_start).cmp(&(&b.agent_id, b.window_start)));
    let mut alarms: Vec<Alarm<'_>> = Vec::new();
    for a in sorted {
        match alarms.last_mut() {
            Some(last) if last.agent == a.agent_id && last.end == a.window_start => {
                last.end = a.window_end;
                last.windows += 1;
                if a.ensemble_score > last.strongest.ensemble_score {
                    last.strongest = a;
                }
            }
            _ => alarms.push(Alarm {
                agent: &a.agent_id,
                start: a.window_start,
                end: a.window_end,
                windows: 1,
                strongest: a,
            }),
        }
    }
    println!(
        "anomalies of {tenant}: {} flagged windows in {} alarms",
        flagged.len(),
        alarms.len()
    );
    println!(
        "{:<14} {:<17} {:<17} {:>7} {:>9}  what happened (strongest window)",
        "agent", "from (UTC)", "to (UTC)", "windows", "max score"
    );
    for a in &alarms {
        let why = a
            .strongest
            .explanation
            .first()
            .map(schemas::KpiExplanation::sentence)
            .or_else(|| a.strongest.top_features.first().map(|f| f.feature.clone()))
            .unwrap_or_default();
        println!(
            "{:<14} {:<17} {:<17} {:>7} {:>9.2}  {why}",
            a.agent,
            utc(a.start),
            utc(a.end),
            a.windows,
            a.strongest.ensemble_score
        );
    }
    let protocol = evaluation::Protocol::default();
    let mine: Vec<&serde_json::Value> = incidents.iter().filter(|i| i["tenant_id"] == tenant).collect();
    if !mine.is_empty() {
        println!(
            "injected incidents of {tenant} (caught: an alarm starts at most {} min before, inside, or at most {} min after):",
            protocol.lead_ms / 60_000,
            protocol.grace_ms / 60_000
        );
        for i in mine {
            let incident = evaluation::Incident {
                kind: i["kind"].as_str().unwrap_or_default().to_string(),
                start_ms: i["start_ms"].as_i64().unwrap_or_default(),
                end_ms: i["end_ms"].as_i64().unwrap_or_default(),
            };
            let agent = i["agent_id"].as_str().unwrap_or_default();
            let caught = alarms
                .iter()
                .filter(|a| a.agent == agent && protocol.credits(a.start, &incident))
                .map(|a| a.start)
                .min();
            let verdict = match caught {
                Some(t) => format!(
                    "DETECTED (first flagged window {}, verdict {} min after the start)",
                    utc(t),
                    ((t + protocol.window_ms - incident.start_ms).max(0)) / 60_000
                ),
                None => "missed".to_string(),
            };
            println!(
                "  {agent:<14} {:<20} {} .. {}  {verdict}",
                incident.kind,
                utc(incident.start_ms),
                utc(incident.end_ms)
            );
        }
    }
}
