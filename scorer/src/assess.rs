//! `scorer tune` and `scorer evaluate`: data sets from directories (`windows.csv`, and
//! `incidents.json` when labelled) through [`crate::offline`], thresholds and weights through
//! [`crate::tuning`], judged by [`crate::evaluation`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::detector::{self, DetectorParams};
use crate::evaluation::{judge_at, pick_threshold, Budget, Protocol, Report, SeriesScores};
use crate::manifest::Manifest;
use crate::models::ModelSet;
use crate::offline::{self, Label, Member, Scored, Series};
use crate::scoring::{Calibration, Verdict};
use crate::tuning::{self, Row, CANDIDATES};
use crate::{Error, Result};

/// File of a data set's windows.
pub const WINDOWS_FILE: &str = "windows.csv";
/// File of a data set's labels.
pub const INCIDENTS_FILE: &str = "incidents.json";
/// Weight grid steps per member when tuning the ensemble.
pub const WEIGHT_STEPS: usize = 10;

/// A data set: its windows and labels.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// Its directory, as given.
    pub name: String,
    /// The series.
    pub series: Vec<Series>,
    /// The labelled incidents (none for a clean set).
    pub labels: Vec<Label>,
}

/// Reads the data set in `dir`.
pub fn load(dir: &Path, window_ms: i64) -> Result<DataSet> {
    let series = offline::read_windows(&dir.join(WINDOWS_FILE), window_ms)?;
    let incidents = dir.join(INCIDENTS_FILE);
    let labels = if incidents.exists() {
        offline::read_labels(&incidents)?
    } else {
        Vec::new()
    };
    Ok(DataSet {
        name: dir.display().to_string(),
        series,
        labels,
    })
}

/// The statistical member alone over every series: verdicts from the `seq_len`-th window on,
/// as the service would give them (no autoencoder).
pub fn statistical_scored(series: &[Series], params: &DetectorParams, seq_len: usize) -> Vec<Scored> {
    series
        .iter()
        .map(|s| {
            let evidence = offline::detect(s, params);
            let verdicts = evidence
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (i + 1 >= seq_len).then(|| Verdict {
                        lstm_raw: 0.0,
                        transformer_raw: 0.0,
                        lstm_normalized: 0.0,
                        transformer_normalized: 0.0,
                        statistical: e.score(),
                        ensemble: e.score(),
                        is_anomaly: false,
                        contributions: Vec::new(),
                    })
                })
                .collect();
            Scored {
                tenant_id: s.tenant_id.clone(),
                agent_id: s.agent_id.clone(),
                starts: s.windows.iter().map(|w| w.start_ms).collect(),
                evidence,
                verdicts,
            }
        })
        .collect()
}

/// Robust calibration of raw errors: median and 1.4826 × MAD of `ln(raw + eps)`.
pub fn fit_calibration(raws: &[f64], eps: f64) -> Option<Calibration> {
    let mut logs: Vec<f64> = raws
        .iter()
        .map(|r| (r + eps).ln())
        .filter(|v| v.is_finite())
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let loc = median(&mut logs);
    let mut dev: Vec<f64> = logs.iter().map(|v| (v - loc).abs()).collect();
    let scale = 1.4826 * median(&mut dev);
    (scale > 0.0).then_some(Calibration { loc, scale, eps })
}

/// Applies new calibrations to scored windows (the raw errors stay).
pub fn recalibrate(scored: &mut [Scored], lstm: &Calibration, transformer: &Calibration) {
    for v in scored.iter_mut().flat_map(|s| s.verdicts.iter_mut().flatten()) {
        v.lstm_normalized = lstm.normalize(v.lstm_raw);
        v.transformer_normalized = transformer.normalize(v.transformer_raw);
    }
}

fn protocol_of(manifest: &Manifest) -> Protocol {
    Protocol {
        window_ms: manifest.window_ms(),
        ..Protocol::default()
    }
}

/// The scores of every series of several data sets under one member, as one pooled set: the
/// series stay apart (each with its own labels), so false alarms per series-day and the
/// median delay are those of all the sets together.
fn pooled_scores(sets: &[(DataSet, Vec<Scored>)], member: Member) -> Vec<SeriesScores> {
    sets.iter()
        .flat_map(|(d, s)| offline::series_scores(s, &d.labels, member))
        .collect()
}

