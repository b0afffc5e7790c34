//! Offline mode: KPI windows from a CSV file through the same detector, models and ensemble
//! as the service, judged with [`crate::evaluation`].
//!
//! - Windows: a CSV with a header naming at least `tenant_id, agent_id, window_start` (epoch
//!   ms or RFC 3339), `tasks_total, succeeded, tasks_with_intervention, cost_micros,
//!   latency_p50_ms, latency_p95_ms` (the `KpiWindow` fields; an empty latency cell = no
//!   tasks); other columns are ignored. Any number of series, in any order; each series is
//!   read in time order, a missing period is an empty window.
//! - Incidents (labels): the generator's `incidents.json`, a JSON array of
//!   `{"tenant_id", "agent_id", "kind", "start_ms", "end_ms"}` (epoch ms or RFC 3339). A series
//!   without incidents counts as a control series.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::buffer::{Push, SeriesBuffer};
use crate::detector::{DetectorParams, Evidence, WindowStats, KPIS};
use crate::evaluation::{self, Incident, Report, SeriesScores};
use crate::features::{FEATURES, FEATURE_COUNT};
use crate::manifest::Manifest;
use crate::models::{Batch, ModelSet, StatInput};
use crate::scoring::{explained_kpis, top_features, Verdict};
use crate::{Error, Result};

/// Parses an epoch-ms or RFC 3339 timestamp.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    })
}

/// The windows of one series, consecutive (gaps filled with empty windows).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// Windows, one per period from the first to the last.
    pub windows: Vec<WindowStats>,
}

/// One row of a windows CSV: what [`read_windows`] reads and [`write_windows`] writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// Window start: epoch ms or RFC 3339 when read, epoch ms when written.
    pub window_start: String,
    /// Tasks completed in the window.
    pub tasks_total: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Tasks with at least one human intervention.
    pub tasks_with_intervention: i64,
    /// Sum of cost, integer micro-USD.
    pub cost_micros: i64,
    /// Median latency (ms); empty without tasks.
    pub latency_p50_ms: Option<f64>,
    /// 95th-percentile latency (ms); empty without tasks.
    pub latency_p95_ms: Option<f64>,
}

impl WindowRecord {
    /// The row of a KPI window (as the aggregator emits it or the store keeps it).
    pub fn of(
        tenant_id: String,
        agent_id: String,
        window_start: i64,
        counts: &schemas::kpi::Counts,
        latency: &schemas::kpi::Latencies,
    ) -> WindowRecord {
        WindowRecord {
            tenant_id,
            agent_id,
            window_start: window_start.to_string(),
            tasks_total: counts.tasks_total,
            succeeded: counts.succeeded,
            tasks_with_intervention: counts.tasks_with_intervention,
            cost_micros: counts.cost_micros,
            latency_p50_ms: latency.latency_p50_ms,
            latency_p95_ms: latency.latency_p95_ms,
        }
    }
}

/// Writes windows as a CSV that [`read_windows`] (and the training package) reads.
pub fn write_windows(path: &Path, windows: impl IntoIterator<Item = WindowRecord>) -> Result<usize> {
    let io = |e: &dyn std::fmt::Display| Error::Input {
        path: path.display().to_string(),
        line: 0,
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| io(&e))?;
    let mut n = 0;
    for w in windows {
        writer.serialize(&w).map_err(|e| io(&e))?;
        n += 1;
    }
    writer.flush().map_err(|e| io(&e))?;
    Ok(n)
}

