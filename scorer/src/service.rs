//! The Kafka edge of the scorer: the handler of `KpiWindow`s that the shared consumer worker
//! ([`kafka_io::worker`], offsets checkpointed in Kafka) runs on its own thread; it scores in
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
//! seen `detector.warmup_windows` windows). The worker checks the first record fetched with
//! [`kafka_io::resume_verdict`].
//!
//! Every `scorer.reload_interval_ms` the model directory is checked; a new set that loads and
//! passes its checks replaces the old one between batches (one that does not is refused, and
//! the old one keeps scoring).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_io::checkpoint::{lags, OutputSink, Position, Saved, StateStore};
use kafka_io::worker::{Checkpoints, Handler, WorkerConfig};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use schemas::codec::{Decoder, Encoder};
use schemas::time::now_ms;
use schemas::{Anomaly, FeatureContribution, KpiExplanation, KpiWindow};
use store::Store;
use tokio::runtime::Handle;

use crate::buffer::{Push, SeriesBuffer};
use crate::detector::{Evidence, KPIS};
use crate::features::{self, FEATURES};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::models::{Batch, ModelSet, StatInput};
use crate::scoring::{explained_kpis, top_features, Verdict};
use crate::{Error, Result};

/// How many contributing features a verdict names.
pub const TOP_FEATURES: usize = 3;
/// How many KPIs a verdict explains.
pub const EXPLAINED_KPIS: usize = 3;
/// Longest a window waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(100);
/// Longest time between two commits (of records that made no batch, e.g. warm-up replays).
const IDLE_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

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
        explanation: explanation(evidence, verdict),
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
        counts: window.counts,
        latency: window.latency,
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

