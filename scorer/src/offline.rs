//! Offline mode: score a CSV series with a model set, and judge the alarms against labelled
//! windows, so that any labelled data set in the common `timestamp,value[,value...]` shape can
//! be evaluated.
//!
//! - Input: a header, then one row per period: `timestamp` (epoch ms or RFC 3339) and one
//!   column per manifest feature, in manifest order, with the *raw* (un-normalized) values;
//!   an empty cell is an undefined value.
//! - Output: one row per scorable period (from the `sequence_length`-th on): both models' raw
//!   and calibrated scores, the ensemble score, the flag and the top feature.
//! - Labels: a JSON array of `{"start": .., "end": ..}` (epoch ms or RFC 3339), inclusive.
//!   Alarms are runs of consecutive flagged periods; an incident is detected once if any
//!   alarm period falls inside it; an alarm touching no incident is a false positive. No
//!   point adjustment.

use std::path::Path;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::features::{RawFeatures, FEATURES, FEATURE_COUNT};
use crate::models::{Batch, ModelSet};
use crate::scoring::{top_features, Verdict};
use crate::{Error, Result};

/// One scored period.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The timestamp as written in the input.
    pub timestamp: String,
    /// The timestamp in epoch ms.
    pub at_ms: i64,
    /// The verdict.
    pub verdict: Verdict,
}

/// Parses an epoch-ms or RFC 3339 timestamp.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    })
}

/// Reads a CSV series: timestamps and raw features.
pub fn read_series(path: &Path) -> Result<Vec<(String, i64, RawFeatures)>> {
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
    let headers = reader
        .headers()
        .map_err(|e| input_error(1, e.to_string()))?
        .clone();
    if headers.len() != FEATURE_COUNT + 1 {
        return Err(input_error(
            1,
            format!(
                "{} columns; the model set needs timestamp plus {FEATURE_COUNT} features {FEATURES:?}",
                headers.len()
            ),
        ));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| input_error(line, e.to_string()))?;
        let ts = record.get(0).unwrap_or_default().to_string();
        let at_ms = parse_timestamp(&ts)
            .ok_or_else(|| input_error(line, format!("timestamp `{ts}` is neither epoch ms nor RFC 3339")))?;
        let mut features: RawFeatures = [None; FEATURE_COUNT];
        for (f, cell) in record.iter().skip(1).enumerate() {
            if !cell.is_empty() {
                let v: f64 = cell.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
                    input_error(line, format!("{}: `{cell}` is not a number", &headers[f + 1]))
                })?;
                features[f] = Some(v);
            }
        }
        rows.push((ts, at_ms, features));
    }
    Ok(rows)
}

/// Scores every period of `rows` that has `sequence_length` periods up to it.
pub fn score_series(
    models: &mut ModelSet,
    rows: &[(String, i64, RawFeatures)],
    max_batch: usize,
) -> Result<Vec<Scored>> {
    let len = models.manifest.sequence_length;
    let mut out = Vec::with_capacity(rows.len());
    let mut batch = Batch::default();
    let ends: Vec<usize> = (len.saturating_sub(1)..rows.len()).collect();
    for chunk in ends.chunks(max_batch.max(1)) {
        batch.clear();
        for &end in chunk {
            models.push(&mut batch, rows[end + 1 - len..=end].iter().map(|r| &r.2));
        }
        for (&end, verdict) in chunk.iter().zip(models.score(&batch)?) {
            out.push(Scored {
                timestamp: rows[end].0.clone(),
                at_ms: rows[end].1,
                verdict,
            });
        }
    }
    Ok(out)
}

