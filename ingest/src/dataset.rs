//! A generated data set on disk.
//!
//! A data-set directory holds:
//! - `events.jsonl`: one record per line in arrival order: valid events as `TaskEvent` JSON
//!   (duplicates included), invalid ones likewise, and a few lines that are not events at all;
//! - `incidents.json`: the injected incidents (series, kind, start, end, magnitude);
//! - `truth.jsonl`: exact daily metrics of the distinct valid events ([`crate::truth`]);
//! - `manifest.json`: the generator config and the counts of what was written.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;
use schemas::TaskEvent;
use serde::{Deserialize, Serialize};

use crate::generator::{Emitted, GenConfig, Generator, Record};
use crate::truth::{GroundTruth, TruthRow};
use crate::{Error, Result};

/// Events file name.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Incident labels file name.
pub const INCIDENTS_FILE: &str = "incidents.json";
/// Ground-truth file name.
pub const TRUTH_FILE: &str = "truth.jsonl";
/// Manifest file name.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Records written (every kind).
    pub records: u64,
    /// Valid events, duplicates included.
    pub valid_events: u64,
    /// Distinct valid events (what the KPIs count).
    pub distinct_events: u64,
    /// Events with an invalid field.
    pub invalid_events: u64,
    /// Records that are not events.
    pub garbage_records: u64,
    /// Bytes of `events.jsonl`.
    pub bytes: u64,
}

impl Summary {
    /// Counts the records of `batch` by kind.
    pub fn count(&mut self, batch: &[Emitted]) {
        for e in batch {
            self.records += 1;
            match e.record {
                Record::Event(_) => self.valid_events += 1,
                Record::Invalid { .. } => self.invalid_events += 1,
                Record::Garbage(_) => self.garbage_records += 1,
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    generator: GenConfig,
    summary: Summary,
    incidents: usize,
    control_series: Vec<(String, String)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Appends the JSON line of a record.
pub fn record_line(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Event(event) | Record::Invalid { event, .. } => {
            // sonic-rs: the same JSON as serde_json, with SIMD string escaping (the hot spot).
            sonic_rs::to_writer(&mut *out, event).expect("events serialize");
        }
        Record::Garbage(bytes) => out.extend(bytes.iter().map(|b| if *b == b'\n' { b' ' } else { *b })),
    }
    out.push(b'\n');
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let file = File::create(path).map_err(io_err(path))?;
    serde_json::to_writer_pretty(BufWriter::new(file), value)
        .map_err(|e| io_err(path)(std::io::Error::other(e)))
}

/// Writes ground-truth rows as JSON lines.
pub fn write_truth(path: &Path, rows: &[TruthRow]) -> Result<()> {
    let mut out = BufWriter::new(File::create(path).map_err(io_err(path))?);
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|e| io_err(path)(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(io_err(path))?;
    }
    out.flush().map_err(io_err(path))
}

/// Reads ground-truth rows.
pub fn read_truth(path: &Path) -> Result<Vec<TruthRow>> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        rows.push(serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            line: i + 1,
            message: e.to_string(),
        })?);
    }
    Ok(rows)
}

/// Folds the valid events of a generated batch into the ground truth.
pub fn add_to_truth(truth: &mut GroundTruth, batch: &[Emitted]) {
    for e in batch {
        if let Record::Event(event) = &e.record {
            truth.add(event);
        }
    }
}

/// Writes what goes next to generated events wherever they went: the incident labels and,
/// when given, the ground truth.
pub fn write_labels(generator: &Generator, dir: &Path, truth: Option<&GroundTruth>) -> Result<()> {
    write_json(&dir.join(INCIDENTS_FILE), &generator.incidents())?;
    if let Some(truth) = truth {
        write_truth(&dir.join(TRUTH_FILE), &truth.rows())?;
    }
    Ok(())
}

