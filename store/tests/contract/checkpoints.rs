//! The [`CheckpointStore`] contract: checkpoints round-trip and never go back.

use store::sqlite::SqliteStore;
use store::{Checkpoint, CheckpointStore, Error, SchemaStore};

use crate::{Caps, FULL};

/// The scenarios start from a migrated database.
pub(crate) const MIGRATED: bool = true;

pub(crate) async fn checkpoints_round_trip_and_never_go_back(store: &dyn CheckpointStore, _caps: Caps) {
    assert_eq!(store.load_checkpoint("g", "events", 0).await.unwrap(), None);
    let cp = |partition, next_offset, state: &[u8]| Checkpoint {
        consumer_group: "g".into(),
        topic: "events".into(),
        partition,
        next_offset,
        state: state.to_vec(),
        updated_at_ms: 42,
    };
    store.save_checkpoint(&cp(0, 100, b"state-100")).await.unwrap();
    store.save_checkpoint(&cp(1, 7, b"p1")).await.unwrap();
    store
        .save_checkpoint(&cp(0, 250, b"state-250\0bytes"))
        .await
        .unwrap();
    store
        .save_checkpoint(&cp(0, 250, b"state-250\0bytes"))
        .await
        .unwrap(); // same offset: idempotent
    let err = store.save_checkpoint(&cp(0, 200, b"stale")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CheckpointRegression {
                stored: 250,
                attempted: 200,
                partition: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.load_checkpoint("g", "events", 0).await.unwrap(),
        Some(cp(0, 250, b"state-250\0bytes"))
    );
    assert_eq!(
        store.load_checkpoint("g", "events", 1).await.unwrap(),
        Some(cp(1, 7, b"p1"))
    );
    assert_eq!(store.load_checkpoint("other", "events", 0).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_file_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/agentops.db");
    let path = path.to_str().unwrap();
    {
        let store = SqliteStore::open(path).await.unwrap();
        store.migrate().await.unwrap();
        checkpoints_round_trip_and_never_go_back(&store, FULL).await;
    }
    let reopened = SqliteStore::open(path).await.unwrap();
    assert_eq!(
        reopened.migrate().await.unwrap(),
        Vec::<u32>::new(),
        "migrations are recorded"
    );
    assert_eq!(
        reopened
            .load_checkpoint("g", "events", 0)
            .await
            .unwrap()
            .unwrap()
            .next_offset,
        250
    );
}
