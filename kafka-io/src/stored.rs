//! [`StoredCheckpoints`]: what a handler of a [`Checkpoints::InStore`](crate::worker::Checkpoints)
//! worker keeps in the store: each partition's state with its next offset, one row, never
//! moving back.

use std::sync::Arc;

use store::{Checkpoint, Store};
use tokio::runtime::Handle;

use crate::checkpoint::{Position, Saved};

/// The checkpoint rows of one consumer group on one topic.
pub struct StoredCheckpoints {
    store: Arc<dyn Store>,
    runtime: Handle,
    group: String,
    topic: String,
}

impl StoredCheckpoints {
    /// The rows of `group` on `topic` in `store`; `runtime` runs the store's calls.
    pub fn new(store: Arc<dyn Store>, runtime: Handle, group: &str, topic: &str) -> Self {
        StoredCheckpoints {
            store,
            runtime,
            group: group.to_string(),
            topic: topic.to_string(),
        }
    }

    /// The saved state and next offset of `partition` (`None`: nothing saved yet).
    pub fn load(&self, partition: i32) -> store::Result<Option<(Vec<u8>, i64)>> {
        let checkpoint =
            self.runtime
                .block_on(self.store.load_checkpoint(&self.group, &self.topic, partition))?;
        Ok(checkpoint.map(|cp| (cp.state, cp.next_offset)))
    }

    /// Saves `state` with `position.next_offset` at `now_ms`; [`Saved::Superseded`] when
    /// another owner saved a later offset.
    pub fn save(&self, position: &Position, state: Vec<u8>, now_ms: i64) -> store::Result<Saved> {
        let checkpoint = Checkpoint {
            consumer_group: self.group.clone(),
            topic: self.topic.clone(),
            partition: position.partition,
            next_offset: position.next_offset,
            state,
            updated_at_ms: now_ms,
        };
        match self.runtime.block_on(self.store.save_checkpoint(&checkpoint)) {
            Ok(()) => Ok(Saved::Saved),
            Err(store::Error::CheckpointRegression {
                stored, attempted, ..
            }) => {
                tracing::warn!(
                    partition = position.partition,
                    stored,
                    attempted,
                    "another owner is ahead"
                );
                Ok(Saved::Superseded)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(partition: i32, next_offset: i64) -> Position {
        Position {
            partition,
            next_offset,
            committed: None,
            high_watermark: None,
        }
    }

    #[test]
    fn a_saved_state_loads_back_and_an_older_offset_is_superseded() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = runtime.block_on(store::open_migrated(&url)).unwrap();
        let rows = StoredCheckpoints::new(store.clone(), runtime.handle().clone(), "g", "t");
        assert_eq!(rows.load(0).unwrap(), None);
        assert_eq!(
            rows.save(&position(0, 10), b"ten".to_vec(), 1).unwrap(),
            Saved::Saved
        );
        assert_eq!(rows.load(0).unwrap(), Some((b"ten".to_vec(), 10)));
        assert_eq!(
            rows.save(&position(0, 7), b"seven".to_vec(), 2).unwrap(),
            Saved::Superseded
        );
        assert_eq!(rows.load(0).unwrap(), Some((b"ten".to_vec(), 10)), "kept");
        let other_group = StoredCheckpoints::new(store, runtime.handle().clone(), "h", "t");
        assert_eq!(other_group.load(0).unwrap(), None);
    }
}
