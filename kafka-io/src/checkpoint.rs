//! The checkpoint protocol as a plain function over three small traits, so that its order is
//! tested without a broker or a store:
//!
//! 1. [`OutputSink::deliver`]: every output derived from the records consumed so far is
//!    delivered (and acknowledged);
//! 2. [`StateStore::write`]: what the records changed is written to the store;
//! 3. [`StateStore::save`]: each partition's state is saved with its next offset (a partition
//!    that another owner has moved ahead is [`Saved::Superseded`] and dropped);
//! 4. [`OffsetCommitter::commit`]: the next offsets of the saved partitions that moved are
//!    committed.
//!
//! A failure at any step returns at once: nothing after it runs, so no offset is committed
//! past work that was not done, and a restart replays that work.

/// Where one assigned partition stands at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The partition.
    pub partition: i32,
    /// The next offset to consume: every record before it has been handled.
    pub next_offset: i64,
    /// The offset last committed to Kafka by this worker (`None`: none yet).
    pub committed: Option<i64>,
    /// The partition's high watermark, from the client's last statistics.
    pub high_watermark: Option<i64>,
}

/// The consumer lag of each of `positions` whose high watermark is known: the records between
/// its next offset and the high watermark (partition id as a metric label).
pub fn lags(positions: &[Position]) -> impl Iterator<Item = (String, i64)> + '_ {
    positions.iter().filter_map(|p| {
        let high = p.high_watermark?;
        Some((p.partition.to_string(), (high - p.next_offset).max(0)))
    })
}

/// Step 1: the outputs of the records handled so far.
pub trait OutputSink<E> {
    /// Delivers every pending output of `positions`' partitions and waits until each is
    /// acknowledged.
    fn deliver(&mut self, positions: &[Position]) -> Result<(), E>;
}

/// Steps 2 and 3: the store.
pub trait StateStore<E> {
    /// Writes what the handled records changed (rows, verdicts) to the store.
    fn write(&mut self) -> Result<(), E>;
    /// Saves one partition's state with `position.next_offset`.
    fn save(&mut self, position: &Position) -> Result<Saved, E>;
}

/// Step 4: offsets.
pub trait OffsetCommitter<E> {
    /// Commits `(partition, next_offset)` pairs.
    fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), E>;
}

/// The outcome of [`StateStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Saved: the offset may be committed.
    Saved,
    /// Another owner saved a later offset: this one must drop the partition.
    Superseded,
}

/// What a checkpoint did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpointed {
    /// The offsets committed (partitions saved whose next offset moved).
    pub committed: Vec<(i32, i64)>,
    /// Partitions that another owner is ahead on: to be dropped.
    pub superseded: Vec<i32>,
}