/// Calibrates both autoencoders and fits the statistical member's per-KPI scales on the normal
/// sets (warm windows; the scales stay as they were with less than a day of them), then, given
/// labelled tuning sets, tunes the ensemble's weights and threshold on them, pooled (without
/// any they are kept); returns the updated manifest and, with tuning sets, the report of the
/// picked weights and threshold on them (so a caller can tell whether the whole budget held).
pub fn tune(
    set: &mut ModelSet,
    normal: &[PathBuf],
    tuning: &[PathBuf],
    budget: &Budget,
    max_batch: usize,
) -> Result<(Manifest, Option<Report>)> {
    let window_ms = set.manifest.window_ms();
    let (mut lstm, mut transformer) = (Vec::new(), Vec::new());
    // The normal sets are scored without scales, so their evidence holds the raw CUSUMs the
    // per-KPI scales are fitted on (the autoencoders' errors do not depend on the scales).
    let previous_scale = set.manifest.detector.kpi_scale.take();
    let mut cusums = Vec::new();
    for dir in normal {
        let data = load(dir, window_ms)?;
        for s in offline::score(set, &data.series, max_batch)? {
            let mut raw = Vec::new();
            for (v, e) in s.verdicts.iter().zip(&s.evidence).filter(|(_, e)| e.warm) {
                raw.push(e.cusum);
                if let Some(v) = v {
                    lstm.push(v.lstm_raw);
                    transformer.push(v.transformer_raw);
                }
            }
            cusums.push(raw);
        }
    }
    let mut manifest = set.manifest.clone();
    let eps = manifest.models.lstm.calibration.eps;
    let no_data = |m: &str| Error::Model {
        dir: set.dir.display().to_string(),
        message: format!("no warm windows to calibrate the {m} on"),
    };
    manifest.models.lstm.calibration = fit_calibration(&lstm, eps).ok_or_else(|| no_data("lstm"))?;
    manifest.models.transformer.calibration =
        fit_calibration(&transformer, eps).ok_or_else(|| no_data("transformer"))?;
    // With less than a day of warm normal windows the scales stay as they were.
    manifest.detector.kpi_scale =
        detector::fit_kpi_scale(&cusums, manifest.detector.windows_per_day()).or(previous_scale);
    // The tuning sets are scored with the new scales.
    set.manifest.detector = manifest.detector;
    if tuning.is_empty() {
        return Ok((manifest, None));
    }
    let mut sets = Vec::with_capacity(tuning.len());
    for dir in tuning {
        let data = load(dir, window_ms)?;
        let mut scored = offline::score(set, &data.series, max_batch)?;
        recalibrate(
            &mut scored,
            &manifest.models.lstm.calibration,
            &manifest.models.transformer.calibration,
        );
        sets.push((data, scored));
    }
    let protocol = protocol_of(&manifest);
    let (w, threshold, report) = tuning::tune_weights(
        |w| pooled_scores(&sets, Member::Weighted(w.0, w.1, w.2)),
        (true, true, true),
        WEIGHT_STEPS,
        &protocol,
        budget,
    );
    manifest.ensemble.weights.lstm = w.0;
    manifest.ensemble.weights.transformer = w.1;
    manifest.ensemble.weights.statistical = w.2;
    manifest.ensemble.threshold = threshold;
    Ok((manifest, Some(report)))
}

/// False alarms of a row on the clean sets.
#[derive(Debug, Clone, Serialize)]
pub struct CleanRow {
    /// Detector.
    pub name: String,
    /// False alarms per series-day on each clean set.
    pub false_alarms_per_series_day: Vec<f64>,
}

/// The evaluation table.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The rules.
    pub protocol: Protocol,
    /// The budget on the tuning sets.
    pub budget: Budget,
    /// Tuning sets (pooled).
    pub tuning: Vec<String>,
    /// Unseen sets.
    pub eval: Vec<String>,
    /// Clean sets.
    pub clean: Vec<String>,
    /// Model set version (empty for the statistical member alone).
    pub model_version: String,
    /// The detectors.
    pub rows: Vec<Row>,
    /// Their false alarms on the clean sets.
    pub clean_rows: Vec<CleanRow>,
}

impl Table {
    /// The table in Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Tuning {} {}; unseen sets {}; thresholds picked on the tuning {} (pooled) with at most {} false alarms per series-day{}; an alarm is credited when it starts at most {} min before an incident, inside it, or at most {} min after it; mean ± sd over the unseen sets.\n\n",
            if self.tuning.len() == 1 { "set" } else { "sets" },
            self.tuning.join(", "),
            self.eval.join(", "),
            if self.tuning.len() == 1 { "set" } else { "sets" },
            self.budget.false_alarms_per_series_day,
            self.budget
                .median_step_delay_ms
                .map(|d| format!(" and a median delay of step incidents of at most {} min where one reaches it", d / 60_000))
                .unwrap_or_default(),
            self.protocol.lead_ms / 60_000,
            self.protocol.grace_ms / 60_000,
        );
        out.push_str(&tuning::markdown(&self.rows, self.eval.len()));
        if !self.clean.is_empty() {
            out.push_str(
                "\nFalse alarms per series-day on clean traffic (no incidents), same thresholds:\n\n",
            );
            out.push_str(&format!("| detector | {} |\n", self.clean.join(" | ")));
            out.push_str(&format!("|---|{}\n", "---|".repeat(self.clean.len())));
            for r in &self.clean_rows {
                let cells: Vec<String> = r
                    .false_alarms_per_series_day
                    .iter()
                    .map(|v| format!("{v:.4}"))
                    .collect();
                out.push_str(&format!("| {} | {} |\n", r.name, cells.join(" | ")));
            }
        }
        out
    }
}

/// A detector row: a member (with fixed weights) and how its threshold is chosen.
struct Spec {
    name: &'static str,
    member: Member,
    /// `None`: tuned on the tuning sets.
    threshold: Option<f64>,
}