/// Reads a windows CSV into series (sorted by tenant and agent), each one window per period
/// of `window_ms`.
pub fn read_windows(path: &Path, window_ms: i64) -> Result<Vec<Series>> {
    let input_error = |line: usize, message: String| Error::Input {
        path: path.display().to_string(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| input_error(0, e.to_string()))?;
    let mut by_series: BTreeMap<(String, String), BTreeMap<i64, WindowStats>> = BTreeMap::new();
    for (i, record) in reader.deserialize::<WindowRecord>().enumerate() {
        let line = i + 2;
        let w = record.map_err(|e| input_error(line, e.to_string()))?;
        let start = parse_timestamp(&w.window_start).ok_or_else(|| {
            input_error(
                line,
                format!(
                    "window_start `{}` is neither epoch ms nor RFC 3339",
                    w.window_start
                ),
            )
        })?;
        if start.rem_euclid(window_ms) != 0 {
            return Err(input_error(
                line,
                format!("window_start {start} is not a multiple of the window length {window_ms} ms"),
            ));
        }
        if w.tasks_total < 0
            || !(0..=w.tasks_total).contains(&w.succeeded)
            || !(0..=w.tasks_total).contains(&w.tasks_with_intervention)
        {
            return Err(input_error(
                line,
                "counts must satisfy 0 <= succeeded, tasks_with_intervention <= tasks_total".into(),
            ));
        }
        by_series.entry((w.tenant_id, w.agent_id)).or_default().insert(
            start,
            WindowStats {
                start_ms: start,
                tasks: w.tasks_total,
                succeeded: w.succeeded,
                with_intervention: w.tasks_with_intervention,
                cost_micros: w.cost_micros,
                p50_ms: w.latency_p50_ms,
                p95_ms: w.latency_p95_ms,
            },
        );
    }
    Ok(by_series
        .into_iter()
        .map(|((tenant_id, agent_id), windows)| {
            let first = *windows.keys().next().expect("a series has a window");
            let last = *windows.keys().next_back().expect("a series has a window");
            let filled = (0..=(last - first) / window_ms)
                .map(|k| {
                    let start = first + k * window_ms;
                    windows
                        .get(&start)
                        .copied()
                        .unwrap_or_else(|| WindowStats::empty(start))
                })
                .collect();
            Series {
                tenant_id,
                agent_id,
                windows: filled,
            }
        })
        .collect())
}

/// A labelled incident of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// The incident.
    pub incident: Incident,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stamp {
    Ms(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawLabel {
    tenant_id: String,
    agent_id: String,
    #[serde(default)]
    kind: Option<String>,
    start_ms: Stamp,
    end_ms: Stamp,
}

/// Reads labels (the generator's `incidents.json`).
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    let bad = |message: String| Error::Input {
        path: path.display().to_string(),
        line: 0,
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let raw: Vec<RawLabel> = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let ms = |s: &Stamp| match s {
        Stamp::Ms(v) => Some(*v),
        Stamp::Text(t) => parse_timestamp(t),
    };
    raw.into_iter()
        .enumerate()
        .map(|(i, l)| match (ms(&l.start_ms), ms(&l.end_ms)) {
            (Some(start_ms), Some(end_ms)) if start_ms < end_ms => Ok(Label {
                tenant_id: l.tenant_id,
                agent_id: l.agent_id,
                incident: Incident {
                    kind: l.kind.unwrap_or_else(|| "incident".into()),
                    start_ms,
                    end_ms,
                },
            }),
            _ => Err(bad(format!(
                "incident {i}: start_ms and end_ms must be timestamps with start_ms < end_ms"
            ))),
        })
        .collect()
}

/// What the scorer says about each window of one series.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// Window starts.
    pub starts: Vec<i64>,
    /// The detector's evidence per window.
    pub evidence: Vec<Evidence>,
    /// The verdict per window (`None` before the first full sequence).
    pub verdicts: Vec<Option<Verdict>>,
}

/// Reads every series through the detector and the models, as the service does.
pub fn score(models: &mut ModelSet, series: &[Series], max_batch: usize) -> Result<Vec<Scored>> {
    let params = models.manifest.detector;
    let (period, len) = (models.manifest.window_ms(), models.manifest.sequence_length);
    let mut out = Vec::with_capacity(series.len());
    let mut batch = Batch::default();
    let mut waiting: Vec<(usize, usize)> = Vec::new();
    let flush = |models: &mut ModelSet,
                 batch: &mut Batch,
                 waiting: &mut Vec<(usize, usize)>,
                 out: &mut Vec<Scored>|
     -> Result<()> {
        for ((s, i), v) in waiting.drain(..).zip(models.score(batch)?) {
            out[s].verdicts[i] = Some(v);
        }
        batch.clear();
        Ok(())
    };
    for (s, one) in series.iter().enumerate() {
        let mut buffer = SeriesBuffer::new(period, len);
        out.push(Scored {
            tenant_id: one.tenant_id.clone(),
            agent_id: one.agent_id.clone(),
            starts: one.windows.iter().map(|w| w.start_ms).collect(),
            evidence: Vec::with_capacity(one.windows.len()),
            verdicts: vec![None; one.windows.len()],
        });
        for (i, w) in one.windows.iter().enumerate() {
            let evidence = match buffer.push(w, 0, &params) {
                Push::Ready(e) => {
                    models.push(&mut batch, buffer.rows(), StatInput::of(&e));
                    waiting.push((s, i));
                    e
                }
                Push::Stored(e) => e,
                // Not reachable with `read_windows`' consecutive windows; neutral otherwise.
                Push::Ignored(_) => Evidence::none(),
            };
            out[s].evidence.push(evidence);
            if batch.len >= max_batch.max(1) {
                flush(models, &mut batch, &mut waiting, &mut out)?;
            }
        }
    }
    flush(models, &mut batch, &mut waiting, &mut out)?;
    Ok(out)
}

/// The detector alone over every series (no models): evidence per window.
pub fn detect(series: &Series, params: &DetectorParams) -> Vec<Evidence> {
    let mut d = crate::detector::SeriesDetector::new();
    series.windows.iter().map(|w| d.observe(w, params)).collect()
}

/// Which member's score a row of the evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Member {
    /// Every window flagged.
    Everything,
    /// The statistical member.
    Statistical,
    /// The LSTM autoencoder (calibrated).
    Lstm,
    /// The Transformer autoencoder (calibrated).
    Transformer,
    /// A weighted mean of (LSTM, Transformer, statistical).
    Weighted(f64, f64, f64),
}

/// The scores of every window of `scored` as `member` sees them, with the incidents of each
/// series; windows before the first full sequence are not judged, cold windows may not alarm.
pub fn series_scores(scored: &[Scored], labels: &[Label], member: Member) -> Vec<SeriesScores> {
    scored
        .iter()
        .map(|s| {
            let incidents: Vec<Incident> = labels
                .iter()
                .filter(|l| l.tenant_id == s.tenant_id && l.agent_id == s.agent_id)
                .map(|l| l.incident.clone())
                .collect();
            let first = s
                .verdicts
                .iter()
                .position(Option::is_some)
                .unwrap_or(s.verdicts.len());
            let scores = s.verdicts[first..]
                .iter()
                .zip(&s.evidence[first..])
                .map(|(v, e)| {
                    let v = v.as_ref()?;
                    // Flagging everything ignores warm-up; every other member respects it.
                    if !e.warm && member != Member::Everything {
                        return None;
                    }
                    Some(match member {
                        Member::Everything => f64::INFINITY,
                        Member::Statistical => v.statistical,
                        Member::Lstm => v.lstm_normalized,
                        Member::Transformer => v.transformer_normalized,
                        Member::Weighted(l, t, st) => crate::scoring::Ensemble {
                            w_lstm: l,
                            w_transformer: t,
                            w_statistical: st,
                            threshold: 0.0,
                        }
                        .combine(
                            v.lstm_normalized,
                            v.transformer_normalized,
                            v.statistical,
                        ),
                    })
                })
                .collect();
            SeriesScores {
                starts: s.starts[first..].to_vec(),
                scores,
                control: incidents.is_empty(),
                incidents,
            }
        })
        .collect()
}

/// Writes every scored window as CSV: member scores, ensemble, flag, the top feature and the
/// Judges the ensemble of `manifest` (its weights and threshold) on `scored` against `labels`
/// under the evaluation protocol: what `scorer offline --labels` prints.
pub fn judge_ensemble(manifest: &Manifest, scored: &[Scored], labels: &[Label]) -> Report {
    let w = manifest.ensemble.weights;
    let scores = series_scores(
        scored,
        labels,
        Member::Weighted(w.lstm, w.transformer, w.statistical),
    );
    evaluation::judge_at(
        &scores,
        manifest.ensemble.threshold,
        &evaluation::Protocol {
            window_ms: manifest.window_ms(),
            ..evaluation::Protocol::default()
        },
    )
}

/// KPI with the most evidence, with its observed and expected values.
pub fn write_scores(path: &Path, scored: &[Scored]) -> Result<()> {
    let io = |e: csv::Error| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut w = csv::Writer::from_path(path).map_err(io)?;
    w.write_record([
        "tenant_id",
        "agent_id",
        "window_start",
        "lstm_score",
        "transformer_score",
        "lstm_normalized",
        "transformer_normalized",
        "statistical_score",
        "ensemble_score",
        "warm",
        "is_anomaly",
        "top_feature",
        "kpi",
        "observed",
        "expected",
        "low",
        "high",
    ])
    .map_err(io)?;
    for s in scored {
        for ((start, v), e) in s.starts.iter().zip(&s.verdicts).zip(&s.evidence) {
            let Some(v) = v else { continue };
            let top = top_features(&v.contributions, &FEATURES, 1);
            let kpi = explained_kpis(e, v).first().copied();
            let ex = kpi.and_then(|k| e.expected[k]);
            let num = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
            w.write_record([
                s.tenant_id.clone(),
                s.agent_id.clone(),
                start.to_string(),
                v.lstm_raw.to_string(),
                v.transformer_raw.to_string(),
                v.lstm_normalized.to_string(),
                v.transformer_normalized.to_string(),
                v.statistical.to_string(),
                v.ensemble.to_string(),
                e.warm.to_string(),
                v.is_anomaly.to_string(),
                top.first().map(|t| t.0.to_string()).unwrap_or_default(),
                kpi.map(|k| KPIS[k].to_string()).unwrap_or_default(),
                num(ex.map(|x| x.observed)),
                num(ex.map(|x| x.expected)),
                num(ex.map(|x| x.low)),
                num(ex.map(|x| x.high)),
            ])
            .map_err(io)?;
        }
    }
    w.flush().map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes the model input of every window of every series for training: `features.f32`,
/// `mask.f32` and `cusum.f32` (little-endian f32, `[series][windows][features]`), `tasks.f32`
/// and `warm.f32` (`[series][windows]`) and `features.json` (shape, series, first window start,
/// names, detector parameters).
/// All series must have the same windows (a generated data set).
pub fn write_features(dir: &Path, series: &[Series], params: &DetectorParams) -> Result<()> {
    let io = |path: &Path, source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let n_windows = series.first().map_or(0, |s| s.windows.len());
    let first = series.first().and_then(|s| s.windows.first()).map(|w| w.start_ms);
    if let Some(bad) = series
        .iter()
        .find(|s| s.windows.len() != n_windows || s.windows.first().map(|w| w.start_ms) != first)
    {
        return Err(Error::Input {
            path: dir.display().to_string(),
            line: 0,
            message: format!(
                "series {}/{} does not cover the same windows as the first series",
                bad.tenant_id, bad.agent_id
            ),
        });
    }
    let (mut x, mut mask, mut cusum, mut tasks, mut warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let put = |out: &mut Vec<u8>, v: f64| out.extend_from_slice(&(v as f32).to_le_bytes());
    for s in series {
        for (w, e) in s.windows.iter().zip(detect(s, params)) {
            let row = crate::features::row(&e);
            for (value, evidence) in row.iter().zip(e.cusum) {
                put(&mut x, value.unwrap_or(0.0));
                put(&mut mask, if value.is_some() { 1.0 } else { 0.0 });
                put(&mut cusum, evidence);
            }
            put(&mut tasks, w.tasks as f64);
            put(&mut warm, if e.warm { 1.0 } else { 0.0 });
        }
    }
    for (name, bytes) in [
        ("features.f32", &x),
        ("mask.f32", &mask),
        ("cusum.f32", &cusum),
        ("tasks.f32", &tasks),
        ("warm.f32", &warm),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    let meta = serde_json::json!({
        "shape": [series.len(), n_windows, FEATURE_COUNT],
        "features": FEATURES,
        "first_window_start": first,
        "series": series.iter().map(|s| [&s.tenant_id, &s.agent_id]).collect::<Vec<_>>(),
        "detector": params,
    });
    let path = dir.join("features.json");
    let mut f = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
    f.write_all(serde_json::to_string_pretty(&meta).expect("json").as_bytes())
        .map_err(|e| io(&path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_ms_or_rfc3339() {
        assert_eq!(parse_timestamp("1759276800000"), Some(1_759_276_800_000));
        assert_eq!(parse_timestamp("2025-10-01T00:15:00Z"), Some(1_759_277_700_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn windows_are_grouped_by_series_and_gaps_filled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.csv");
        std::fs::write(
            &path,
            "tenant_id,agent_id,window_start,tasks_total,succeeded,failed,tasks_with_intervention,cost_micros,latency_p50_ms,latency_p95_ms\n\
             acme,b,1800000,4,4,0,1,400,10.0,20.0\n\
             acme,a,0,3,2,1,0,300,10.0,20.0\n\
             acme,a,2700000,0,0,0,0,0,,\n\
             acme,b,900000,2,1,1,0,200,10.0,30.0\n",
        )
        .unwrap();
        let s = read_windows(&path, 900_000).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].agent_id.as_str(), s[0].windows.len()), ("a", 4));
        assert_eq!(s[0].windows[1], WindowStats::empty(900_000));
        assert_eq!(s[0].windows[3].p50_ms, None);
        assert_eq!(s[1].windows.iter().map(|w| w.tasks).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn written_windows_read_back_as_the_same_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("windows.csv");
        // The rows as `scorer export-windows` makes them from stored KPI windows.
        let record = |agent: &str, start: i64, tasks: i64| {
            let counts = schemas::kpi::Counts {
                tasks_total: tasks,
                succeeded: tasks / 2,
                failed: tasks - tasks / 2,
                tasks_with_intervention: tasks.min(1),
                interventions: tasks.min(1) * 2,
                cost_micros: 100 * tasks,
                ..Default::default()
            };
            let latency = schemas::kpi::Latencies {
                latency_p50_ms: (tasks > 0).then_some(1_250.5),
                latency_p95_ms: (tasks > 0).then_some(4_000.0),
                latency_p99_ms: (tasks > 0).then_some(9_000.0),
            };
            WindowRecord::of("acme".into(), agent.into(), start, &counts, &latency)
        };
        let rows = [
            record("a", 0, 3),
            record("a", 1_800_000, 0),
            record("b", 900_000, 8),
        ];
        assert_eq!(write_windows(&path, rows.iter().cloned()).unwrap(), 3);
        let s = read_windows(&path, 900_000).unwrap();
        assert_eq!(s.len(), 2);
        let a = &s[0].windows;
        assert_eq!(a.len(), 3, "the missing period between is an empty window");
        assert_eq!(
            (
                a[0].tasks,
                a[0].succeeded,
                a[0].with_intervention,
                a[0].cost_micros
            ),
            (3, 1, 1, 300)
        );
        assert_eq!((a[0].p50_ms, a[0].p95_ms), (Some(1_250.5), Some(4_000.0)));
        assert_eq!((a[2].tasks, a[2].p50_ms), (0, None));
        assert_eq!((s[1].agent_id.as_str(), s[1].windows[0].tasks), ("b", 8));
    }

    #[test]
    fn a_bad_window_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.csv");
        std::fs::write(
            &path,
            "tenant_id,agent_id,window_start,tasks_total,succeeded,tasks_with_intervention,cost_micros,latency_p50_ms,latency_p95_ms\n\
             acme,a,0,3,2,0,300,10.0,20.0\n\
             acme,a,900000,3,5,0,300,10.0,20.0\n",
        )
        .unwrap();
        let err = read_windows(&path, 900_000).unwrap_err().to_string();
        assert!(err.contains(":3:") && err.contains("succeeded"), "{err}");
        std::fs::write(
            &path,
            "tenant_id,agent_id,window_start,tasks_total,succeeded,tasks_with_intervention,cost_micros,latency_p50_ms,latency_p95_ms\n\
             acme,a,1000,3,2,0,300,10.0,20.0\n",
        )
        .unwrap();
        let err = read_windows(&path, 900_000).unwrap_err().to_string();
        assert!(err.contains("multiple of the window length"), "{err}");
    }

    #[test]
    fn labels_are_the_generators_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.json");
        std::fs::write(
            &path,
            r#"[{"tenant_id":"acme","agent_id":"a","kind":"cost_spike","start_ms":1000,"end_ms":2000,"magnitude":4.0},
                {"tenant_id":"acme","agent_id":"b","start_ms":"2025-10-01T00:00:00Z","end_ms":"2025-10-01T01:00:00Z"}]"#,
        )
        .unwrap();
        let l = read_labels(&path).unwrap();
        assert_eq!(l[0].incident.kind, "cost_spike");
        assert_eq!(l[1].incident.end_ms - l[1].incident.start_ms, 3_600_000);
        std::fs::write(
            &path,
            r#"[{"tenant_id":"a","agent_id":"b","start_ms":5,"end_ms":5}]"#,
        )
        .unwrap();
        assert!(read_labels(&path).unwrap_err().to_string().contains("incident 0"));
    }
}
