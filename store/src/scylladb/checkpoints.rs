//! Consumer checkpoints on ScyllaDB ([`CheckpointStore`]): one row per partition, kept from
//! going back by lightweight transactions (`lwt=true`) or a read before the write (`lwt=false`,
//! the CQL test double: not safe against two concurrent writers).

use async_trait::async_trait;
use scylla::response::query_result::QueryResult;

use super::{applied, ScyllaStore};
use crate::{Checkpoint, CheckpointStore, Error, Result};

const INSERT: &str =
    "INSERT INTO checkpoints (consumer_group, topic, partition_id, next_offset, state, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?)";

impl ScyllaStore {
    async fn stored_offset(&self, cp: &Checkpoint) -> Result<Option<i64>> {
        let first: Option<(i64,)> = self
            .read_one(
                "SELECT next_offset FROM checkpoints WHERE consumer_group = ? AND topic = ? AND partition_id = ?",
                (&cp.consumer_group, &cp.topic, cp.partition),
            )
            .await?;
        Ok(first.map(|(offset,)| offset))
    }

    /// Writes `cp` whole with `INSERT` and `condition` after it (empty, or an LWT condition).
    async fn insert_checkpoint(&self, cp: &Checkpoint, condition: &str) -> Result<QueryResult> {
        let values = (
            &cp.consumer_group,
            &cp.topic,
            cp.partition,
            cp.next_offset,
            &cp.state,
            cp.updated_at_ms,
        );
        self.session
            .execute_unpaged(format!("{INSERT}{condition}"), values)
            .await
            .map_err(Error::scylla)
    }

    async fn conditional_checkpoint(&self, cp: &Checkpoint) -> Result<bool> {
        if applied(self.insert_checkpoint(cp, " IF NOT EXISTS").await?)? {
            return Ok(true);
        }
        let updated = self
            .session
            .execute_unpaged(
                "UPDATE checkpoints SET next_offset = ?, state = ?, updated_at = ? \
                 WHERE consumer_group = ? AND topic = ? AND partition_id = ? IF next_offset <= ?",
                (
                    cp.next_offset,
                    &cp.state,
                    cp.updated_at_ms,
                    &cp.consumer_group,
                    &cp.topic,
                    cp.partition,
                    cp.next_offset,
                ),
            )
            .await
            .map_err(Error::scylla)?;
        applied(updated)
    }
}

#[async_trait]
impl CheckpointStore for ScyllaStore {
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let regression = |stored| Error::CheckpointRegression {
            topic: checkpoint.topic.clone(),
            partition: checkpoint.partition,
            stored,
            attempted: checkpoint.next_offset,
        };
        if self.config.lwt {
            if !self.conditional_checkpoint(checkpoint).await? {
                let stored = self.stored_offset(checkpoint).await?.unwrap_or(i64::MAX);
                return Err(regression(stored));
            }
            return Ok(());
        }
        if let Some(stored) = self
            .stored_offset(checkpoint)
            .await?
            .filter(|&s| s > checkpoint.next_offset)
        {
            return Err(regression(stored));
        }
        self.insert_checkpoint(checkpoint, "").await?;
        Ok(())
    }

    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, Vec<u8>, i64)> = self
            .read_one(
                "SELECT next_offset, state, updated_at FROM checkpoints \
                 WHERE consumer_group = ? AND topic = ? AND partition_id = ?",
                (consumer_group, topic, partition),
            )
            .await?;
        Ok(row.map(|(next_offset, state, updated_at_ms)| Checkpoint {
            consumer_group: consumer_group.to_string(),
            topic: topic.to_string(),
            partition,
            next_offset,
            state,
            updated_at_ms,
        }))
    }
}