/// Runs one checkpoint of `positions` in the protocol's order (see the module docs).
pub fn checkpoint<E, S, C>(
    service: &mut S,
    committer: &mut C,
    positions: &[Position],
) -> Result<Checkpointed, E>
where
    S: OutputSink<E> + StateStore<E>,
    C: OffsetCommitter<E>,
{
    service.deliver(positions)?;
    service.write()?;
    let mut done = Checkpointed::default();
    for position in positions {
        match service.save(position)? {
            Saved::Saved if position.committed != Some(position.next_offset) => {
                done.committed.push((position.partition, position.next_offset));
            }
            Saved::Saved => {}
            Saved::Superseded => done.superseded.push(position.partition),
        }
    }
    if !done.committed.is_empty() {
        committer.commit(&done.committed)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// One step a fake saw, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Step {
        Deliver(Vec<i32>),
        Write,
        Save(i32, i64),
        Commit(Vec<(i32, i64)>),
    }

    /// Which step fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fail {
        Deliver,
        Write,
        Save(i32),
        Commit,
    }

    type Log = Rc<RefCell<Vec<Step>>>;

    /// A service recording the steps; `fail` makes one of them fail, `superseded` partitions
    /// are refused by its store.
    struct RecordingService {
        log: Log,
        fail: Option<Fail>,
        superseded: Vec<i32>,
    }

    impl OutputSink<String> for RecordingService {
        fn deliver(&mut self, positions: &[Position]) -> Result<(), String> {
            if self.fail == Some(Fail::Deliver) {
                return Err("delivery failed".into());
            }
            let ids = positions.iter().map(|p| p.partition).collect();
            self.log.borrow_mut().push(Step::Deliver(ids));
            Ok(())
        }
    }

    impl StateStore<String> for RecordingService {
        fn write(&mut self) -> Result<(), String> {
            if self.fail == Some(Fail::Write) {
                return Err("write failed".into());
            }
            self.log.borrow_mut().push(Step::Write);
            Ok(())
        }

        fn save(&mut self, position: &Position) -> Result<Saved, String> {
            if self.fail == Some(Fail::Save(position.partition)) {
                return Err("save failed".into());
            }
            if self.superseded.contains(&position.partition) {
                return Ok(Saved::Superseded);
            }
            self.log
                .borrow_mut()
                .push(Step::Save(position.partition, position.next_offset));
            Ok(Saved::Saved)
        }
    }

    struct RecordingCommitter {
        log: Log,
        fail: bool,
    }

    impl OffsetCommitter<String> for RecordingCommitter {
        fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), String> {
            if self.fail {
                return Err("commit failed".into());
            }
            self.log.borrow_mut().push(Step::Commit(offsets.to_vec()));
            Ok(())
        }
    }

    fn position(partition: i32, next_offset: i64, committed: Option<i64>) -> Position {
        Position {
            partition,
            next_offset,
            committed,
            high_watermark: None,
        }
    }

    /// Runs a checkpoint of partitions 0 (at 10) and 1 (at 20, committed at 15) with `fail`.
    fn run(fail: Option<Fail>, superseded: Vec<i32>) -> (Result<Checkpointed, String>, Vec<Step>) {
        let log = Log::default();
        let mut service = RecordingService {
            log: log.clone(),
            fail,
            superseded,
        };
        let mut committer = RecordingCommitter {
            log: log.clone(),
            fail: fail == Some(Fail::Commit),
        };
        let positions = [position(0, 10, None), position(1, 20, Some(15))];
        let result = checkpoint(&mut service, &mut committer, &positions);
        let steps = log.borrow().clone();
        (result, steps)
    }

    #[test]
    fn outputs_are_delivered_then_written_then_saved_then_committed() {
        let (result, steps) = run(None, Vec::new());
        assert_eq!(
            steps,
            [
                Step::Deliver(vec![0, 1]),
                Step::Write,
                Step::Save(0, 10),
                Step::Save(1, 20),
                Step::Commit(vec![(0, 10), (1, 20)]),
            ]
        );
        assert_eq!(
            result.unwrap(),
            Checkpointed {
                committed: vec![(0, 10), (1, 20)],
                superseded: Vec::new()
            }
        );
    }

    #[test]
    fn a_failure_at_any_step_leaves_every_offset_uncommitted() {
        for (fail, done) in [
            (Fail::Deliver, vec![]),
            (Fail::Write, vec![Step::Deliver(vec![0, 1])]),
            (Fail::Save(0), vec![Step::Deliver(vec![0, 1]), Step::Write]),
            (
                Fail::Save(1),
                vec![Step::Deliver(vec![0, 1]), Step::Write, Step::Save(0, 10)],
            ),
        ] {
            let (result, steps) = run(Some(fail), Vec::new());
            assert!(result.is_err(), "{fail:?}");
            assert_eq!(steps, done, "{fail:?}: nothing after the failed step");
            assert!(
                !steps.iter().any(|s| matches!(s, Step::Commit(_))),
                "{fail:?}: committed"
            );
        }
    }

    #[test]
    fn a_failed_commit_is_reported_after_the_state_was_saved() {
        let (result, steps) = run(Some(Fail::Commit), Vec::new());
        assert_eq!(result.unwrap_err(), "commit failed");
        assert_eq!(steps.last(), Some(&Step::Save(1, 20)));
    }

    #[test]
    fn a_superseded_partition_is_neither_committed_nor_kept() {
        let (result, steps) = run(None, vec![0]);
        let done = result.unwrap();
        assert_eq!(done.superseded, [0]);
        assert_eq!(done.committed, [(1, 20)]);
        assert_eq!(steps.last(), Some(&Step::Commit(vec![(1, 20)])));
    }

    #[test]
    fn the_lag_counts_the_records_up_to_the_high_watermark() {
        let positions = [
            Position {
                high_watermark: Some(25),
                ..position(0, 10, None)
            },
            position(1, 20, None),
            Position {
                high_watermark: Some(20),
                ..position(2, 20, None)
            },
        ];
        let lags: Vec<(String, i64)> = lags(&positions).collect();
        assert_eq!(lags, [("0".to_string(), 15), ("2".to_string(), 0)]);
    }

    #[test]
    fn offsets_that_did_not_move_are_not_committed_again() {
        let log = Log::default();
        let mut service = RecordingService {
            log: log.clone(),
            fail: None,
            superseded: Vec::new(),
        };
        let mut committer = RecordingCommitter {
            log: log.clone(),
            fail: false,
        };
        let positions = [position(0, 10, Some(10)), position(1, 20, Some(20))];
        let done = checkpoint(&mut service, &mut committer, &positions).unwrap();
        assert!(done.committed.is_empty());
        assert_eq!(
            *log.borrow(),
            [
                Step::Deliver(vec![0, 1]),
                Step::Write,
                Step::Save(0, 10),
                Step::Save(1, 20)
            ],
            "unmoved partitions are still saved (their state may have changed), not committed"
        );
    }
}
