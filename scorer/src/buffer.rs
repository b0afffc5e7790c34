//! One series as the scorer sees it: its detector (baselines and evidence, see
//! [`crate::detector`]) and the model input rows of its last windows (pure).
//!
//! The aggregator emits one window per series and period, in order, with explicit empty
//! windows while the series is active; a late event re-emits a window with a higher revision.
//! - A window after a gap (an idle series the aggregator stopped emitting for) is preceded by
//!   empty periods, which the detector reads too (no tasks where some were expected is how an
//!   outage shows); at most [`MAX_GAP_MS`] of them.
//! - A revision of the newest window re-applies it to the detector as it was before that
//!   window, and is scored again.
//! - A revision of an older window, a repeated revision, or a window older than the newest is
//!   ignored (the detector has moved on; the verdict stands), with the reason.

use std::collections::VecDeque;

use crate::detector::{DetectorParams, Evidence, SeriesDetector, WindowStats};
use crate::features::{self, Row};

/// Longest gap (one week) filled with empty windows; the windows of a longer gap are not read
/// one by one (the series' baselines stay as they were).
pub const MAX_GAP_MS: i64 = 7 * schemas::time::DAY_MS;

/// What a window did to the series.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// The window is the newest of a full buffer: score the sequence ending with it.
    Ready(Evidence),
    /// Read, but there is no full sequence to score yet.
    Stored(Evidence),
    /// Not read, for this reason (`stale`: at or below a revision already read, or older than
    /// the newest window; `past_revision`: a revision of a window before the newest).
    Ignored(&'static str),
}

/// One period of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Period start (epoch ms).
    pub start: i64,
    /// Revision of the window that filled it; `-1` for a gap filled as empty.
    pub revision: i32,
    /// Its model input.
    pub row: Row,
}

/// The detector and the last `len` periods of one series.
#[derive(Debug, Clone)]
pub struct SeriesBuffer {
    period_ms: i64,
    len: usize,
    slots: VecDeque<Slot>,
    detector: SeriesDetector,
    /// The detector before the newest window was read.
    before_newest: Option<SeriesDetector>,
}

impl SeriesBuffer {
    /// An empty series of `len` periods of `period_ms`.
    pub fn new(period_ms: i64, len: usize) -> Self {
        assert!(period_ms > 0 && len > 0);
        SeriesBuffer {
            period_ms,
            len,
            slots: VecDeque::with_capacity(len),
            detector: SeriesDetector::new(),
            before_newest: None,
        }
    }

    /// Reads the window `w` (revision `revision`).
    pub fn push(&mut self, w: &WindowStats, revision: i32, params: &DetectorParams) -> Push {
        let start = w.start_ms;
        let Some(last) = self.slots.back().map(|s| (s.start, s.revision)) else {
            return self.read(w, revision, params);
        };
        if start > last.0 {
            let longest = MAX_GAP_MS / self.period_ms * self.period_ms;
            let mut gap = (last.0 + self.period_ms).max(start - longest);
            while gap < start {
                let e = self.detector.observe(&WindowStats::empty(gap), params);
                self.append(Slot {
                    start: gap,
                    revision: -1,
                    row: features::row(&e),
                });
                gap += self.period_ms;
            }
            return self.read(w, revision, params);
        }
        if start == last.0 && revision > last.1 {
            if let Some(before) = self.before_newest.take() {
                self.detector = before;
                self.slots.pop_back();
                return self.read(w, revision, params);
            }
        }
        if start < last.0
            && self
                .slots
                .iter()
                .any(|s| s.start == start && revision > s.revision)
        {
            return Push::Ignored("past_revision");
        }
        Push::Ignored("stale")
    }

    fn read(&mut self, w: &WindowStats, revision: i32, params: &DetectorParams) -> Push {
        self.before_newest = Some(self.detector.clone());
        let evidence = self.detector.observe(w, params);
        self.append(Slot {
            start: w.start_ms,
            revision,
            row: features::row(&evidence),
        });
        if self.slots.len() == self.len {
            Push::Ready(evidence)
        } else {
            Push::Stored(evidence)
        }
    }

    fn append(&mut self, slot: Slot) {
        if self.slots.len() == self.len {
            self.slots.pop_front();
        }
        self.slots.push_back(slot);
    }

    /// The buffered periods, oldest first.
    pub fn slots(&self) -> impl ExactSizeIterator<Item = &Slot> {
        self.slots.iter()
    }

