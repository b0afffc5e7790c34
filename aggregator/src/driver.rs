//! The Kafka and store edge of the aggregator: the handler of task events that the shared
//! consumer worker ([`kafka_io::worker`]) runs on its own thread; it feeds the
//! [`engine`](crate::engine) and checkpoints (the worker's protocol, [`kafka_io::checkpoint`]).
//!
//! Exactly-once effect, without Kafka transactions (which our broker does not fully have):
//! 1. each assigned partition starts from its checkpoint in the store (state + next offset,
//!    one row), or from the beginning; the consumer is positioned there on assignment;
//! 2. every `checkpoint_interval_ms`, and before partitions are revoked or the service stops:
//!    outputs are delivered (KpiWindows, dead letters and late events, awaited with
//!    `acks=all`), dirty daily rows are upserted with complete values together with their
//!    tenant roll-ups (the store keeps those true under concurrent instances), then the checkpoint (state + next offset) is saved, then offsets are
//!    committed to Kafka;
//! 3. any failure stops the process; on restart the replay from the checkpoint recomputes the
//!    same outputs (deterministic engine) and rewrites the same complete rows.
//!
//! A checkpoint that would move an offset back (a stale owner after a rebalance) is refused by
//! the store and the partition is dropped.
//!
//! Resuming is done a little *before* the checkpointed offset, skipping what the state already
//! reflects, and the worker checks the first record fetched (see [`kafka_io::resume_verdict`]): some brokers
//! (Tansu 0.6) answer a fetch from the middle of a record batch with the *next* batch, which
//! would silently skip the rest of the batch (or, inside the last batch, return nothing). A gap
//! is repaired by seeking further back: at a resume, between any two consecutive records, and
//! when a fetch brings nothing while the log holds more.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_io::checkpoint::{lags, OutputSink, Position, Saved, StateStore};
use kafka_io::stored::StoredCheckpoints;
use kafka_io::worker::{Checkpoints, Handler, WorkerConfig};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use schemas::codec::{Decoder, Encoder};
use schemas::time::now_ms;
use schemas::{KpiWindow, TaskEvent, TaskEventView};
use store::{DailyMetric, Store};
use tokio::runtime::Handle;

use crate::daily::to_metric;
use crate::engine::{EngineConfig, Outcome, PartitionState};
use crate::{Error, Result};

/// What the driver needs (the store: daily rows, checkpoints), built by
/// [`kafka_io::service::run`] (or a test) from the settings.
pub type Deps = kafka_io::service::Deps<crate::metrics::Metrics>;

struct Partition {
    state: PartitionState,
    windows: Vec<KpiWindow>,
    deliveries: Vec<DeliveryFuture>,
}

/// The aggregator's state, owned by the worker's handler slot.
struct Aggregator {
    settings: settings::Settings,
    config: EngineConfig,
    store: Arc<dyn Store>,
    /// Each partition's engine state with its next offset.
    checkpoints: StoredCheckpoints,
    runtime: Handle,
    metrics: crate::metrics::Metrics,
    producer: FutureProducer,
    window_encoder: Encoder<KpiWindow>,
    decoder: Decoder<TaskEvent>,
    partitions: HashMap<i32, Partition>,
    /// Daily rows delivered with their windows, to be written (between the checkpoint's steps).
    rows: Vec<DailyMetric>,
    /// The clock at the checkpoint in progress, and when it started.
    checkpoint_now_ms: i64,
    checkpoint_started: Instant,
}

/// Where a record the engine does not count goes.
enum Divert {
    /// Poison (undecodable, invalid, from the future): the dead-letter topic.
    DeadLetter,
    /// Too late to count: the late-events topic.
    Late,
}

impl Handler for Aggregator {
    type Error = Error;

    /// Loads the partition's checkpoint (state + next offset) from the store.
    fn assign(&mut self, partition: i32, _committed: Option<i64>) -> Result<i64> {
        let checkpoint = self.checkpoints.load(partition)?;
        let (state, next_offset) = match checkpoint {
            Some((bytes, next_offset)) => {
                let mut state = PartitionState::from_bytes(&bytes).map_err(|e| Error::CorruptCheckpoint {
                    partition,
                    message: e.to_string(),
                })?;
                // A watermark from the future (written before such events were refused)
                // would stall the partition until the clock gets there: clamped back.
                if let Some(former) = state.clamp_watermark(&self.config, now_ms()) {
                    tracing::warn!(
                        partition,
                        former_watermark_ms = former,
                        watermark_ms = state.watermark_ms(),
                        "restored watermark lay beyond the clock plus events.max_future_skew_secs: clamped back; recompute the days the partition diverted as late meanwhile"
                    );
                    self.metrics.watermarks_clamped.inc();
                }
                (state, next_offset)
            }
            None => (PartitionState::default(), 0),
        };
        tracing::info!(partition, next_offset, "partition restored from checkpoint");
        self.metrics.consumer.ready.store(true, Ordering::Relaxed);
        self.partitions.insert(
            partition,
            Partition {
                state,
                windows: Vec::new(),
                deliveries: Vec::new(),
            },
        );
        Ok(next_offset)
    }

    fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    fn handle(&mut self, message: &BorrowedMessage<'_>, _replayed: bool) -> Result<()> {
        let partition_id = message.partition();
        let payload = message.payload().unwrap_or_default();
        let decoded = match self.decoder.decode_sync_as::<TaskEventView>(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(self.decoder.decode_as(payload)),
            other => other,
        };
        let Some(part) = self.partitions.get_mut(&partition_id) else {
            return Ok(());
        };
        self.metrics.events_in.inc();
        let config = &self.config;
        let topics = &self.settings.kafka.topics;
        let validated = decoded.map_err(|e| (e.reason(), e.to_string())).and_then(|e| {
            match schemas::validation::validate_view(&e) {
                Ok(()) => Ok(e),
                Err(v) => Err(("invalid_event", v.to_string())),
            }
        });
        // A record the engine does not count: to the dead-letter topic (poison) or to the
        // late-events topic, with its reason.
        let diverted = match validated {
            Err((reason, text)) => Some((Divert::DeadLetter, reason, text)),
            Ok(event) => match part.state.process(config, &event, now_ms(), &mut part.windows) {
                Outcome::Accepted | Outcome::Duplicate => None,
                Outcome::Future { limit_ms } => Some((
                    Divert::DeadLetter,
                    "future_event",
                    format!(
                        "completed_at {} is beyond the aggregator's clock plus events.max_future_skew_secs ({limit_ms})",
                        event.completed_at
                    ),
                )),
                Outcome::Late { watermark_ms } => Some((
                    Divert::Late,
                    "late",
                    format!(
                        "completed_at {} is more than {} ms behind the partition watermark {watermark_ms}",
                        event.completed_at, config.allowed_lateness_ms
                    ),
                )),
                Outcome::DayFinalized { day_start_ms } => Some((
                    Divert::Late,
                    "day_final",
                    format!(
                        "completed_at {}: its UTC day (from {day_start_ms}) was finalized by the clock: it had ended more than {} ms before, with the partition read to its end",
                        event.completed_at, config.allowed_lateness_ms
                    ),
                )),
            },
        };
        if let Some((divert, reason, text)) = diverted {
            let topic = match divert {
                Divert::DeadLetter => {
                    tracing::warn!(partition_id, offset = message.offset(), reason, %text, "dead-lettered");
                    self.metrics.dead_lettered.with_label_values(&[reason]).inc();
                    &topics.dead_letter
                }
                Divert::Late => {
                    tracing::debug!(partition_id, offset = message.offset(), reason, %text, "late event diverted");
                    self.metrics.late.inc();
                    &topics.late_events
                }
            };
            part.deliveries.push(kafka_io::send_diverted(
                &self.producer,
                topic,
                message,
                reason,
                &text,
            )?);
        }
        Ok(())
    }

    fn checkpointed(&mut self, positions: &[Position]) -> Result<()> {
        // Lag from the high watermarks of the client's statistics (no request here: a
        // ListOffsets would queue behind the broker's long-polled fetch and delay the checkpoint).
        self.metrics.consumer.set_lags(lags(positions));
        let elapsed = self.checkpoint_started.elapsed();
        self.metrics.checkpoint_seconds.observe(elapsed.as_secs_f64());
        tracing::debug!(
            partitions = positions.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "checkpoint"
        );
        Ok(())
    }
}