fn build_table(
    specs: Vec<Spec>,
    tuning: &[(DataSet, Vec<Scored>)],
    unseen: &[(DataSet, Vec<Scored>)],
    clean: &[(DataSet, Vec<Scored>)],
    protocol: &Protocol,
    budget: &Budget,
    model_version: String,
) -> Table {
    let mut rows = Vec::new();
    let mut clean_rows = Vec::new();
    for spec in specs {
        let scores = |d: &(DataSet, Vec<Scored>)| offline::series_scores(&d.1, &d.0.labels, spec.member);
        let t_scores = pooled_scores(tuning, spec.member);
        let (threshold, t_report) = match spec.threshold {
            Some(t) => (t, judge_at(&t_scores, t, protocol)),
            None => pick_threshold(&t_scores, protocol, budget, CANDIDATES),
        };
        let u: Vec<_> = unseen.iter().map(scores).collect();
        rows.push(tuning::row(spec.name, threshold, &t_report, &u, protocol));
        clean_rows.push(CleanRow {
            name: spec.name.to_string(),
            false_alarms_per_series_day: clean
                .iter()
                .map(|c| judge_at(&scores(c), threshold, protocol).false_alarms_per_series_day())
                .collect(),
        });
    }
    Table {
        protocol: *protocol,
        budget: *budget,
        tuning: tuning.iter().map(|d| d.0.name.clone()).collect(),
        eval: unseen.iter().map(|d| d.0.name.clone()).collect(),
        clean: clean.iter().map(|d| d.0.name.clone()).collect(),
        model_version,
        rows,
        clean_rows,
    }
}

/// The table of the statistical member alone (no models): "flag every window" and the CUSUM.
pub fn evaluate_statistical(
    params: &DetectorParams,
    tuning: &[PathBuf],
    eval: &[PathBuf],
    clean: &[PathBuf],
    budget: &Budget,
    window_ms: i64,
) -> Result<Table> {
    let protocol = Protocol {
        window_ms,
        ..Protocol::default()
    };
    let seq_len = 16;
    let read = |dir: &Path| -> Result<(DataSet, Vec<Scored>)> {
        let d = load(dir, protocol.window_ms)?;
        let s = statistical_scored(&d.series, params, seq_len);
        Ok((d, s))
    };
    let t = tuning.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let u = eval.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let c = clean.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let specs = vec![
        Spec {
            name: "flag every window",
            member: Member::Everything,
            threshold: Some(0.0),
        },
        Spec {
            name: "statistical (CUSUM)",
            member: Member::Statistical,
            threshold: None,
        },
    ];
    Ok(build_table(specs, &t, &u, &c, &protocol, budget, String::new()))
}

/// The full table: "flag every window", each member alone, both autoencoders, the shipped
/// ensemble, and the ensemble without each member (weights re-tuned).
pub fn evaluate(
    set: &mut ModelSet,
    tuning: &[PathBuf],
    eval: &[PathBuf],
    clean: &[PathBuf],
    budget: &Budget,
    max_batch: usize,
) -> Result<Table> {
    let protocol = protocol_of(&set.manifest);
    let mut read = |dir: &Path| -> Result<(DataSet, Vec<Scored>)> {
        let d = load(dir, protocol.window_ms)?;
        let s = offline::score(set, &d.series, max_batch)?;
        Ok((d, s))
    };
    let t = tuning.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let u = eval.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let c = clean.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let retuned = |allowed: (bool, bool, bool)| {
        let (w, _, _) = tuning::tune_weights(
            |w| pooled_scores(&t, Member::Weighted(w.0, w.1, w.2)),
            allowed,
            WEIGHT_STEPS,
            &protocol,
            budget,
        );
        Member::Weighted(w.0, w.1, w.2)
    };
    let w = set.manifest.ensemble.weights;
    let specs = vec![
        Spec {
            name: "flag every window",
            member: Member::Everything,
            threshold: Some(0.0),
        },
        Spec {
            name: "statistical (CUSUM) alone",
            member: Member::Statistical,
            threshold: None,
        },
        Spec {
            name: "LSTM AE alone",
            member: Member::Lstm,
            threshold: None,
        },
        Spec {
            name: "Transformer AE alone",
            member: Member::Transformer,
            threshold: None,
        },
        Spec {
            name: "LSTM + Transformer (no statistical)",
            member: retuned((true, true, false)),
            threshold: None,
        },
        Spec {
            name: "ensemble without LSTM",
            member: retuned((false, true, true)),
            threshold: None,
        },
        Spec {
            name: "ensemble without Transformer",
            member: retuned((true, false, true)),
            threshold: None,
        },
        Spec {
            name: "ensemble (shipped: manifest weights and threshold)",
            member: Member::Weighted(w.lstm, w.transformer, w.statistical),
            threshold: Some(set.manifest.ensemble.threshold),
        },
    ];
    Ok(build_table(
        specs,
        &t,
        &u,
        &c,
        &protocol,
        budget,
        set.manifest.version.clone(),
    ))
}
