//! The Kafka and store edge of the alerter: a consumer of anomaly verdicts on its own thread
//! that feeds each partition's [`AlertBook`] and checkpoints (the aggregator's protocol):
//!
//! 1. each assigned partition starts from its checkpoint in the store (open alerts + next
//!    offset, one row) or from the beginning; open alerts are posted to Alertmanager again;
//! 2. every `alerter.checkpoint_interval_ms` (sooner when the input runs dry), and before
//!    partitions are revoked or the service stops: dead letters are delivered, the queued
//!    notifications are delivered to every receiver (retried until each answers), then the
//!    books and next offsets are saved, then offsets are committed to Kafka (for lag only);
//! 3. a crash before the save replays from the checkpoint: the same verdicts give the same
//!    alerts with the same identities, so Alertmanager merges the re-posts, PagerDuty merges
//!    by `dedup_key`, and webhook receivers see the same `id`; a crash after it re-sends nothing.
//!
//! Every `alerter.resend_interval_secs` the open alerts are posted to Alertmanager again, and at
//! once after a delivery to Alertmanager needed retries (it keeps alerts in memory only, so one
//! that restarted has lost them).
//! Resuming starts a little before the checkpoint and checks the first record fetched
//! ([`kafka_io::resume_verdict`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use schemas::codec::Decoder;
use schemas::Anomaly;
use store::{Checkpoint, Store};
use tokio::runtime::Handle;

use crate::alertmanager::rfc3339;
use crate::grouping::{AlertBook, Change, GroupingConfig};
use crate::metrics::Metrics;
use crate::receivers::{now_ms, Outbox, Receivers};
use crate::{Error, Result};
use kafka_io::{resume_verdict, ResumeVerdict};

/// What the service needs, built by `main` (or a test).
pub struct Deps {
    /// Settings of the whole pipeline.
    pub settings: settings::Settings,
    /// The store (checkpoints).
    pub store: Arc<dyn Store>,
    /// Runtime handle for the async clients.
    pub runtime: Handle,
    /// Metrics (shared with the operations endpoints).
    pub metrics: Metrics,
}

struct Partition {
    book: AlertBook,
    next_offset: i64,
    unverified_fetch_from: Option<i64>,
    outbox: Outbox,
    deliveries: Vec<DeliveryFuture>,
}

struct Shared {
    settings: settings::Settings,
    store: Arc<dyn Store>,
    runtime: Handle,
    metrics: Metrics,
    receivers: Receivers,
    producer: FutureProducer,
    partitions: Mutex<HashMap<i32, Partition>>,
    fatal: Mutex<Option<Error>>,
    high_watermarks: Mutex<HashMap<i32, i64>>,
    /// Open alerts restored and not posted again yet.
    resend_due: AtomicBool,
    stop: Arc<AtomicBool>,
}

struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(self.0.topic()) else {
            return;
        };
        let mut highs = self.0.high_watermarks.lock().expect("lock");
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
                let ids = shared.ids();
                if let Err(e) = shared.checkpoint(consumer, &ids) {
                    shared.fail(e);
                }
                shared.partitions.lock().expect("lock").clear();
                tracing::info!(?ids, "partitions revoked");
                let _ = consumer.unassign();
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

impl Shared {
    fn topic(&self) -> &str {
        &self.settings.kafka.topics.anomalies
    }

    fn group(&self) -> &str {
        &self.settings.alerter.consumer_group
    }

    fn rewind(&self) -> i64 {
        i64::from(self.settings.alerter.resume_rewind_records)
    }

    fn grouping(&self) -> GroupingConfig {
        GroupingConfig {
            quiet_ms: (self.settings.alerter.quiet_secs * 1000) as i64,
            critical_ratio: self.settings.alerter.critical_ratio,
        }
    }

    fn ids(&self) -> Vec<i32> {
        self.partitions.lock().expect("lock").keys().copied().collect()
    }

    fn fail(&self, error: Error) {
        tracing::error!(%error, "fatal");
        self.fatal.lock().expect("lock").get_or_insert(error);
    }

