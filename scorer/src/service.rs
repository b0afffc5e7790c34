//! The Kafka edge of the scorer: a consumer of `KpiWindow`s on its own thread that scores in
//! micro-batches and publishes an `Anomaly` verdict for every scored window.
//!
//! Each micro-batch (up to `scorer.max_batch` windows, or what arrived within 100 ms) is scored
//! with both models in one call each, its verdicts are delivered to the anomaly topic
//! (`acks=all`), the flagged ones are upserted into the store with every window of the batch
//! and its verdict (`kpi_windows`, for the dashboards; a series' first windows, read before its
//! model input is full, are stored without a verdict), and only then are the input offsets
//! committed. Verdict ids are deterministic (window id, revision, model version), so a
//! crash between delivery and commit replays to the same records.
//!
//! The per-series state (each series' detector with its baselines, and its last windows) is
//! not checkpointed but rebuilt by replay: on assignment a partition is read from
//! `scorer.resume_rewind_records` before its committed offset, and the windows before the
//! committed offset are read by the detectors without being scored again (they were published
//! before the restart). The detector is deterministic, so a replay that covers a series' whole
//! history restores it exactly; a shorter one starts the series cold (no alarm until it has
//! seen `detector.warmup_windows` windows). The first record fetched is checked with
//! [`kafka_io::resume_verdict`].
//!
//! Every `scorer.reload_interval_ms` the model directory is checked; a new set that loads and
//! passes its checks replaces the old one between batches (one that does not is refused, and
//! the old one keeps scoring).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use schemas::codec::{Decoder, Encoder};
use schemas::{Anomaly, FeatureContribution, KpiExplanation, KpiWindow};
use store::Store;
use tokio::runtime::Handle;

use crate::buffer::{Push, SeriesBuffer};
use crate::detector::{Evidence, KPIS};
use crate::features::{self, FEATURES};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::models::{Batch, ModelSet, StatInput};
use crate::scoring::{top_features, Verdict};
use crate::{Error, Result};
use kafka_io::{resume_verdict, ResumeVerdict};

/// How many contributing features a verdict names.
pub const TOP_FEATURES: usize = 3;
/// How many KPIs a verdict explains.
pub const EXPLAINED_KPIS: usize = 3;
/// Longest a window waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(100);

/// What the service needs, built by `main` (or a test).
pub struct Deps {
    /// Settings of the whole pipeline.
    pub settings: settings::Settings,
    /// The store (flagged anomalies).
    pub store: Arc<dyn Store>,
    /// Runtime handle for the async clients.
    pub runtime: Handle,
    /// The loaded model set.
    pub models: ModelSet,
    /// Metrics (shared with the operations endpoints).
    pub metrics: Metrics,
}

/// The verdict record of `window` (its identity fields; the counts are not repeated).
pub fn anomaly_of(
    window: &KpiWindow,
    verdict: &Verdict,
    evidence: &Evidence,
    manifest: &Manifest,
    scored_at: i64,
) -> Anomaly {
    Anomaly {
        anomaly_id: Anomaly::id_for(&window.window_id, window.revision, &manifest.version),
        window_id: window.window_id.clone(),
        tenant_id: window.tenant_id.clone(),
        agent_id: window.agent_id.clone(),
        window_start: window.window_start,
        window_end: window.window_end,
        lstm_score: verdict.lstm_raw,
        transformer_score: verdict.transformer_raw,
        lstm_normalized: verdict.lstm_normalized,
        transformer_normalized: verdict.transformer_normalized,
        ensemble_score: verdict.ensemble,
        threshold: manifest.ensemble.threshold,
        is_anomaly: verdict.is_anomaly,
        top_features: top_features(&verdict.contributions, &FEATURES, TOP_FEATURES)
            .into_iter()
            .map(|(feature, contribution)| FeatureContribution {
                feature: feature.to_string(),
                contribution,
            })
            .collect(),
        model_version: manifest.version.clone(),
        scored_at,
        statistical_score: Some(verdict.statistical),
        explanation: explanation(evidence),
    }
}

