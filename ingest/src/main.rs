//! `ingest` binary: see the crate docs.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ingest::publisher::Publisher;
use schemas::{TaskEvent, TaskStatus};

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
    /// Create the pipeline's topics if missing.
    Topics,
    /// Publish example task events (one tenant, a few agents) and report how many were acknowledged.
    PublishExample {
        /// How many events.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
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
    }
    Ok(())
}