    fn refresh_open_gauge(&self, partitions: &HashMap<i32, Partition>) {
        let open: usize = partitions.values().map(|p| p.book.open_count()).sum();
        self.metrics.alerts_open.set(open as i64);
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
            let (book, next_offset) = match checkpoint {
                Some(cp) => (
                    AlertBook::from_bytes(&cp.state).map_err(|e| Error::CorruptCheckpoint {
                        partition,
                        message: e.to_string(),
                    })?,
                    cp.next_offset,
                ),
                None => (AlertBook::default(), 0),
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
                open = book.open_count(),
                "partition assigned, restored from checkpoint"
            );
            partitions.insert(
                partition,
                Partition {
                    book,
                    next_offset,
                    unverified_fetch_from: (next_offset > 0).then_some(fetch_from),
                    outbox: Outbox::default(),
                    deliveries: Vec::new(),
                },
            );
        }
        self.refresh_open_gauge(&partitions);
        self.resend_due.store(true, Ordering::Relaxed);
        self.metrics.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn handle(
        &self,
        consumer: &BaseConsumer<Ctx>,
        decoder: &Decoder<Anomaly>,
        message: &BorrowedMessage<'_>,
    ) -> Result<()> {
        let partition_id = message.partition();
        let offset = message.offset();
        let mut partitions = self.partitions.lock().expect("lock");
        let Some(part) = partitions.get_mut(&partition_id) else {
            return Ok(());
        };
        if let Some(fetch_from) = part.unverified_fetch_from.take() {
            match resume_verdict(fetch_from, part.next_offset, offset, self.rewind()) {
                ResumeVerdict::Covered => {}
                ResumeVerdict::SeekBack(to) => {
                    tracing::warn!(
                        partition_id,
                        fetch_from,
                        first_fetched = offset,
                        seek_to = to,
                        "broker skipped records on resume: seeking further back"
                    );
                    part.unverified_fetch_from = Some(to);
                    consumer.seek(
                        self.topic(),
                        partition_id,
                        Offset::Offset(to),
                        Duration::from_secs(10),
                    )?;
                    return Ok(());
                }
                ResumeVerdict::Lost => {
                    tracing::error!(
                        partition_id,
                        first_fetched = offset,
                        next_offset = part.next_offset,
                        "records the checkpoint needs are no longer in the log"
                    );
                }
            }
        }
        if offset < part.next_offset {
            return Ok(()); // reflected in the restored book
        }
        let payload = message.payload().unwrap_or_default();
        let decoded = match decoder.decode_sync(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(decoder.decode(payload)),
            other => other,
        };
        match decoded {
            Ok(verdict) => {
                self.metrics.verdicts_in.inc();
                for change in part.book.observe(&self.grouping(), &verdict) {
                    match &change {
                        Change::Opened(a) => {
                            self.metrics.alerts_opened.inc();
                            tracing::info!(tenant = %a.tenant, agent = %a.agent, kpi = %a.kpi, severity = a.severity.as_str(), starts_at = %rfc3339(a.starts_at_ms), incident = %a.fingerprint(), "alert opened");
                        }
                        Change::Resolved(a) => {
                            self.metrics.alerts_resolved.inc();
                            tracing::info!(tenant = %a.tenant, agent = %a.agent, kpi = %a.kpi, severity = a.severity.as_str(), starts_at = %rfc3339(a.starts_at_ms), ends_at = %rfc3339(a.ends_at_ms.unwrap_or(a.last_flagged_end_ms)), flagged_windows = a.flagged_windows, incident = %a.fingerprint(), "alert resolved");
                        }
                        Change::Updated(_) => {}
                    }
                    part.outbox.push(&change, verdict.scored_at);
                }
            }
            Err(e) => {
                let reason = e.reason();
                let text = e.to_string();
                tracing::warn!(partition_id, offset, reason, %text, "verdict dead-lettered");
                self.metrics.dead_lettered.with_label_values(&[reason]).inc();
                let headers = kafka_io::dead_letter_headers(&kafka_io::DeadLetter {
                    topic: message.topic(),
                    partition: partition_id,
                    offset,
                    reason,
                    message: &text,
                });
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.kafka.topics.dead_letter)
                    .payload(payload)
                    .headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                part.deliveries
                    .push(kafka_io::send_blocking(&self.producer, record)?);
            }
        }
        part.next_offset = offset + 1;
        Ok(())
    }

    /// Delivers dead letters and notifications, then saves the books with their offsets, then
    /// commits offsets.
    fn checkpoint(&self, consumer: &BaseConsumer<Ctx>, ids: &[i32]) -> Result<()> {
        let started = Instant::now();
        let mut partitions = self.partitions.lock().expect("lock");
        let mut outbox = Outbox::default();
        let mut deliveries = Vec::new();
        for id in ids {
            if let Some(part) = partitions.get_mut(id) {
                outbox.append(std::mem::take(&mut part.outbox));
                deliveries.append(&mut part.deliveries);
            }
        }
        let retried_before = self.alertmanager_retries();
        self.runtime.block_on(async {
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(Error::Kafka(e)),
                    Err(_) => return Err(Error::Kafka(rdkafka::error::KafkaError::Canceled)),
                }
            }
            self.receivers.deliver(&outbox, &self.stop).await
        })?;
        if self.alertmanager_retries() > retried_before {
            // Alertmanager was unreachable: it may have restarted and lost the alerts it held
            // (it keeps them in memory), so the open ones are posted again right away.
            self.resend_due.store(true, Ordering::Relaxed);
        }
        let now = now_ms();
        let mut commit = TopicPartitionList::new();
        let mut dropped = Vec::new();
        for id in ids {
            let Some(part) = partitions.get(id) else { continue };
            let checkpoint = Checkpoint {
                consumer_group: self.group().to_string(),
                topic: self.topic().to_string(),
                partition: *id,
                next_offset: part.next_offset,
                state: part.book.to_bytes(),
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
            if let Err(e) = consumer.commit(&commit, CommitMode::Async) {
                tracing::debug!(%e, "offset commit failed");
            }
        }
        let highs = self.high_watermarks.lock().expect("lock").clone();
        for id in ids {
            if let (Some(part), Some(high)) = (partitions.get(id), highs.get(id)) {
                self.metrics
                    .lag
                    .with_label_values(&[&id.to_string()])
                    .set((high - part.next_offset).max(0));
            }
        }
        self.refresh_open_gauge(&partitions);
        self.metrics.last_checkpoint_timestamp.set(now / 1000);
        self.metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Failed attempts to reach Alertmanager so far.
    fn alertmanager_retries(&self) -> u64 {
        self.metrics.retried.with_label_values(&["alertmanager"]).get()
    }

    /// Posts every open alert to Alertmanager again.
    fn resend(&self) -> Result<()> {
        let open: Vec<_> = {
            let partitions = self.partitions.lock().expect("lock");
            partitions.values().flat_map(|p| p.book.open().cloned()).collect()
        };
        self.runtime
            .block_on(self.receivers.resend(open.iter(), &self.stop))
    }
}