/// The dashboard row of `window` with its verdict (`None`: read, not scored), written at `now`.
pub fn window_row(window: &KpiWindow, verdict: Option<&Anomaly>, now: i64) -> store::KpiWindowRow {
    store::KpiWindowRow {
        tenant_id: window.tenant_id.clone(),
        agent_id: window.agent_id.clone(),
        window_start: window.window_start,
        window_end: window.window_end,
        revision: window.revision,
        tasks_total: window.tasks_total,
        succeeded: window.succeeded,
        failed: window.failed,
        cancelled: window.cancelled,
        tasks_with_intervention: window.tasks_with_intervention,
        interventions: window.interventions,
        cost_micros: window.cost_micros,
        latency_p50_ms: window.latency_p50_ms,
        latency_p95_ms: window.latency_p95_ms,
        latency_p99_ms: window.latency_p99_ms,
        verdict: verdict.map(|a| store::WindowVerdict {
            lstm_score: a.lstm_normalized,
            transformer_score: a.transformer_normalized,
            statistical_score: a.statistical_score,
            ensemble_score: a.ensemble_score,
            threshold: a.threshold,
            is_anomaly: a.is_anomaly,
            model_version: a.model_version.clone(),
            explanation: a.explanation.clone(),
        }),
        updated_at_ms: now,
    }
}

/// The KPIs with accumulated evidence, most first, next to what is normal for the series
/// (entries with a value that is not finite are left out: they could not be stored as JSON).
pub fn explanation(evidence: &Evidence) -> Vec<KpiExplanation> {
    evidence
        .ranked()
        .into_iter()
        .filter_map(|k| {
            let x = evidence.expected[k]?;
            let finite = [x.observed, x.expected, x.low, x.high, evidence.cusum[k]]
                .iter()
                .all(|v| v.is_finite());
            finite.then(|| KpiExplanation {
                kpi: KPIS[k].to_string(),
                observed: x.observed,
                expected: x.expected,
                low: x.low,
                high: x.high,
                evidence: evidence.cusum[k],
            })
        })
        .take(EXPLAINED_KPIS)
        .collect()
}

type SeriesKey = (String, String);

struct Partition {
    buffers: HashMap<SeriesKey, SeriesBuffer>,
    /// Windows before this offset were published before (warm-up only).
    publish_from: i64,
    /// Next offset to consume; committed after the batch covering it.
    next_offset: i64,
    committed: i64,
    unverified_fetch_from: Option<i64>,
}

#[derive(Default)]
struct Pending {
    windows: Vec<KpiWindow>,
    /// Windows read but not scored (no full model input yet): stored without a verdict.
    unscored: Vec<KpiWindow>,
    evidence: Vec<Evidence>,
    batch: Batch,
    since: Option<Instant>,
}

struct Shared {
    settings: settings::Settings,
    store: Arc<dyn Store>,
    runtime: Handle,
    producer: FutureProducer,
    encoder: Encoder<Anomaly>,
    metrics: Metrics,
    /// Everything the consumer thread changes, behind one lock: there is no second lock to take
    /// in another order (`fatal` is a leaf: nothing is locked while it is held).
    state: Mutex<State>,
    fatal: Mutex<Option<Error>>,
}

/// The scorer's mutable state.
struct State {
    models: ModelSet,
    partitions: HashMap<i32, Partition>,
    pending: Pending,
}

struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(self.0.topic()) else {
            return;
        };
        for p in topic.partitions.values() {
            if p.partition >= 0 && p.consumer_lag >= 0 {
                self.0
                    .metrics
                    .lag
                    .with_label_values(&[&p.partition.to_string()])
                    .set(p.consumer_lag);
            }
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
                if let Err(e) = shared
                    .position(consumer, tpl)
                    .and_then(|_| Ok(consumer.assign(tpl)?))
                {
                    shared.fail(e);
                }
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = shared.flush(consumer) {
                    shared.fail(e);
                }
                shared.state().partitions.clear();
                let _ = consumer.unassign();
            }
            other => tracing::error!(?other, "rebalance error"),
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Shared {
    fn topic(&self) -> &str {
        &self.settings.kafka.topics.kpi_windows
    }

    fn rewind(&self) -> i64 {
        self.settings.scorer.resume_rewind_records
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    fn fail(&self, error: Error) {
        tracing::error!(%error, "fatal");
        self.fatal.lock().expect("lock").get_or_insert(error);
    }

    /// Positions newly assigned partitions a little before their committed offsets.
    fn position(&self, consumer: &BaseConsumer<Ctx>, tpl: &mut TopicPartitionList) -> Result<()> {
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(30))?;
        let partitions = &mut self.state().partitions;
        for element in committed.elements() {
            let next = match element.offset() {
                Offset::Offset(o) if o >= 0 => o,
                _ => 0,
            };
            let fetch_from = (next - self.rewind()).max(0);
            let offset = if fetch_from > 0 {
                Offset::Offset(fetch_from)
            } else {
                Offset::Beginning
            };
            tpl.set_partition_offset(element.topic(), element.partition(), offset)?;
            tracing::info!(
                partition = element.partition(),
                next,
                fetch_from,
                "partition assigned"
            );
            partitions.insert(
                element.partition(),
                Partition {
                    buffers: HashMap::new(),
                    publish_from: next,
                    next_offset: next,
                    committed: next,
                    unverified_fetch_from: (next > 0).then_some(fetch_from),
                },
            );
        }
        self.metrics.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn handle(
        &self,
        consumer: &BaseConsumer<Ctx>,
        decoder: &Decoder<KpiWindow>,
        message: &BorrowedMessage<'_>,
    ) -> Result<()> {
        let partition_id = message.partition();
        let offset = message.offset();
        let mut state = self.state();
        let State {
            models,
            partitions,
            pending,
        } = &mut *state;
        let Some(part) = partitions.get_mut(&partition_id) else {
            return Ok(());
        };
        if let Some(fetch_from) = part.unverified_fetch_from.take() {
            match resume_verdict(fetch_from, part.publish_from, offset, self.rewind()) {
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
                ResumeVerdict::Lost => tracing::warn!(
                    partition_id,
                    "records before the committed offset are gone: buffers start short"
                ),
            }
        }
        self.metrics.windows_in.inc();
        part.next_offset = part.next_offset.max(offset + 1);
        let payload = message.payload().unwrap_or_default();
        let decoded = match decoder.decode_sync(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(decoder.decode(payload)),
            other => other,
        };
        let window = match decoded {
            Ok(w) => w,
            Err(e) => {
                self.metrics
                    .windows_skipped
                    .with_label_values(&["undecodable"])
                    .inc();
                if offset >= part.publish_from {
                    let headers = kafka_io::dead_letter_headers(&kafka_io::DeadLetter {
                        topic: message.topic(),
                        partition: partition_id,
                        offset,
                        reason: "undecodable",
                        message: &e.to_string(),
                    });
                    let mut record = FutureRecord::<[u8], [u8]>::to(&self.settings.kafka.topics.dead_letter)
                        .payload(payload)
                        .headers(headers);
                    if let Some(key) = message.key() {
                        record = record.key(key);
                    }
                    let delivery = kafka_io::send_blocking(&self.producer, record)?;
                    self.runtime
                        .block_on(delivery)
                        .map_err(|_| Error::Delivery("dead letter cancelled".into()))?
                        .map_err(|(e, _)| e)?;
                }
                return Ok(());
            }
        };
        let (period, len) = (models.manifest.window_ms(), models.manifest.sequence_length);
        if window.window_end - window.window_start != period {
            self.metrics
                .windows_skipped
                .with_label_values(&["window_length"])
                .inc();
            tracing::warn!(window_id = %window.window_id, length_ms = window.window_end - window.window_start, model_ms = period, "window length differs from the model's: not scored");
            return Ok(());
        }
        let buffer = part
            .buffers
            .entry((window.tenant_id.clone(), window.agent_id.clone()))
            .or_insert_with(|| SeriesBuffer::new(period, len));
        match buffer.push(
            &features::stats_of(&window),
            window.revision,
            &models.manifest.detector,
        ) {
            Push::Ready(evidence) if offset >= part.publish_from => {
                models.push(&mut pending.batch, buffer.rows(), StatInput::of(&evidence));
                pending.windows.push(window);
                pending.evidence.push(evidence);
                pending.since.get_or_insert_with(Instant::now);
            }
            Push::Ready(_) => self.metrics.windows_skipped.with_label_values(&["warm_up"]).inc(),
            Push::Stored(_) if offset >= part.publish_from => {
                pending.unscored.push(window);
                pending.since.get_or_insert_with(Instant::now);
            }
            Push::Stored(_) => {}
            Push::Ignored(reason) => self.metrics.windows_skipped.with_label_values(&[reason]).inc(),
        }
        Ok(())
    }

    fn batch_due(&self) -> bool {
        let pending = &self.state().pending;
        pending.windows.len() + pending.unscored.len() >= self.settings.scorer.max_batch
            || pending.since.is_some_and(|s| s.elapsed() >= LINGER)
    }

    /// Scores and publishes the pending windows, stores the flagged ones, then commits.
    fn flush(&self, consumer: &BaseConsumer<Ctx>) -> Result<()> {
        let mut state = self.state();
        let State {
            models,
            partitions,
            pending,
        } = &mut *state;
        if !pending.windows.is_empty() || !pending.unscored.is_empty() {
            let started = Instant::now();
            let verdicts = if pending.windows.is_empty() {
                Vec::new()
            } else {
                models.score(&pending.batch)?
            };
            self.metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(pending.windows.len() as f64);
            let now = now_ms();
            let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(verdicts.len());
            let mut flagged = Vec::new();
            let mut rows: Vec<store::KpiWindowRow> = pending
                .unscored
                .iter()
                .map(|w| window_row(w, None, now))
                .collect();
            for ((window, verdict), evidence) in pending.windows.iter().zip(&verdicts).zip(&pending.evidence)
            {
                let anomaly = anomaly_of(window, verdict, evidence, &models.manifest, now);
                let payload = self.encoder.encode(&anomaly)?;
                let key = schemas::series_key(&window.tenant_id, &window.agent_id);
                let record = FutureRecord::<[u8], [u8]>::to(&self.settings.kafka.topics.anomalies)
                    .key(key.as_bytes())
                    .payload(&payload);
                deliveries.push(kafka_io::send_blocking(&self.producer, record)?);
                rows.push(window_row(window, Some(&anomaly), now));
                if anomaly.is_anomaly {
                    flagged.push(anomaly);
                }
            }
            for result in self.runtime.block_on(futures::future::join_all(deliveries)) {
                result
                    .map_err(|_| Error::Delivery("anomaly cancelled".into()))?
                    .map_err(|(e, _)| e)?;
            }
            if !flagged.is_empty() {
                self.runtime.block_on(self.store.upsert_anomalies(&flagged))?;
            }
            let retention = self.settings.store.window_retention_secs();
            self.runtime
                .block_on(self.store.upsert_kpi_windows(&rows, retention))?;
            self.metrics.windows_scored.inc_by(verdicts.len() as u64);
            self.metrics.anomalies_flagged.inc_by(flagged.len() as u64);
            pending.windows.clear();
            pending.unscored.clear();
            pending.evidence.clear();
            pending.batch.clear();
            pending.since = None;
        }
        let mut commit = TopicPartitionList::new();
        for (id, part) in partitions.iter_mut() {
            if part.next_offset > part.committed {
                commit.add_partition_offset(self.topic(), *id, Offset::Offset(part.next_offset))?;
                part.committed = part.next_offset;
            }
        }
        drop(state);
        if commit.count() > 0 {
            consumer.commit(&commit, CommitMode::Sync)?;
        }
        Ok(())
    }

    /// Replaces the model set if the directory holds a different one that loads.
    fn maybe_reload(&self, consumer: &BaseConsumer<Ctx>, dir: &Path) -> Result<()> {
        let current = self.state().models.manifest.fingerprint();
        let candidate = match Manifest::load(dir) {
            Ok(m) if m.fingerprint() == current => return Ok(()),
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%e, "model directory not loadable now");
                return Ok(());
            }
        };
        self.flush(consumer)?;
        match ModelSet::load(dir, self.settings.scorer.intra_threads) {
            Ok(set) => {
                let mut state = self.state();
                let models = &mut state.models;
                let reshaped = set.manifest.sequence_length != models.manifest.sequence_length
                    || set.manifest.window_secs != models.manifest.window_secs;
                tracing::info!(from = %models.manifest.version, to = %set.manifest.version, "model set reloaded");
                self.metrics.set_version(&set.manifest.version);
                self.metrics.reloads.with_label_values(&["loaded"]).inc();
                *models = set;
                if reshaped {
                    tracing::warn!("sequence length or window changed: series buffers start over");
                    for part in state.partitions.values_mut() {
                        part.buffers.clear();
                    }
                }
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(version = %candidate.version, error = %e, "new model set refused; the current one keeps scoring");
            }
        }
        Ok(())
    }
}