    /// The model input rows, oldest first.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &Row> {
        self.slots.iter().map(|s| &s.row)
    }

    /// Whether the buffer holds `len` periods.
    pub fn is_full(&self) -> bool {
        self.slots.len() == self.len
    }

    /// The series' detector.
    pub fn detector(&self) -> &SeriesDetector {
        &self.detector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = 900_000;

    fn w(period: i64, tasks: i64) -> WindowStats {
        WindowStats {
            start_ms: period * P,
            tasks,
            succeeded: tasks * 9 / 10,
            with_intervention: tasks / 10,
            cost_micros: tasks * 1000,
            p50_ms: (tasks > 0).then_some(1000.0),
            p95_ms: (tasks > 0).then_some(3000.0),
        }
    }

    fn starts(b: &SeriesBuffer) -> Vec<i64> {
        b.slots().map(|s| s.start / P).collect()
    }

    fn ready(p: &Push) -> bool {
        matches!(p, Push::Ready(_))
    }

    #[test]
    fn ready_once_full_then_for_every_new_period() {
        let params = DetectorParams::default();
        let mut b = SeriesBuffer::new(P, 3);
        assert!(matches!(b.push(&w(0, 10), 0, &params), Push::Stored(_)));
        assert!(matches!(b.push(&w(1, 10), 0, &params), Push::Stored(_)));
        assert!(ready(&b.push(&w(2, 10), 0, &params)));
        assert!(ready(&b.push(&w(3, 10), 0, &params)));
        assert_eq!(starts(&b), [1, 2, 3]);
        assert_eq!(b.detector().seen(), 4);
    }

    #[test]
    fn a_gap_is_read_as_empty_periods() {
        let params = DetectorParams::default();
        let mut b = SeriesBuffer::new(P, 4);
        b.push(&w(0, 10), 0, &params);
        assert!(ready(&b.push(&w(5, 10), 0, &params)));
        assert_eq!(starts(&b), [2, 3, 4, 5]);
        assert_eq!(b.slots().map(|s| s.revision).collect::<Vec<_>>(), [-1, -1, -1, 0]);
        assert_eq!(b.detector().seen(), 6, "the gap windows were read");
        assert_eq!(
            b.slots().next().unwrap().row[0],
            None,
            "no rate in an empty window"
        );
    }

    #[test]
    fn a_revision_of_the_newest_is_read_again_from_the_state_before_it() {
        let params = DetectorParams::default();
        let mut a = SeriesBuffer::new(P, 2);
        let mut b = SeriesBuffer::new(P, 2);
        for i in 0..20 {
            a.push(&w(i, 10), 0, &params);
            b.push(&w(i, 10), 0, &params);
        }
        // a reads a window and its revision; b reads only the revised content.
        a.push(&w(20, 5), 0, &params);
        let revised = a.push(&w(20, 12), 1, &params);
        let direct = b.push(&w(20, 12), 1, &params);
        assert!(ready(&revised));
        assert_eq!(revised, direct);
        assert_eq!(a.detector(), b.detector());
        assert_eq!(a.push(&w(20, 12), 1, &params), Push::Ignored("stale"));
        assert_eq!(a.push(&w(20, 3), 0, &params), Push::Ignored("stale"));
    }

    #[test]
    fn older_windows_and_their_revisions_are_ignored_with_the_reason() {
        let params = DetectorParams::default();
        let mut b = SeriesBuffer::new(P, 3);
        for i in 0..5 {
            b.push(&w(i, 10), 0, &params);
        }
        let before = b.detector().clone();
        assert_eq!(b.push(&w(3, 99), 1, &params), Push::Ignored("past_revision"));
        assert_eq!(b.push(&w(3, 99), 0, &params), Push::Ignored("stale"));
        assert_eq!(
            b.push(&w(0, 99), 1, &params),
            Push::Ignored("stale"),
            "older than the buffer"
        );
        assert_eq!(b.detector(), &before);
        assert_eq!(starts(&b), [2, 3, 4]);
    }

    #[test]
    fn a_long_gap_reads_at_most_a_week_of_empty_windows() {
        let params = DetectorParams::default();
        let mut b = SeriesBuffer::new(P, 2);
        b.push(&w(0, 10), 0, &params);
        b.push(&w(100_000, 10), 0, &params);
        assert_eq!(b.detector().seen() as i64, 2 + MAX_GAP_MS / P);
    }
}
