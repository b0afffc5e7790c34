//! The Kafka and store edge of the aggregator: a consumer-group member on its own thread that
//! feeds the [`engine`](crate::engine) and checkpoints.
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
//! reflects, and the first record fetched is checked (see [`kafka_io::resume_verdict`]): some brokers
//! (Tansu 0.6) answer a fetch from the middle of a record batch with the *next* batch, which
//! would silently skip the rest of the batch. A gap is repaired by seeking further back.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use schemas::codec::{Decoder, Encoder};
use schemas::{KpiWindow, TaskEvent, TaskEventView};
use store::{Checkpoint, Store};
use tokio::runtime::Handle;

use crate::daily::to_metric;
use crate::engine::{EngineConfig, Outcome, PartitionState};
use crate::{Error, Result};
use kafka_io::{resume_verdict, ResumeVerdict};

/// What the driver needs, built by `main` (or a test) from the settings.
pub struct Deps {
    /// Settings of the whole pipeline.
    pub settings: settings::Settings,
    /// The store (daily rows, checkpoints).
    pub store: Arc<dyn Store>,
    /// Runtime handle for the async clients.
    pub runtime: Handle,
    /// Metrics (shared with the operations endpoints).
    pub metrics: crate::metrics::Metrics,
}

struct Partition {
    state: PartitionState,
    next_offset: i64,
    /// Where the current fetch started, until its first record was checked.
    unverified_fetch_from: Option<i64>,
    windows: Vec<KpiWindow>,
    deliveries: Vec<DeliveryFuture>,
}

struct Shared {
    settings: settings::Settings,
    store: Arc<dyn Store>,
    runtime: Handle,
    metrics: crate::metrics::Metrics,
    producer: FutureProducer,
    window_encoder: Encoder<KpiWindow>,
    partitions: Mutex<HashMap<i32, Partition>>,
    /// A fatal error raised inside a rebalance callback, re-raised by the loop.
    fatal: Mutex<Option<Error>>,
    /// High watermark per input partition, from the client's statistics (for the lag gauge).
    high_watermarks: Mutex<HashMap<i32, i64>>,
}

struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(self.0.topic()) else {
            return;
        };
        let mut highs = self.0.high_watermarks.lock().expect("watermarks lock");
        for p in topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
        {
            highs.insert(p.partition, p.hi_offset);
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let shared = &self.0;
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = shared.restore(tpl) {
                    shared.fail(e);
                }
                if let Err(e) = consumer.assign(tpl) {
                    shared.fail(e.into());
                }
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = shared.partitions.lock().expect("lock").keys().copied().collect();
                if let Err(e) = shared.checkpoint(consumer, &partitions) {
                    shared.fail(e);
                }
                shared.partitions.lock().expect("lock").clear();
                tracing::info!(?partitions, "partitions revoked");
                let _ = consumer.unassign();
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Where a record the engine does not count goes.
enum Divert {
    /// Poison (undecodable, invalid, from the future): the dead-letter topic.
    DeadLetter,
    /// Too late to count: the late-events topic.
    Late,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Shared {
    fn topic(&self) -> &str {
        &self.settings.kafka.topics.task_events
    }

    fn group(&self) -> &str {
        &self.settings.aggregator.consumer_group
    }

    fn rewind(&self) -> i64 {
        i64::from(self.settings.aggregator.resume_rewind_records)
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            window_ms: i64::from(self.settings.aggregator.window_secs) * 1000,
            allowed_lateness_ms: i64::from(self.settings.aggregator.allowed_lateness_secs) * 1000,
            max_future_skew_ms: self.settings.events.max_future_skew_ms(),
        }
    }

    fn fail(&self, error: Error) {
        tracing::error!(%error, "fatal");
        self.fatal.lock().expect("lock").get_or_insert(error);
    }

    /// Loads the checkpoints of newly assigned partitions and positions `tpl` at them.
    fn restore(&self, tpl: &mut TopicPartitionList) -> Result<()> {
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut partitions = self.partitions.lock().expect("lock");
        for (topic, partition) in assigned {
            let checkpoint =
                self.runtime
                    .block_on(self.store.load_checkpoint(self.group(), &topic, partition))?;
            let (state, next_offset) = match checkpoint {
                Some(cp) => {
                    let mut state =
                        PartitionState::from_bytes(&cp.state).map_err(|e| Error::CorruptCheckpoint {
                            partition,
                            message: e.to_string(),
                        })?;
                    // A watermark from the future (written before such events were refused)
                    // would stall the partition until the clock gets there: clamped back.
                    let config = self.engine_config();
                    if let Some(former) = state.clamp_watermark(&config, now_ms()) {
                        tracing::warn!(
                            partition,
                            former_watermark_ms = former,
                            watermark_ms = state.watermark_ms(),
                            "restored watermark lay beyond the clock plus events.max_future_skew_secs: clamped back; recompute the days the partition diverted as late meanwhile"
                        );
                        self.metrics.watermarks_clamped.inc();
                    }
                    (state, cp.next_offset)
                }
                None => (PartitionState::default(), 0),
            };
            let fetch_from = (next_offset - self.rewind()).max(0);
            let offset = if fetch_from > 0 {
                Offset::Offset(fetch_from)
            } else {
                Offset::Beginning
            };
            tpl.set_partition_offset(&topic, partition, offset)?;
            tracing::info!(
                partition,
                next_offset,
                fetch_from,
                "partition assigned, restored from checkpoint"
            );
            self.metrics
                .ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let unverified_fetch_from = (next_offset > 0).then_some(fetch_from);
            partitions.insert(
                partition,
                Partition {
                    state,
                    next_offset,
                    unverified_fetch_from,
                    windows: Vec::new(),
                    deliveries: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<rdkafka::message::OwnedHeaders>,
    ) -> Result<DeliveryFuture> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        Ok(kafka_io::send_blocking(&self.producer, record)?)
    }

    fn divert(
        &self,
        topic: &str,
        message: &BorrowedMessage<'_>,
        reason: &str,
        text: &str,
    ) -> Result<DeliveryFuture> {
        let headers = kafka_io::dead_letter_headers(&kafka_io::DeadLetter {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            reason,
            message: text,
        });
        self.send(
            topic,
            message.key(),
            message.payload().unwrap_or_default(),
            Some(headers),
        )
    }

    fn handle(
        &self,
        consumer: &BaseConsumer<Ctx>,
        decoder: &Decoder<TaskEvent>,
        message: &BorrowedMessage<'_>,
    ) -> Result<()> {
        let config = self.engine_config();
        let partition_id = message.partition();
        {
            let mut partitions = self.partitions.lock().expect("lock");
            let Some(part) = partitions.get_mut(&partition_id) else {
                return Ok(());
            };
            if let Some(fetch_from) = part.unverified_fetch_from.take() {
                match resume_verdict(fetch_from, part.next_offset, message.offset(), self.rewind()) {
                    ResumeVerdict::Covered => {}
                    ResumeVerdict::SeekBack(offset) => {
                        tracing::warn!(
                            partition_id,
                            fetch_from,
                            first_fetched = message.offset(),
                            next_offset = part.next_offset,
                            seek_to = offset,
                            "broker skipped records on resume: seeking further back"
                        );
                        part.unverified_fetch_from = Some(offset);
                        consumer.seek(
                            self.topic(),
                            partition_id,
                            Offset::Offset(offset),
                            Duration::from_secs(10),
                        )?;
                        return Ok(());
                    }
                    ResumeVerdict::Lost => {
                        tracing::error!(
                            partition_id,
                            first_fetched = message.offset(),
                            next_offset = part.next_offset,
                            "records the checkpoint needs are no longer in the log"
                        );
                    }
                }
            }
        }
        let payload = message.payload().unwrap_or_default();
        let decoded = match decoder.decode_sync_as::<TaskEventView>(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(decoder.decode_as(payload)),
            other => other,
        };
        let mut partitions = self.partitions.lock().expect("lock");
        let Some(part) = partitions.get_mut(&partition_id) else {
            return Ok(());
        };
        if message.offset() < part.next_offset {
            return Ok(()); // already reflected in the restored state
        }
        self.metrics.events_in.inc();
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
            Ok(event) => match part.state.process(&config, &event, now_ms(), &mut part.windows) {
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
            part.deliveries.push(self.divert(topic, message, reason, &text)?);
        }
        part.next_offset = message.offset() + 1;
        Ok(())
    }

    /// Delivers outputs, writes daily rows and roll-ups, saves checkpoints, commits offsets.
    fn checkpoint(&self, consumer: &BaseConsumer<Ctx>, partition_ids: &[i32]) -> Result<()> {
        let started = Instant::now();
        let mut partitions = self.partitions.lock().expect("lock");
        let mut deliveries = Vec::new();
        let mut rows = Vec::new();
        let now = now_ms();
        let highs = self.high_watermarks.lock().expect("watermarks lock").clone();
        let config = self.engine_config();
        for id in partition_ids {
            let Some(part) = partitions.get_mut(id) else {
                continue;
            };
            // The scheduled day finalization: a partition read to its end (as of the client's
            // last statistics) has its ended days finalized by the clock.
            let read_to_end = highs.get(id).is_some_and(|high| part.next_offset >= *high);
            if self.settings.aggregator.finalize_days_by_clock && read_to_end {
                let days = part.state.finalize_days_by_clock(&config, now);
                if days > 0 {
                    tracing::info!(partition_id = id, days, "days finalized by the clock");
                }
            }
            self.metrics.windows_out.inc_by(part.windows.len() as u64);
            for window in part.windows.drain(..) {
                let key = schemas::series_key(&window.tenant_id, &window.agent_id);
                let payload = self.window_encoder.encode(&window)?;
                deliveries.push(self.send(
                    &self.settings.kafka.topics.kpi_windows,
                    Some(key.as_bytes()),
                    &payload,
                    None,
                )?);
            }
            deliveries.append(&mut part.deliveries);
            rows.extend(part.state.take_dirty_days().iter().map(|r| to_metric(r, now)));
        }
        self.runtime.block_on(async {
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(Error::Kafka(e)),
                    Err(_) => return Err(Error::Kafka(rdkafka::error::KafkaError::Canceled)),
                }
            }
            // Agent rows and their tenants' roll-ups, which the store keeps true against the
            // other instances writing agent rows of the same tenants.
            self.store.upsert_daily_metrics_with_rollups(&rows).await?;
            let rollups: BTreeSet<(&str, time::Date)> =
                rows.iter().map(|r| (r.tenant_id.as_str(), r.day)).collect();
            self.metrics
                .rows_written
                .inc_by((rows.len() + rollups.len()) as u64);
            Ok::<(), Error>(())
        })?;
        let mut commit = TopicPartitionList::new();
        let mut dropped = Vec::new();
        for id in partition_ids {
            let Some(part) = partitions.get(id) else { continue };
            let checkpoint = Checkpoint {
                consumer_group: self.group().to_string(),
                topic: self.topic().to_string(),
                partition: *id,
                next_offset: part.next_offset,
                state: part.state.to_bytes(),
                updated_at_ms: now,
            };
            match self.runtime.block_on(self.store.save_checkpoint(&checkpoint)) {
                Ok(()) => commit.add_partition_offset(self.topic(), *id, Offset::Offset(part.next_offset))?,
                Err(store::Error::CheckpointRegression {
                    stored, attempted, ..
                }) => {
                    tracing::warn!(
                        partition = id,
                        stored,
                        attempted,
                        "another owner is ahead: dropping partition"
                    );
                    dropped.push(*id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        for id in dropped {
            partitions.remove(&id);
        }
        if commit.count() > 0 {
            // Informational (lag monitoring): positions come from the store's checkpoints.
            if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
                tracing::debug!(%e, "offset commit failed");
            }
        }
        // Lag from the high watermarks of the client's statistics (no request here: a
        // ListOffsets would queue behind the broker's long-polled fetch and delay the checkpoint).
        for id in partition_ids {
            if let (Some(part), Some(high)) = (partitions.get(id), highs.get(id).copied()) {
                self.metrics
                    .lag
                    .with_label_values(&[&id.to_string()])
                    .set((high - part.next_offset).max(0));
            }
        }
        self.metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            partitions = partition_ids.len(),
            rows = rows.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint"
        );
        Ok(())
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
    let codecs = kafka_io::codec::Codecs::from_settings(&settings.schema_registry);
    let decoder = codecs.decoder::<TaskEvent>();
    let window_encoder = deps
        .runtime
        .block_on(codecs.encoder::<KpiWindow>(&settings.kafka.topics.kpi_windows))?;
    let producer: FutureProducer = kafka_io::producer_config(&settings.kafka, "aggregator").create()?;
    let shared = Arc::new(Shared {
        store: deps.store,
        runtime: deps.runtime,
        metrics: deps.metrics,
        producer,
        window_encoder,
        partitions: Mutex::new(HashMap::new()),
        fatal: Mutex::new(None),
        high_watermarks: Mutex::new(HashMap::new()),
        settings,
    });
    let mut config = kafka_io::consumer_config(&shared.settings.kafka, "aggregator", shared.group());
    config
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "1000");
    let consumer: BaseConsumer<Ctx> = config.create_with_context(Ctx(shared.clone()))?;
    match &shared.settings.aggregator.assignment {
        settings::Assignment::Group => consumer.subscribe(&[shared.topic()])?,
        fixed => {
            let mut tpl = kafka_io::fixed_assignment(&consumer, shared.topic(), fixed)?;
            shared.restore(&mut tpl)?;
            consumer.assign(&tpl)?;
        }
    }
    let interval = Duration::from_millis(shared.settings.aggregator.checkpoint_interval_ms);
    let mut last_checkpoint = Instant::now();
    // Records handled since the last checkpoint: when the input runs dry they are checkpointed
    // (rows stored, windows published) at once instead of at the next interval.
    let mut unsaved = 0u64;
    tracing::info!(
        topic = shared.topic(),
        group = shared.group(),
        "aggregator running"
    );
    loop {
        if let Some(error) = shared.fatal.lock().expect("lock").take() {
            return Err(error);
        }
        if stop.load(Ordering::Relaxed) {
            let ids: Vec<i32> = shared.partitions.lock().expect("lock").keys().copied().collect();
            shared.checkpoint(&consumer, &ids)?;
            tracing::info!("checkpointed on shutdown");
            return Ok(());
        }
        let ran_dry = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                shared.handle(&consumer, &decoder, &message)?;
                unsaved += 1;
                false
            }
            Some(Err(e)) => {
                tracing::warn!(%e, "consumer error");
                false
            }
            None => true,
        };
        let since = last_checkpoint.elapsed();
        if since >= interval || (ran_dry && unsaved > 0 && since >= interval.min(IDLE_CHECKPOINT_SPACING)) {
            let ids: Vec<i32> = shared.partitions.lock().expect("lock").keys().copied().collect();
            shared.checkpoint(&consumer, &ids)?;
            last_checkpoint = Instant::now();
            unsaved = 0;
        }
    }
}