impl OutputSink<Error> for Aggregator {
    /// Finalizes the ended days of partitions read to their end (by the clock), then delivers
    /// the KpiWindows, dead letters and late events (`acks=all`); keeps the dirty daily rows
    /// for [`StateStore::write`].
    fn deliver(&mut self, positions: &[Position]) -> Result<()> {
        self.checkpoint_started = Instant::now();
        let now = now_ms();
        self.checkpoint_now_ms = now;
        let mut deliveries = Vec::new();
        for position in positions {
            let Some(part) = self.partitions.get_mut(&position.partition) else {
                continue;
            };
            // The scheduled day finalization: a partition read to its end (as of the client's
            // last statistics) has its ended days finalized by the clock.
            let read_to_end = position
                .high_watermark
                .is_some_and(|high| position.next_offset >= high);
            if self.settings.aggregator.finalize_days_by_clock && read_to_end {
                let days = part.state.finalize_days_by_clock(&self.config, now);
                if days > 0 {
                    tracing::info!(
                        partition_id = position.partition,
                        days,
                        "days finalized by the clock"
                    );
                }
            }
            self.metrics.windows_out.inc_by(part.windows.len() as u64);
            for window in part.windows.drain(..) {
                let key = schemas::series_key(&window.tenant_id, &window.agent_id);
                let payload = self.window_encoder.encode(&window)?;
                let record = FutureRecord::<[u8], [u8]>::to(&self.settings.kafka.topics.kpi_windows)
                    .key(key.as_bytes())
                    .payload(&payload);
                deliveries.push(kafka_io::send_blocking(&self.producer, record)?);
            }
            deliveries.append(&mut part.deliveries);
            self.rows
                .extend(part.state.take_dirty_days().iter().map(|r| to_metric(r, now)));
        }
        self.runtime.block_on(kafka_io::delivered(deliveries))?;
        Ok(())
    }
}

impl StateStore<Error> for Aggregator {
    /// Writes the agent rows with their tenants' roll-ups, which the store keeps true against
    /// the other instances writing agent rows of the same tenants.
    fn write(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        self.runtime
            .block_on(self.store.upsert_daily_metrics_with_rollups(&rows))?;
        let rollups: BTreeSet<(&str, time::Date)> =
            rows.iter().map(|r| (r.tenant_id.as_str(), r.day)).collect();
        self.metrics
            .rows_written
            .inc_by((rows.len() + rollups.len()) as u64);
        Ok(())
    }

    /// Saves the partition's engine state with its next offset (one row).
    fn save(&mut self, position: &Position) -> Result<Saved> {
        let Some(part) = self.partitions.get(&position.partition) else {
            return Ok(Saved::Saved);
        };
        Ok(self
            .checkpoints
            .save(position, part.state.to_bytes(), self.checkpoint_now_ms)?)
    }
}

/// Least time between two checkpoints taken because the input ran dry (a poll returned
/// nothing) with records handled since the last one: a trickle of records does not make every
/// record a checkpoint, and a burst that ends is stored within this time, not a whole
/// `checkpoint_interval_ms` later.
const IDLE_CHECKPOINT_SPACING: Duration = Duration::from_millis(250);

/// Runs the aggregator on the calling thread until `stop` is set (then checkpoints and
/// returns) or a fatal error occurs.
pub fn run(deps: Deps, stop: Arc<AtomicBool>) -> Result<()> {
    let settings = deps.settings;
    let s = &settings.aggregator;
    let interval = Duration::from_millis(s.checkpoint_interval_ms);
    let config = WorkerConfig {
        role: "aggregator".into(),
        topic: settings.kafka.topics.task_events.clone(),
        group: s.consumer_group.clone(),
        assignment: s.assignment.clone(),
        checkpoints: Checkpoints::InStore,
        resume_rewind: i64::from(s.resume_rewind_records),
        poll_timeout: Duration::from_millis(100),
        checkpoint_interval: interval,
        idle_checkpoint_spacing: interval.min(IDLE_CHECKPOINT_SPACING),
    };
    let codecs = kafka_io::codec::Codecs::from_settings(&settings.schema_registry);
    let kafka = settings.kafka.clone();
    let aggregator = Aggregator {
        config: EngineConfig {
            window_ms: i64::from(s.window_secs) * 1000,
            allowed_lateness_ms: i64::from(s.allowed_lateness_secs) * 1000,
            max_future_skew_ms: settings.events.max_future_skew_ms(),
        },
        decoder: codecs.decoder(),
        window_encoder: deps
            .runtime
            .block_on(codecs.encoder::<KpiWindow>(&kafka.topics.kpi_windows))?,
        producer: kafka_io::producer_config(&kafka, "aggregator").create()?,
        checkpoints: StoredCheckpoints::new(
            deps.store.clone(),
            deps.runtime.clone(),
            &config.group,
            &config.topic,
        ),
        store: deps.store,
        runtime: deps.runtime,
        metrics: deps.metrics,
        partitions: HashMap::new(),
        rows: Vec::new(),
        checkpoint_now_ms: 0,
        checkpoint_started: Instant::now(),
        settings,
    };
    kafka_io::worker::run(&kafka, &config, aggregator, &stop)
}