/// Least time between two checkpoints taken because the input ran dry.
const IDLE_CHECKPOINT_SPACING: Duration = Duration::from_millis(100);

/// Runs the alerter on the calling thread until `stop` is set (then checkpoints and returns)
/// or a fatal error occurs.
pub fn run(deps: Deps, stop: Arc<AtomicBool>) -> Result<()> {
    let settings = deps.settings;
    let decoder = kafka_io::codec::Codecs::from_settings(&settings.schema_registry).decoder::<Anomaly>();
    let producer: FutureProducer = kafka_io::producer_config(&settings.kafka, "alerter").create()?;
    let receivers = Receivers::new(&settings.alerter, deps.metrics.clone())?;
    let shared = Arc::new(Shared {
        store: deps.store,
        runtime: deps.runtime,
        metrics: deps.metrics,
        receivers,
        producer,
        partitions: Mutex::new(HashMap::new()),
        fatal: Mutex::new(None),
        high_watermarks: Mutex::new(HashMap::new()),
        resend_due: AtomicBool::new(false),
        stop: stop.clone(),
        settings,
    });
    let mut config = kafka_io::consumer_config(&shared.settings.kafka, "alerter", shared.group());
    config
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "1000");
    let consumer: BaseConsumer<Ctx> = config.create_with_context(Ctx(shared.clone()))?;
    match &shared.settings.alerter.assignment {
        settings::Assignment::Group => consumer.subscribe(&[shared.topic()])?,
        fixed => {
            let mut tpl = kafka_io::fixed_assignment(&consumer, shared.topic(), fixed)?;
            shared.restore(&mut tpl)?;
            consumer.assign(&tpl)?;
        }
    }
    let interval = Duration::from_millis(shared.settings.alerter.checkpoint_interval_ms);
    let resend_every = Duration::from_secs(shared.settings.alerter.resend_interval_secs);
    let mut last_checkpoint = Instant::now();
    let mut last_resend = Instant::now();
    let mut unsaved = 0u64;
    tracing::info!(topic = shared.topic(), group = shared.group(), "alerter running");
    loop {
        if let Some(error) = shared.fatal.lock().expect("lock").take() {
            return Err(error);
        }
        if stop.load(Ordering::Relaxed) {
            shared.checkpoint(&consumer, &shared.ids())?;
            tracing::info!("checkpointed on shutdown");
            return Ok(());
        }
        if shared.resend_due.swap(false, Ordering::Relaxed) || last_resend.elapsed() >= resend_every {
            shared.resend()?;
            last_resend = Instant::now();
        }
        let ran_dry = match consumer.poll(Duration::from_millis(50)) {
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
            shared.checkpoint(&consumer, &shared.ids())?;
            last_checkpoint = Instant::now();
            unsaved = 0;
        }
    }
}