/// Writes scored periods as CSV.
pub fn write_scores(path: &Path, scored: &[Scored]) -> Result<()> {
    let io = |e: csv::Error| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut w = csv::Writer::from_path(path).map_err(io)?;
    w.write_record([
        "timestamp",
        "lstm_score",
        "transformer_score",
        "lstm_normalized",
        "transformer_normalized",
        "ensemble_score",
        "is_anomaly",
        "top_feature",
    ])
    .map_err(io)?;
    for s in scored {
        let v = &s.verdict;
        let top = top_features(&v.contributions, &FEATURES, 1);
        w.write_record([
            s.timestamp.clone(),
            v.lstm_raw.to_string(),
            v.transformer_raw.to_string(),
            v.lstm_normalized.to_string(),
            v.transformer_normalized.to_string(),
            v.ensemble.to_string(),
            v.is_anomaly.to_string(),
            top.first().map(|t| t.0.to_string()).unwrap_or_default(),
        ])
        .map_err(io)?;
    }
    w.flush().map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A labelled incident window (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Start (epoch ms).
    pub start: i64,
    /// End (epoch ms).
    pub end: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stamp {
    Ms(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawLabel {
    start: Stamp,
    end: Stamp,
}

/// Reads labels: a JSON array of `{"start", "end"}` in epoch ms or RFC 3339.
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
    raw.iter()
        .enumerate()
        .map(|(i, l)| match (ms(&l.start), ms(&l.end)) {
            (Some(start), Some(end)) if start <= end => Ok(Label { start, end }),
            _ => Err(bad(format!(
                "label {i}: start and end must be timestamps with start <= end"
            ))),
        })
        .collect()
}

/// Event-level judgement of a series' alarms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventMetrics {
    /// Incidents with at least one flagged period inside.
    pub detected: usize,
    /// Incidents.
    pub incidents: usize,
    /// Alarms (runs of flagged periods) touching an incident.
    pub true_alarms: usize,
    /// Alarms touching no incident.
    pub false_alarms: usize,
    /// Per detected incident: first flagged period inside it minus its start (ms).
    pub delays_ms: Vec<i64>,
}

impl EventMetrics {
    /// Adds another series' counts.
    pub fn merge(&mut self, other: &EventMetrics) {
        self.detected += other.detected;
        self.incidents += other.incidents;
        self.true_alarms += other.true_alarms;
        self.false_alarms += other.false_alarms;
        self.delays_ms.extend(&other.delays_ms);
    }

    /// Alarm precision (1 when there are no alarms).
    pub fn precision(&self) -> f64 {
        let alarms = self.true_alarms + self.false_alarms;
        if alarms == 0 {
            1.0
        } else {
            self.true_alarms as f64 / alarms as f64
        }
    }

    /// Incident recall (1 when there are no incidents).
    pub fn recall(&self) -> f64 {
        if self.incidents == 0 {
            1.0
        } else {
            self.detected as f64 / self.incidents as f64
        }
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Judges the flags of periods (timestamps ascending, one flag each) against `labels`.
pub fn event_metrics(periods: &[(i64, bool)], labels: &[Label]) -> EventMetrics {
    let inside = |t: i64| labels.iter().position(|l| l.start <= t && t <= l.end);
    let mut m = EventMetrics {
        incidents: labels.len(),
        ..EventMetrics::default()
    };
    let mut first_flag: Vec<Option<i64>> = vec![None; labels.len()];
    let mut run_hits: Option<bool> = None;
    for &(t, flagged) in periods {
        if flagged {
            let hit = inside(t);
            if let Some(i) = hit {
                first_flag[i].get_or_insert(t);
            }
            run_hits = Some(run_hits.unwrap_or(false) || hit.is_some());
        } else if let Some(hit) = run_hits.take() {
            if hit {
                m.true_alarms += 1
            } else {
                m.false_alarms += 1
            }
        }
    }
    if let Some(hit) = run_hits {
        if hit {
            m.true_alarms += 1
        } else {
            m.false_alarms += 1
        }
    }
    for (label, first) in labels.iter().zip(first_flag) {
        if let Some(t) = first {
            m.detected += 1;
            m.delays_ms.push(t - label.start);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_ms_or_rfc3339() {
        assert_eq!(parse_timestamp("1759276800000"), Some(1_759_276_800_000));
        assert_eq!(parse_timestamp("2025-10-01T00:00:00Z"), Some(1_759_276_800_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn an_incident_counts_once_and_a_stray_alarm_is_a_false_positive() {
        let labels = [Label { start: 10, end: 20 }, Label { start: 40, end: 50 }];
        let flags = |on: &[i64]| -> Vec<(i64, bool)> { (0..60).map(|t| (t, on.contains(&t))).collect() };
        // Three flagged periods in the first incident (one alarm), one stray alarm, none in the second.
        let m = event_metrics(&flags(&[12, 13, 14, 30]), &labels);
        assert_eq!(
            (m.detected, m.incidents, m.true_alarms, m.false_alarms),
            (1, 2, 1, 1)
        );
        assert_eq!(m.delays_ms, vec![2]);
        assert_eq!((m.precision(), m.recall()), (0.5, 0.5));
        // An alarm that starts before the incident and runs into it is a true alarm.
        let m = event_metrics(&flags(&[8, 9, 10, 59]), &labels);
        assert_eq!(
            (m.true_alarms, m.false_alarms, m.delays_ms.clone()),
            (1, 1, vec![0])
        );
        assert_eq!(event_metrics(&flags(&[]), &[]).f1(), 1.0);
    }

    #[test]
    fn a_csv_with_the_wrong_columns_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, "timestamp,value\n1,2\n").unwrap();
        let e = read_series(&p).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("2 columns"), "{e}");
        std::fs::write(&p, "timestamp,a,b,c,d,e\n1,0.9,0.1,7,9,3\n2,,,,,0\n3,x,,,,0\n").unwrap();
        let e = read_series(&p).unwrap_err().to_string();
        assert!(e.contains(":4:") && e.contains("a: `x`"), "{e}");
        std::fs::write(&p, "timestamp,a,b,c,d,e\n1,0.9,0.1,7,9,3\n2,,,,,0\n").unwrap();
        let rows = read_series(&p).unwrap();
        assert_eq!(rows[1].2, crate::features::EMPTY);
    }
}