/// Runs the scorer on the calling thread until `stop` is set (then flushes and commits) or a
/// fatal error occurs.
pub fn run(deps: Deps, stop: Arc<AtomicBool>) -> Result<()> {
    let settings = deps.settings;
    let model_window = deps.models.manifest.window_secs;
    if model_window != settings.aggregator.window_secs {
        return Err(Error::Config {
            key: "aggregator.window_secs",
            message: format!(
                "{} s, but the model set {} was trained on {model_window} s windows",
                settings.aggregator.window_secs, deps.models.manifest.version
            ),
        });
    }
    let codecs = kafka_io::codec::Codecs::from_settings(&settings.schema_registry);
    let decoder = codecs.decoder::<KpiWindow>();
    let encoder = deps
        .runtime
        .block_on(codecs.encoder::<Anomaly>(&settings.kafka.topics.anomalies))?;
    let producer: FutureProducer = kafka_io::producer_config(&settings.kafka, "scorer").create()?;
    deps.metrics.set_version(&deps.models.manifest.version);
    let model_dir = deps.models.dir.clone();
    let shared = Arc::new(Shared {
        store: deps.store,
        runtime: deps.runtime,
        producer,
        encoder,
        metrics: deps.metrics,
        state: Mutex::new(State {
            models: deps.models,
            partitions: HashMap::new(),
            pending: Pending::default(),
        }),
        fatal: Mutex::new(None),
        settings,
    });
    let mut config = kafka_io::consumer_config(
        &shared.settings.kafka,
        "scorer",
        &shared.settings.scorer.consumer_group,
    );
    config
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "1000");
    let consumer: BaseConsumer<Ctx> = config.create_with_context(Ctx(shared.clone()))?;
    match &shared.settings.scorer.assignment {
        settings::Assignment::Group => consumer.subscribe(&[shared.topic()])?,
        fixed => {
            let mut tpl = kafka_io::fixed_assignment(&consumer, shared.topic(), fixed)?;
            shared.position(&consumer, &mut tpl)?;
            consumer.assign(&tpl)?;
        }
    }
    tracing::info!(topic = shared.topic(), version = %shared.state().models.manifest.version, "scorer running");
    let reload_every = Duration::from_millis(shared.settings.scorer.reload_interval_ms);
    let mut last_reload_check = Instant::now();
    let mut last_commit = Instant::now();
    loop {
        if let Some(error) = shared.fatal.lock().expect("lock").take() {
            return Err(error);
        }
        if stop.load(Ordering::Relaxed) {
            shared.flush(&consumer)?;
            tracing::info!("flushed and committed on shutdown");
            return Ok(());
        }
        let idle = match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(message)) => {
                shared.handle(&consumer, &decoder, &message)?;
                false
            }
            Some(Err(e)) => {
                tracing::warn!(%e, "consumer error");
                true
            }
            None => true,
        };
        if shared.batch_due() || (idle && last_commit.elapsed() >= Duration::from_secs(1)) {
            shared.flush(&consumer)?;
            last_commit = Instant::now();
        }
        if !reload_every.is_zero() && last_reload_check.elapsed() >= reload_every {
            shared.maybe_reload(&consumer, &model_dir)?;
            last_reload_check = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Expected;

    #[test]
    fn a_window_row_keeps_the_counts_and_the_calibrated_scores_of_its_verdict() {
        let window = KpiWindow {
            window_id: KpiWindow::id_for("acme", "bot", 900_000),
            tenant_id: "acme".into(),
            agent_id: "bot".into(),
            window_start: 900_000,
            window_end: 1_800_000,
            revision: 1,
            tasks_total: 40,
            succeeded: 30,
            failed: 6,
            cancelled: 4,
            tasks_with_intervention: 3,
            interventions: 5,
            cost_micros: 123_456,
            latency_p50_ms: Some(400.0),
            latency_p95_ms: Some(2_000.0),
            latency_p99_ms: None,
        };
        let unscored = window_row(&window, None, 7);
        assert_eq!(
            (
                unscored.tasks_total,
                unscored.succeeded,
                unscored.cost_micros,
                unscored.revision
            ),
            (40, 30, 123_456, 1)
        );
        assert_eq!(
            (
                unscored.latency_p95_ms,
                unscored.latency_p99_ms,
                unscored.updated_at_ms
            ),
            (Some(2_000.0), None, 7)
        );
        assert_eq!(unscored.verdict, None);
        let anomaly = Anomaly {
            anomaly_id: "a".into(),
            window_id: window.window_id.clone(),
            tenant_id: "acme".into(),
            agent_id: "bot".into(),
            window_start: 900_000,
            window_end: 1_800_000,
            lstm_score: 0.01,
            transformer_score: 0.02,
            lstm_normalized: 4.5,
            transformer_normalized: 5.5,
            ensemble_score: 6.0,
            threshold: 3.0,
            is_anomaly: true,
            top_features: Vec::new(),
            model_version: "m".into(),
            scored_at: 7,
            statistical_score: Some(8.0),
            explanation: Vec::new(),
        };
        let v = window_row(&window, Some(&anomaly), 7).verdict.unwrap();
        assert_eq!(
            (
                v.lstm_score,
                v.transformer_score,
                v.statistical_score,
                v.ensemble_score
            ),
            (4.5, 5.5, Some(8.0), 6.0)
        );
        assert!(v.is_anomaly);
    }

    #[test]
    fn the_explanation_ranks_kpis_by_evidence_and_leaves_out_what_cannot_be_stored() {
        let mut e = Evidence::none();
        let x = |observed: f64| Expected {
            observed,
            expected: 0.9,
            low: 0.8,
            high: 1.0,
        };
        e.cusum = [5.0, 0.0, 9.0, 0.0, 2.0, 1.0];
        e.expected = [
            Some(x(0.5)),
            None,
            Some(x(f64::INFINITY)),
            None,
            Some(x(2.0)),
            Some(x(3.0)),
        ];
        let kpis: Vec<String> = explanation(&e).into_iter().map(|k| k.kpi).collect();
        assert_eq!(kpis, ["success_rate", "cost_per_task_micros", "tasks"]);
    }
}
