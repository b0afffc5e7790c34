//! Consumer checkpoints on SQLite ([`CheckpointStore`]): the offset check and the write in one
//! IMMEDIATE transaction.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::{Checkpoint, CheckpointStore, Error, Result};

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let cp = checkpoint.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT next_offset FROM checkpoints WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
                    params![cp.consumer_group, cp.topic, cp.partition],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(stored) = stored.filter(|&s| s > cp.next_offset) {
                return Err(Error::CheckpointRegression {
                    topic: cp.topic,
                    partition: cp.partition,
                    stored,
                    attempted: cp.next_offset,
                });
            }
            tx.execute(
                "INSERT OR REPLACE INTO checkpoints (consumer_group, topic, partition_id, next_offset, state, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![cp.consumer_group, cp.topic, cp.partition, cp.next_offset, cp.state, cp.updated_at_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn load_checkpoint(
        &self,
        consumer_group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>> {
        let (group, topic) = (consumer_group.to_string(), topic.to_string());
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT next_offset, state, updated_at FROM checkpoints \
                     WHERE consumer_group = ?1 AND topic = ?2 AND partition_id = ?3",
                    params![group, topic, partition],
                    |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()?;
            Ok(row.map(|(next_offset, state, updated_at_ms)| Checkpoint {
                consumer_group: group,
                topic,
                partition,
                next_offset,
                state,
                updated_at_ms,
            }))
        })
        .await
    }
}
