//! The last windows of one series: what a sequence model sees.
//!
//! The aggregator emits one window per series and period, in order, with explicit empty
//! windows while the series is active; a late event re-emits a window with a higher revision.
//! The buffer keeps the last `len` periods: a window after a gap (an idle series the aggregator
//! stopped emitting for) is preceded by empty periods; a revision replaces its period; a
//! repeated or older revision, or a window older than the buffer, changes nothing.

use std::collections::VecDeque;

use crate::features::{RawFeatures, EMPTY};

/// What a window did to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The window is the newest of a full buffer: score the sequence ending with it.
    Ready,
    /// Stored, but there is nothing to score yet (buffer not full, or an older period revised).
    Stored,
    /// A window already seen at this or a higher revision, or older than the buffer: ignored.
    Ignored,
}

/// One period of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Period start (epoch ms).
    pub start: i64,
    /// Revision of the window that filled it; `-1` for a gap filled as empty.
    pub revision: i32,
    /// Its features.
    pub features: RawFeatures,
}

/// The last `len` periods of one series.
#[derive(Debug, Clone)]
pub struct SeriesBuffer {
    period_ms: i64,
    len: usize,
    slots: VecDeque<Slot>,
}

impl SeriesBuffer {
    /// An empty buffer of `len` periods of `period_ms`.
    pub fn new(period_ms: i64, len: usize) -> Self {
        assert!(period_ms > 0 && len > 0);
        SeriesBuffer {
            period_ms,
            len,
            slots: VecDeque::with_capacity(len),
        }
    }

    /// Adds the window of the period starting at `start`.
    pub fn push(&mut self, start: i64, revision: i32, features: RawFeatures) -> Push {
        let slot = Slot {
            start,
            revision,
            features,
        };
        let Some(last) = self.slots.back().map(|s| s.start) else {
            self.slots.push_back(slot);
            return self.ready_or_stored();
        };
        if start > last {
            let first_gap = (last + self.period_ms).max(start - (self.len as i64 - 1) * self.period_ms);
            let mut gap = first_gap;
            while gap < start {
                self.append(Slot {
                    start: gap,
                    revision: -1,
                    features: EMPTY,
                });
                gap += self.period_ms;
            }
            self.append(slot);
            return self.ready_or_stored();
        }
        let Some(existing) = self.slots.iter_mut().find(|s| s.start == start) else {
            return Push::Ignored;
        };
        if revision <= existing.revision {
            return Push::Ignored;
        }
        *existing = slot;
        if start == last {
            self.ready_or_stored()
        } else {
            Push::Stored
        }
    }

    fn append(&mut self, slot: Slot) {
        if self.slots.len() == self.len {
            self.slots.pop_front();
        }
        self.slots.push_back(slot);
    }

    fn ready_or_stored(&self) -> Push {
        if self.slots.len() == self.len {
            Push::Ready
        } else {
            Push::Stored
        }
    }

    /// The buffered periods, oldest first.
    pub fn slots(&self) -> impl ExactSizeIterator<Item = &Slot> {
        self.slots.iter()
    }

    /// Whether the buffer holds `len` periods.
    pub fn is_full(&self) -> bool {
        self.slots.len() == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: i64 = 900_000;

    fn f(tasks: f64) -> RawFeatures {
        [Some(1.0), Some(0.0), Some(5.0), Some(8.0), Some(tasks)]
    }

    fn starts(b: &SeriesBuffer) -> Vec<i64> {
        b.slots().map(|s| s.start / P).collect()
    }

    #[test]
    fn ready_once_full_then_for_every_new_period() {
        let mut b = SeriesBuffer::new(P, 3);
        assert_eq!(b.push(0, 0, f(1.0)), Push::Stored);
        assert_eq!(b.push(P, 0, f(1.0)), Push::Stored);
        assert_eq!(b.push(2 * P, 0, f(1.0)), Push::Ready);
        assert_eq!(b.push(3 * P, 0, f(1.0)), Push::Ready);
        assert_eq!(starts(&b), [1, 2, 3]);
    }

    #[test]
    fn a_gap_is_filled_with_empty_periods() {
        let mut b = SeriesBuffer::new(P, 4);
        b.push(0, 0, f(1.0));
        assert_eq!(b.push(3 * P, 0, f(2.0)), Push::Ready);
        assert_eq!(starts(&b), [0, 1, 2, 3]);
        assert_eq!(b.slots().nth(1).unwrap().features, EMPTY);
        // A gap longer than the buffer keeps only the last periods.
        assert_eq!(b.push(1000 * P, 0, f(3.0)), Push::Ready);
        assert_eq!(starts(&b), [997, 998, 999, 1000]);
        assert!(b.slots().take(3).all(|s| s.features == EMPTY && s.revision == -1));
    }

    #[test]
    fn revisions_replace_their_period_and_rescore_only_the_newest() {
        let mut b = SeriesBuffer::new(P, 2);
        b.push(0, 0, f(1.0));
        b.push(P, 0, f(1.0));
        assert_eq!(
            b.push(P, 1, f(9.0)),
            Push::Ready,
            "newest period revised: rescore"
        );
        assert_eq!(b.slots().last().unwrap().features, f(9.0));
        assert_eq!(b.push(P, 1, f(7.0)), Push::Ignored, "same revision again");
        assert_eq!(b.push(P, 0, f(7.0)), Push::Ignored, "older revision");
        assert_eq!(
            b.push(0, 1, f(5.0)),
            Push::Stored,
            "older period revised: context only"
        );
        assert_eq!(b.slots().next().unwrap().features, f(5.0));
        assert_eq!(b.push(-P, 0, f(5.0)), Push::Ignored, "older than the buffer");
    }

    #[test]
    fn a_window_arriving_for_a_gap_filled_period_replaces_it() {
        let mut b = SeriesBuffer::new(P, 3);
        b.push(0, 0, f(1.0));
        b.push(2 * P, 0, f(1.0));
        assert_eq!(b.push(P, 0, f(4.0)), Push::Stored);
        assert_eq!(b.slots().nth(1).unwrap().features, f(4.0));
    }
}