/// The KPIs that explain the window ([`explained_kpis`]), next to what is normal for the
/// series (entries with a value that is not finite are left out: they could not be stored as
/// JSON).
pub fn explanation(evidence: &Evidence, verdict: &Verdict) -> Vec<KpiExplanation> {
    explained_kpis(evidence, verdict)
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

/// A partition's series: each one's detector and last windows.
#[derive(Default)]
struct Partition {
    buffers: HashMap<SeriesKey, SeriesBuffer>,
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

/// A batch scored and delivered, to be written to the store.
struct Scored {
    rows: Vec<store::KpiWindowRow>,
    flagged: Vec<Anomaly>,
    verdicts: usize,
}

/// The scorer's state, owned by the worker's handler slot: one owner, no locks of its own.
struct Scorer {
    settings: settings::Settings,
    store: Arc<dyn Store>,
    runtime: Handle,
    producer: FutureProducer,
    encoder: Encoder<Anomaly>,
    decoder: Decoder<KpiWindow>,
    metrics: Metrics,
    models: ModelSet,
    model_dir: PathBuf,
    partitions: HashMap<i32, Partition>,
    pending: Pending,
    /// Delivered, not written yet (between the checkpoint's steps).
    scored: Option<Scored>,
    last_reload_check: Instant,
    /// A different model set found in the directory: loaded after the next checkpoint.
    reload: Option<Manifest>,
}

impl Scorer {
    /// Remembers a different, loadable manifest in the model directory (checked every
    /// `scorer.reload_interval_ms`).
    fn check_model_dir(&mut self) {
        let current = self.models.manifest.fingerprint();
        match Manifest::load(&self.model_dir) {
            Ok(m) if m.fingerprint() == current => {}
            Ok(m) => self.reload = Some(m),
            Err(e) => tracing::debug!(%e, "model directory not loadable now"),
        }
    }

    /// Replaces the model set with the one in the directory if it loads (called with nothing
    /// pending: right after a checkpoint).
    fn reload(&mut self, candidate: Manifest) {
        match ModelSet::load(&self.model_dir, self.settings.scorer.intra_threads) {
            Ok(set) => {
                let models = &mut self.models;
                let reshaped = set.manifest.sequence_length != models.manifest.sequence_length
                    || set.manifest.window_secs != models.manifest.window_secs;
                tracing::info!(from = %models.manifest.version, to = %set.manifest.version, "model set reloaded");
                self.metrics.set_version(&set.manifest.version);
                self.metrics.reloads.with_label_values(&["loaded"]).inc();
                *models = set;
                if reshaped {
                    tracing::warn!("sequence length or window changed: series buffers start over");
                    for part in self.partitions.values_mut() {
                        part.buffers.clear();
                    }
                }
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::error!(version = %candidate.version, error = %e, "new model set refused; the current one keeps scoring");
            }
        }
    }
}

impl Handler for Scorer {
    type Error = Error;

    /// The committed offset is where publishing resumes; the worker replays the records
    /// before it to warm the series up.
    fn assign(&mut self, partition: i32, committed: Option<i64>) -> Result<i64> {
        let next = committed.unwrap_or(0);
        self.partitions.insert(partition, Partition::default());
        self.metrics.consumer.ready.store(true, Ordering::Relaxed);
        Ok(next)
    }

    fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    fn handle(&mut self, message: &BorrowedMessage<'_>, replayed: bool) -> Result<()> {
        let Some(part) = self.partitions.get_mut(&message.partition()) else {
            return Ok(());
        };
        self.metrics.windows_in.inc();
        let payload = message.payload().unwrap_or_default();
        let decoded = match self.decoder.decode_sync(payload) {
            Err(e) if e.is_retriable() => self.runtime.block_on(self.decoder.decode(payload)),
            other => other,
        };
        let window = match decoded {
            Ok(w) => w,
            Err(e) => {
                self.metrics
                    .windows_skipped
                    .with_label_values(&["undecodable"])
                    .inc();
                if !replayed {
                    let delivery = kafka_io::send_diverted(
                        &self.producer,
                        &self.settings.kafka.topics.dead_letter,
                        message,
                        "undecodable",
                        &e.to_string(),
                    )?;
                    self.runtime.block_on(kafka_io::delivered([delivery]))?;
                }
                return Ok(());
            }
        };
        let (models, pending) = (&self.models, &mut self.pending);
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
            Push::Ready(evidence) if !replayed => {
                models.push(&mut pending.batch, buffer.rows(), StatInput::of(&evidence));
                pending.windows.push(window);
                pending.evidence.push(evidence);
                pending.since.get_or_insert_with(Instant::now);
            }
            Push::Ready(_) => self.metrics.windows_skipped.with_label_values(&["warm_up"]).inc(),
            Push::Stored(_) if !replayed => {
                pending.unscored.push(window);
                pending.since.get_or_insert_with(Instant::now);
            }
            Push::Stored(_) => {}
            Push::Ignored(reason) => self.metrics.windows_skipped.with_label_values(&[reason]).inc(),
        }
        Ok(())
    }

    /// A full batch, one that waited long enough, or a model set to load.
    fn due(&self) -> bool {
        let pending = &self.pending;
        pending.windows.len() + pending.unscored.len() >= self.settings.scorer.max_batch
            || pending.since.is_some_and(|s| s.elapsed() >= LINGER)
            || self.reload.is_some()
    }

    fn tick(&mut self) -> Result<()> {
        let every = Duration::from_millis(self.settings.scorer.reload_interval_ms);
        if !every.is_zero() && self.last_reload_check.elapsed() >= every {
            self.check_model_dir();
            self.last_reload_check = Instant::now();
        }
        Ok(())
    }

    fn checkpointed(&mut self, positions: &[Position]) -> Result<()> {
        self.metrics.consumer.set_lags(lags(positions));
        if let Some(candidate) = self.reload.take() {
            self.reload(candidate);
        }
        Ok(())
    }
}

impl OutputSink<Error> for Scorer {
    /// Scores the pending windows and delivers their verdicts (`acks=all`).
    fn deliver(&mut self, _positions: &[Position]) -> Result<()> {
        let pending = &mut self.pending;
        if pending.windows.is_empty() && pending.unscored.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let verdicts = if pending.windows.is_empty() {
            Vec::new()
        } else {
            self.models.score(&pending.batch)?
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
        for ((window, verdict), evidence) in pending.windows.iter().zip(&verdicts).zip(&pending.evidence) {
            let anomaly = anomaly_of(window, verdict, evidence, &self.models.manifest, now);
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
        self.runtime.block_on(kafka_io::delivered(deliveries))?;
        *pending = Pending::default();
        self.scored = Some(Scored {
            rows,
            flagged,
            verdicts: verdicts.len(),
        });
        Ok(())
    }
}

impl StateStore<Error> for Scorer {
    /// Stores the flagged verdicts, and every window of the batch with its verdict.
    fn write(&mut self) -> Result<()> {
        let Some(scored) = self.scored.take() else {
            return Ok(());
        };
        if !scored.flagged.is_empty() {
            self.runtime
                .block_on(self.store.upsert_anomalies(&scored.flagged))?;
        }
        let retention = self.settings.store.window_retention_secs();
        self.runtime
            .block_on(self.store.upsert_kpi_windows(&scored.rows, retention))?;
        self.metrics.windows_scored.inc_by(scored.verdicts as u64);
        self.metrics.anomalies_flagged.inc_by(scored.flagged.len() as u64);
        Ok(())
    }

    /// Nothing: the committed offsets are the scorer's checkpoint (its state is rebuilt by
    /// replay).
    fn save(&mut self, _position: &Position) -> Result<Saved> {
        Ok(Saved::Saved)
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
    let encoder = deps
        .runtime
        .block_on(codecs.encoder::<Anomaly>(&settings.kafka.topics.anomalies))?;
    deps.metrics.set_version(&deps.models.manifest.version);
    tracing::info!(version = %deps.models.manifest.version, "scorer running");
    let config = WorkerConfig {
        role: "scorer".into(),
        topic: settings.kafka.topics.kpi_windows.clone(),
        group: settings.scorer.consumer_group.clone(),
        assignment: settings.scorer.assignment.clone(),
        checkpoints: Checkpoints::InKafka,
        resume_rewind: settings.scorer.resume_rewind_records,
        poll_timeout: Duration::from_millis(20),
        checkpoint_interval: IDLE_COMMIT_INTERVAL,
        idle_checkpoint_spacing: IDLE_COMMIT_INTERVAL,
    };
    let kafka = settings.kafka.clone();
    let scorer = Scorer {
        decoder: codecs.decoder(),
        producer: kafka_io::producer_config(&kafka, "scorer").create()?,
        encoder,
        store: deps.store,
        runtime: deps.runtime,
        metrics: deps.metrics,
        model_dir: deps.models.dir.clone(),
        models: deps.models,
        partitions: HashMap::new(),
        pending: Pending::default(),
        scored: None,
        last_reload_check: Instant::now(),
        reload: None,
        settings,
    };
    kafka_io::worker::run(&kafka, &config, scorer, &stop)
}

#[cfg(test)]
mod tests {
    use schemas::kpi::{Counts, Latencies};

    use super::*;
    use crate::detector::{Expected, KPI_COUNT};

    #[test]
    fn a_window_row_keeps_the_counts_and_the_calibrated_scores_of_its_verdict() {
        let window = KpiWindow {
            window_id: KpiWindow::id_for("acme", "bot", 900_000),
            tenant_id: "acme".into(),
            agent_id: "bot".into(),
            window_start: 900_000,
            window_end: 1_800_000,
            revision: 1,
            counts: Counts {
                tasks_total: 40,
                succeeded: 30,
                failed: 6,
                cancelled: 4,
                tasks_with_intervention: 3,
                interventions: 5,
                cost_micros: 123_456,
            },
            latency: Latencies {
                latency_p50_ms: Some(400.0),
                latency_p95_ms: Some(2_000.0),
                latency_p99_ms: None,
            },
        };
        let unscored = window_row(&window, None, 7);
        assert_eq!(
            (
                unscored.counts.tasks_total,
                unscored.counts.succeeded,
                unscored.counts.cost_micros,
                unscored.revision
            ),
            (40, 30, 123_456, 1)
        );
        assert_eq!(
            (
                unscored.latency.latency_p95_ms,
                unscored.latency.latency_p99_ms,
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
        let mut v = Verdict {
            lstm_raw: 1.0,
            transformer_raw: 1.0,
            lstm_normalized: 4.0,
            transformer_normalized: 4.0,
            statistical: 9.0,
            ensemble: 5.0,
            is_anomaly: true,
            contributions: vec![0.1, 0.0, 0.2, 0.0, 0.0, 0.7],
        };
        let kpis = |e: &Evidence, v: &Verdict| -> Vec<String> {
            explanation(e, v).into_iter().map(|k| k.kpi).collect()
        };
        assert_eq!(kpis(&e, &v), ["success_rate", "cost_per_task_micros", "tasks"]);
        // A flagged window without accumulated evidence is explained by its contributions
        // (P50's observed value is not finite, so it is left out).
        e.cusum = [0.0; KPI_COUNT];
        assert_eq!(kpis(&e, &v), ["tasks", "success_rate"]);
        // Not flagged: nothing to explain.
        v.is_anomaly = false;
        assert!(kpis(&e, &v).is_empty());
    }
}