/// Generates the whole data set into `dir`; `progress` is called after every simulated hour
/// with the hours done and the summary so far. `with_truth = false` skips the ground truth
/// (for throughput runs).
pub fn write(
    generator: &Generator,
    dir: &Path,
    with_truth: bool,
    mut progress: impl FnMut(usize, &Summary),
) -> Result<Summary> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let events_path = dir.join(EVENTS_FILE);
    let mut events =
        BufWriter::with_capacity(1 << 20, File::create(&events_path).map_err(io_err(&events_path))?);
    let mut summary = Summary::default();
    let mut truth = GroundTruth::default();
    // Pipeline: the next hour is generated while this one is serialized and folded into the
    // truth.
    let mut hours = generator.hours();
    let mut current = hours.next();
    let mut hour = 0;
    while let Some(batch) = current {
        let (next, (chunks, ())) = rayon::join(
            || hours.next(),
            || {
                rayon::join(
                    || {
                        batch
                            .par_chunks(256)
                            .map(|chunk| {
                                let mut buf = Vec::with_capacity(chunk.len() * 400);
                                for e in chunk {
                                    record_line(&e.record, &mut buf);
                                }
                                buf
                            })
                            .collect::<Vec<_>>()
                    },
                    || {
                        if with_truth {
                            add_to_truth(&mut truth, &batch);
                        }
                    },
                )
            },
        );
        for chunk in chunks {
            summary.bytes += chunk.len() as u64;
            events.write_all(&chunk).map_err(io_err(&events_path))?;
        }
        summary.count(&batch);
        // Freeing a batch is a good share of the work: do it off the writing thread.
        rayon::spawn(move || drop(batch));
        hour += 1;
        progress(hour, &summary);
        current = next;
    }
    events.flush().map_err(io_err(&events_path))?;
    summary.distinct_events = if with_truth {
        truth.distinct_events() as u64
    } else {
        0
    };
    write_labels(generator, dir, with_truth.then_some(&truth))?;
    let control_series = generator
        .series()
        .into_iter()
        .filter(|s| s.2)
        .map(|(t, a, _)| (t, a))
        .collect();
    let manifest = Manifest {
        generator: generator.config().clone(),
        summary: summary.clone(),
        incidents: generator.incidents().len(),
        control_series,
    };
    write_json(&dir.join(MANIFEST_FILE), &manifest)?;
    Ok(summary)
}

/// A skipped line of an events file: its 1-based number and why.
pub type SkippedLine = (usize, String);

/// Reads an events file: the valid events, and every other line with why it was skipped.
pub fn read_events(path: &Path) -> Result<(Vec<TaskEvent>, Vec<SkippedLine>)> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in BufReader::with_capacity(1 << 20, file).split(b'\n').enumerate() {
        let line = line.map_err(io_err(path))?;
        match serde_json::from_slice::<TaskEvent>(&line) {
            Ok(event) => match schemas::validation::validate(&event) {
                Ok(()) => events.push(event),
                Err(e) => skipped.push((i + 1, e.to_string())),
            },
            Err(e) => skipped.push((i + 1, e.to_string())),
        }
    }
    Ok((events, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_set_round_trips_and_its_truth_matches_the_events_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = GenConfig {
            days: 2,
            tenants: 2,
            agents_per_tenant: 2,
            control_agents_per_tenant: 1,
            tasks_per_series_per_day: 300.0,
            malformed_rate: 0.01,
            ..GenConfig::default()
        };
        let g = Generator::new(config).unwrap();
        let mut hours = 0;
        let summary = write(&g, dir.path(), true, |h, _| hours = h).unwrap();
        assert_eq!(hours, 48);
        let (events, skipped) = read_events(&dir.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(events.len() as u64, summary.valid_events);
        assert_eq!(
            skipped.len() as u64,
            summary.invalid_events + summary.garbage_records
        );
        assert!(summary.invalid_events + summary.garbage_records > 0);
        let mut truth = GroundTruth::default();
        events.iter().for_each(|e| truth.add(e));
        assert_eq!(truth.distinct_events() as u64, summary.distinct_events);
        assert_eq!(read_truth(&dir.path().join(TRUTH_FILE)).unwrap(), truth.rows());
        let manifest: serde_json::Value =
            serde_json::from_reader(File::open(dir.path().join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(manifest["summary"]["records"], summary.records);
        let incidents: Vec<crate::generator::Incident> =
            serde_json::from_reader(File::open(dir.path().join(INCIDENTS_FILE)).unwrap()).unwrap();
        assert_eq!(incidents, g.incidents());
    }

    #[test]
    fn the_same_seed_writes_identical_files() {
        let config = GenConfig {
            days: 1,
            tenants: 1,
            agents_per_tenant: 3,
            tasks_per_series_per_day: 500.0,
            ..GenConfig::default()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(
            &Generator::new(config.clone()).unwrap(),
            a.path(),
            true,
            |_, _| {},
        )
        .unwrap();
        write(&Generator::new(config).unwrap(), b.path(), true, |_, _| {}).unwrap();
        for file in [EVENTS_FILE, INCIDENTS_FILE, TRUTH_FILE, MANIFEST_FILE] {
            assert_eq!(
                std::fs::read(a.path().join(file)).unwrap(),
                std::fs::read(b.path().join(file)).unwrap(),
                "{file}"
            );
        }
    }
}
