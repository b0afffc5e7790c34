//! `ingest` binary: see the crate docs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use ingest::dataset;
use ingest::gateway;
use ingest::generator::http_sink::{self, HttpSink, HttpStats};
use ingest::generator::{GenConfig, Generator, KafkaSink};
use ingest::publisher::Publisher;
use ingest::truth::GroundTruth;
use schemas::{TaskEvent, TaskStatus};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print it (secrets masked).
    CheckConfig,
    /// Create the pipeline's topics if missing.
    Topics,
    /// Publish example task events (one tenant, a few agents) and report how many were acknowledged.
    PublishExample {
        /// How many events.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Run the HTTP gateway (`POST /v1/events`), applying store migrations first.
    Serve,
    /// Manage the gateway's per-tenant API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Generate a realistic, labelled workload in simulated time (deterministic from the seed).
    Gen(GenArgs),
    /// Compute the exact daily metrics (ground truth) of a JSON-lines events file.
    Truth {
        /// The events file (one TaskEvent JSON per line; other lines are skipped and counted).
        #[arg(long)]
        events: PathBuf,
        /// Where to write the rows (JSON lines).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key for a tenant; the token is printed once and only its hash is stored.
    Create {
        /// The tenant the key may write to.
        #[arg(long)]
        tenant: String,
        /// Who or what uses it.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (ids, tenants, labels, state; never secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `agk_`, before the second `_`).
        key_id: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sink {
    /// A data-set directory (events.jsonl, incidents.json, truth.jsonl, manifest.json).
    Files,
    /// The task-events topic (and the labels and truth into --out).
    Kafka,
    /// The HTTP gateway, with one API key per tenant created in the store (and the labels and
    /// truth into --out).
    Http,
}

#[derive(Args)]
struct GenArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Where the events go.
    #[arg(long, value_enum, default_value = "files")]
    to: Sink,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Tenants.
    #[arg(long, default_value_t = 4)]
    tenants: u32,
    /// Agents per tenant.
    #[arg(long, default_value_t = 8)]
    agents: u32,
    /// Agents per tenant kept free of incidents (control series).
    #[arg(long, default_value_t = 2)]
    control_agents: u32,
    /// First simulated day (UTC, YYYY-MM-DD).
    #[arg(long, default_value = "2025-10-01")]
    start: String,
    /// Simulated days.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Mean tasks per series and day.
    #[arg(long, default_value_t = 1500.0)]
    tasks_per_day: f64,
    /// Share of events sent twice.
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
    /// Share of events arriving late within the allowed lateness.
    #[arg(long, default_value_t = 0.01)]
    late_rate: f64,
    /// Share of events arriving hours late (beyond the allowed lateness).
    #[arg(long, default_value_t = 0.0)]
    very_late_rate: f64,
    /// Share of malformed records.
    #[arg(long, default_value_t = 0.0005)]
    malformed_rate: f64,
    /// Inject no incidents.
    #[arg(long)]
    no_incidents: bool,
    /// Start every incident in its tenant's working hours (a weekday, 09:00-17:00 local time)
    /// instead of at any time (the demo; the evaluation uses any time).
    #[arg(long)]
    incidents_in_working_hours: bool,
    /// Skip the ground truth (throughput runs).
    #[arg(long)]
    no_truth: bool,
    /// Gateway base URL for `--to http` (default: http://<ingest.listen>).
    #[arg(long)]
    gateway: Option<String>,
    /// Events per request for `--to http`.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight for `--to http`.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// For `--to http`: concurrent requests span at most this much simulated time, so the
    /// aggregator sees no event later than its allowed lateness (0: unbounded, benchmarks only).
    #[arg(long, default_value_t = http_sink::DEFAULT_MAX_SKEW_MS / 1000)]
    max_skew_secs: i64,
}

impl GenArgs {
    fn config(&self) -> anyhow::Result<GenConfig> {
        let day = schemas::time::parse_day(&self.start)
            .with_context(|| format!("--start {}: expected YYYY-MM-DD", self.start))?;
        Ok(GenConfig {
            seed: self.seed,
            tenants: self.tenants,
            agents_per_tenant: self.agents,
            control_agents_per_tenant: self.control_agents,
            start_ms: schemas::time::day_start_ms(day),
            days: self.days,
            tasks_per_series_per_day: self.tasks_per_day,
            duplicate_rate: self.duplicate_rate,
            late_rate: self.late_rate,
            very_late_rate: self.very_late_rate,
            malformed_rate: self.malformed_rate,
            incidents: !self.no_incidents,
            incidents_in_working_hours: self.incidents_in_working_hours,
            ..GenConfig::default()
        })
    }
}

fn progress_bar(hours: usize) -> ProgressBar {
    let bar = ProgressBar::new(hours as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulated hours {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

async fn serve(settings: settings::Settings) -> anyhow::Result<()> {
    let store = store::open_migrated(&settings.store.url)
        .await
        .context("opening the store")?;
    kafka_io::ensure_topics(&settings.kafka, &[settings.kafka.topics.task_events.as_str()]).await?;
    let sink = Arc::new(gateway::KafkaEventSink::new(&settings).await?);
    let limits = gateway::Limits {
        max_batch_events: settings.ingest.max_batch_events,
        max_body_bytes: settings.ingest.max_body_bytes,
        max_future_skew_ms: settings.events.max_future_skew_ms(),
    };
    let gateway = gateway::Gateway::with_otlp(sink, store, limits, &settings.ingest.otlp);
    let listener = ops::bind(settings.ingest.listen, "ingest.listen").await?;
    tracing::info!(listen = %settings.ingest.listen, "ingest gateway listening");
    warp::serve(gateway::routes(gateway))
        .incoming(listener)
        .graceful(ops::shutdown_signal())
        .run()
        .await;
    Ok(())
}

async fn generate(settings: &settings::Settings, args: &GenArgs) -> anyhow::Result<()> {
    let generator = Generator::new(args.config()?)?;
    let bar = progress_bar(generator.hour_count());
    let started = Instant::now();
    // What the gateway rejected (`--to http`): the records it refused, whatever the generator
    // meant them to be.
    let mut gateway_rejected = None;
    let summary = match args.to {
        Sink::Files => dataset::write(&generator, &args.out, !args.no_truth, |hours, s| {
            bar.set_position(hours as u64);
            bar.set_message(format!("{} records", s.records));
        })?,
        Sink::Kafka => {
            let sink = KafkaSink::new(settings).await?;
            std::fs::create_dir_all(&args.out)?;
            let mut truth = GroundTruth::default();
            let mut summary = dataset::Summary::default();
            for (hour, batch) in generator.hours().enumerate() {
                sink.send(&batch).await?;
                dataset::add_to_truth(&mut truth, &batch);
                summary.count(&batch);
                bar.set_position(hour as u64 + 1);
                bar.set_message(format!("{} records acknowledged", summary.records));
            }
            dataset::write_labels(&generator, &args.out, Some(&truth))?;
            summary.distinct_events = truth.distinct_events() as u64;
            summary
        }
        Sink::Http => {
            let store = store::open_migrated(&settings.store.url)
                .await
                .context("opening the store for API keys")?;
            let mut keys = std::collections::BTreeMap::new();
            let tenants: std::collections::BTreeSet<String> =
                generator.series().into_iter().map(|s| s.0).collect();
            for tenant in tenants {
                let issued = gateway::create_api_key(store.as_ref(), &tenant, "workload generator").await?;
                keys.insert(tenant, issued.token);
            }
            let base = args
                .gateway
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.ingest.listen));
            let sink = HttpSink::new(&base, keys, args.batch, args.in_flight)
                .with_max_skew_ms(args.max_skew_secs.saturating_mul(1000));
            std::fs::create_dir_all(&args.out)?;
            let mut truth = GroundTruth::default();
            let mut stats = HttpStats::default();
            let mut summary = dataset::Summary::default();
            let hours = generator.hour_count();
            let mut buffered = Vec::new();
            for (hour, batch) in generator.hours().enumerate() {
                buffered.extend(batch);
                if buffered.len() < 50_000 && hour + 1 < hours {
                    continue;
                }
                let batch = std::mem::take(&mut buffered);
                stats.merge(sink.send(&batch).await?);
                if !args.no_truth {
                    dataset::add_to_truth(&mut truth, &batch);
                }
                summary.count(&batch);
                bar.set_position(hour as u64 + 1);
                bar.set_message(format!(
                    "{} accepted, {} rejected",
                    stats.accepted, stats.rejected
                ));
            }
            dataset::write_labels(&generator, &args.out, (!args.no_truth).then_some(&truth))?;
            let secs = started.elapsed().as_secs_f64();
            let mut l = stats.latencies_us.clone();
            l.sort_unstable();
            let q = |p: f64| {
                l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0) as f64
                    / 1000.0
            };
            println!(
                "gateway: {} events accepted durably in {secs:.2} s = {:.0} events/s; {} requests of up to {} events, latency p50 {:.1} ms, p99 {:.1} ms; {} rejected, {} retries",
                stats.accepted,
                stats.accepted as f64 / secs,
                l.len(),
                args.batch,
                q(0.5),
                q(0.99),
                stats.rejected,
                stats.retries
            );
            gateway_rejected = Some(stats.rejected);
            summary.distinct_events = truth.distinct_events() as u64;
            summary
        }
    };
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    let rejected = gateway_rejected
        .map(|n| format!("; {n} rejected by the gateway"))
        .unwrap_or_default();
    println!(
        "{} records ({} distinct valid events, {} invalid, {} not events{rejected}) in {secs:.2} s: {:.0} records/s; {} incidents; output in {}",
        summary.records,
        summary.distinct_events,
        summary.invalid_events,
        summary.garbage_records,
        summary.records as f64 / secs,
        generator.incidents().len(),
        args.out.display()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::init_tracing("warn");
    let (command, settings) = settings::cli!(Command).load()?;
    match command {
        Command::CheckConfig => println!("{settings:#?}"),
        Command::Topics => {
            kafka_io::ensure_topics(&settings.kafka, &settings.kafka.topics.all()).await?;
            println!("topics ready: {}", settings.kafka.topics.all().join(", "));
        }
        Command::PublishExample { count } => {
            let publisher = Publisher::new(&settings)
                .await
                .context("creating the publisher")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let events: Vec<TaskEvent> = (0..count)
                .map(|i| {
                    let mut e = TaskEvent::example();
                    e.event_id = format!("example-{now}-{i}");
                    e.task_id = format!("task-{i}");
                    e.agent_id = format!("agent-{}", i % 3);
                    e.status = TaskStatus::ALL[usize::from(i % 10 == 0)];
                    e.completed_at = now - (count - i) as i64 * 100;
                    e.started_at = e.completed_at - 800 - (i as i64 % 7) * 150;
                    e
                })
                .collect();
            let results = publisher.publish_all(&events).await;
            let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            println!(
                "published {} of {count} events to {} (acks=all)",
                count - failed.len(),
                settings.kafka.topics.task_events
            );
            if let Some(e) = failed.first() {
                anyhow::bail!("{} events not acknowledged; first error: {e}", failed.len());
            }
        }
        Command::Gen(args) => generate(&settings, &args).await?,
        Command::Serve => serve(settings).await?,
        Command::ApiKey(command) => {
            let store = store::open_migrated(&settings.store.url).await?;
            match command {
                ApiKeyCommand::Create { tenant, label } => {
                    let issued = gateway::create_api_key(store.as_ref(), &tenant, &label).await?;
                    println!("{}", issued.token);
                    eprintln!(
                        "key {} for tenant {tenant}: store the token now, it is not shown again",
                        issued.record.key_id
                    );
                }
                ApiKeyCommand::List => {
                    println!("{:<14} {:<20} {:<10} label", "key_id", "tenant", "state");
                    for k in store.api_keys().await? {
                        let state = if k.revoked_at_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!("{:<14} {:<20} {:<10} {}", k.key_id, k.tenant_id, state, k.label);
                    }
                }
                ApiKeyCommand::Revoke { key_id } => {
                    if !gateway::revoke_api_key(store.as_ref(), &key_id).await? {
                        anyhow::bail!("no API key with id `{key_id}`");
                    }
                    println!("revoked {key_id}");
                }
            }
        }
        Command::Truth { events, out } => {
            let (events, skipped) = dataset::read_events(&events)?;
            let mut truth = GroundTruth::default();
            events.iter().for_each(|e| truth.add(e));
            let rows = truth.rows();
            dataset::write_truth(&out, &rows)?;
            println!(
                "{} daily rows from {} distinct events ({} duplicates, {} lines skipped) written to {}",
                rows.len(),
                truth.distinct_events(),
                truth.duplicates(),
                skipped.len(),
                out.display()
            );
        }
    }
    Ok(())
}
