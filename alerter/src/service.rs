//! The Kafka and store edge of the alerter: the handler of anomaly verdicts that the shared
//! consumer worker ([`kafka_io::worker`]) runs on its own thread; it feeds each partition's
//! [`AlertBook`] and checkpoints (the worker's protocol, [`kafka_io::checkpoint`]):
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
//! Resuming starts a little before the checkpoint and the worker checks the first record fetched
//! ([`kafka_io::resume_verdict`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_io::checkpoint::{lags, OutputSink, Position, Saved, StateStore};
use kafka_io::stored::StoredCheckpoints;
use kafka_io::worker::{Checkpoints, Handler, WorkerConfig};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use schemas::codec::Decoder;
use schemas::time::now_ms;
use schemas::Anomaly;
use tokio::runtime::Handle;

use crate::alertmanager::rfc3339;
use crate::grouping::{AlertBook, Change, GroupingConfig};
use crate::metrics::Metrics;
use crate::receivers::{Outbox, Receivers};
use crate::{Error, Result};

/// What the service needs (the store: checkpoints), built by [`kafka_io::service::run`] (or a
/// test).
pub type Deps = kafka_io::service::Deps<Metrics>;

struct Partition {
    book: AlertBook,
    outbox: Outbox,
    deliveries: Vec<DeliveryFuture>,
}

/// The alerter's state, owned by the worker's handler slot.
struct Alerter {
    settings: settings::Settings,
    /// Each partition's open alerts with its next offset.
    checkpoints: StoredCheckpoints,
    runtime: Handle,
    metrics: Metrics,
    receivers: Receivers,
    producer: FutureProducer,
    decoder: Decoder<Anomaly>,
    partitions: HashMap<i32, Partition>,
    /// Open alerts restored (or possibly lost by Alertmanager) and not posted again yet.
    resend_due: bool,
    last_resend: Instant,
    /// When the checkpoint in progress started.
    checkpoint_started: Instant,
    stop: Arc<AtomicBool>,
}

impl Alerter {
    fn grouping(&self) -> GroupingConfig {
        GroupingConfig {
            quiet_ms: (self.settings.alerter.quiet_secs * 1000) as i64,
            critical_ratio: self.settings.alerter.critical_ratio,
        }
    }

    fn refresh_open_gauge(&self) {
        let open: usize = self.partitions.values().map(|p| p.book.open_count()).sum();
        self.metrics.alerts_open.set(open as i64);
    }

    /// Failed attempts to reach Alertmanager so far.
    fn alertmanager_retries(&self) -> u64 {
        self.metrics.retried.with_label_values(&["alertmanager"]).get()
    }

    /// Posts every open alert to Alertmanager again.
    fn resend(&self) -> Result<()> {
        let open: Vec<_> = self
            .partitions
            .values()
            .flat_map(|p| p.book.open().cloned())
            .collect();
        self.runtime
            .block_on(self.receivers.resend(open.iter(), &self.stop))
    }
}

impl Handler for Alerter {
    type Error = Error;

    /// Loads the partition's checkpoint (open alerts + next offset) from the store.
    fn assign(&mut self, partition: i32, _committed: Option<i64>) -> Result<i64> {
        let checkpoint = self.checkpoints.load(partition)?;
        let (book, next_offset) = match checkpoint {
            Some((state, next_offset)) => (
                AlertBook::from_bytes(&state).map_err(|e| Error::CorruptCheckpoint {
                    partition,
                    message: e.to_string(),
                })?,
                next_offset,
            ),
            None => (AlertBook::default(), 0),
        };
        tracing::info!(
            partition,
            next_offset,
            open = book.open_count(),
            "partition assigned, restored from checkpoint"
        );
        self.partitions.insert(
            partition,
            Partition {
                book,
                outbox: Outbox::default(),
                deliveries: Vec::new(),
            },
        );
        self.refresh_open_gauge();
        self.resend_due = true;
        self.metrics.consumer.ready.store(true, Ordering::Relaxed);
        Ok(next_offset)
    }

    fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    fn handle(&mut self, message: &BorrowedMessage<'_>, _replayed: bool) -> Result<()> {
        let partition_id = message.partition();
        let offset = message.offset();
        let grouping = self.grouping();
        let Some(part) = self.partitions.get_mut(&partition_id) else {
            return Ok(());
        };
        let payload = message.payload().unwrap_or_default();
        let decoded = match self.decoder.decode_sync(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(self.decoder.decode(payload)),
            other => other,
        };
        match decoded {
            Ok(verdict) => {
                self.metrics.verdicts_in.inc();
                for change in part.book.observe(&grouping, &verdict) {
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
                part.deliveries.push(kafka_io::send_diverted(
                    &self.producer,
                    &self.settings.kafka.topics.dead_letter,
                    message,
                    reason,
                    &text,
                )?);
            }
        }
        Ok(())
    }

    /// Posts the open alerts again when due (after a restore, after Alertmanager was
    /// unreachable, every `alerter.resend_interval_secs`).
    fn tick(&mut self) -> Result<()> {
        let every = Duration::from_secs(self.settings.alerter.resend_interval_secs);
        if std::mem::take(&mut self.resend_due) || self.last_resend.elapsed() >= every {
            self.resend()?;
            self.last_resend = Instant::now();
        }
        Ok(())
    }

    fn checkpointed(&mut self, positions: &[Position]) -> Result<()> {
        self.metrics.consumer.set_lags(lags(positions));
        self.refresh_open_gauge();
        self.metrics.last_checkpoint_timestamp.set(now_ms() / 1000);
        self.metrics
            .checkpoint_seconds
            .observe(self.checkpoint_started.elapsed().as_secs_f64());
        Ok(())
    }
}

impl OutputSink<Error> for Alerter {
    /// Delivers the dead letters, then the queued notifications to every receiver.
    fn deliver(&mut self, positions: &[Position]) -> Result<()> {
        self.checkpoint_started = Instant::now();
        let mut outbox = Outbox::default();
        let mut deliveries = Vec::new();
        for p in positions {
            if let Some(part) = self.partitions.get_mut(&p.partition) {
                outbox.append(std::mem::take(&mut part.outbox));
                deliveries.append(&mut part.deliveries);
            }
        }
        let retried_before = self.alertmanager_retries();
        self.runtime.block_on(async {
            kafka_io::delivered(deliveries).await?;
            self.receivers.deliver(&outbox, &self.stop).await
        })?;
        if self.alertmanager_retries() > retried_before {
            // Alertmanager was unreachable: it may have restarted and lost the alerts it held
            // (it keeps them in memory), so the open ones are posted again right away.
            self.resend_due = true;
        }
        Ok(())
    }
}

impl StateStore<Error> for Alerter {
    /// Nothing but the checkpoints is stored.
    fn write(&mut self) -> Result<()> {
        Ok(())
    }

    /// Saves the partition's book with its next offset (one row).
    fn save(&mut self, position: &Position) -> Result<Saved> {
        let Some(part) = self.partitions.get(&position.partition) else {
            return Ok(Saved::Saved);
        };
        Ok(self.checkpoints.save(position, part.book.to_bytes(), now_ms())?)
    }
}

/// Least time between two checkpoints taken because the input ran dry.
const IDLE_CHECKPOINT_SPACING: Duration = Duration::from_millis(100);

/// Runs the alerter on the calling thread until `stop` is set (then checkpoints and returns)
/// or a fatal error occurs.
pub fn run(deps: Deps, stop: Arc<AtomicBool>) -> Result<()> {
    let settings = deps.settings;
    let kafka = settings.kafka.clone();
    let s = &settings.alerter;
    let config = WorkerConfig {
        role: "alerter".into(),
        topic: settings.kafka.topics.anomalies.clone(),
        group: s.consumer_group.clone(),
        assignment: s.assignment.clone(),
        checkpoints: Checkpoints::InStore,
        resume_rewind: i64::from(s.resume_rewind_records),
        poll_timeout: Duration::from_millis(50),
        checkpoint_interval: Duration::from_millis(s.checkpoint_interval_ms),
        idle_checkpoint_spacing: IDLE_CHECKPOINT_SPACING,
    };
    let alerter = Alerter {
        decoder: kafka_io::codec::Codecs::from_settings(&settings.schema_registry).decoder(),
        producer: kafka_io::producer_config(&settings.kafka, "alerter").create()?,
        receivers: Receivers::new(s, deps.metrics.clone())?,
        checkpoints: StoredCheckpoints::new(deps.store, deps.runtime.clone(), &config.group, &config.topic),
        runtime: deps.runtime,
        metrics: deps.metrics,
        partitions: HashMap::new(),
        resend_due: false,
        last_resend: Instant::now(),
        checkpoint_started: Instant::now(),
        stop: stop.clone(),
        settings,
    };
    kafka_io::worker::run(&kafka, &config, alerter, &stop)
}
