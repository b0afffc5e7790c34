//! The [`SchemaStore`] contract: the migrations apply once, in order, and are recorded.

use store::SchemaStore;

use crate::Caps;

/// The scenarios start from an empty database.
pub(crate) const MIGRATED: bool = false;

pub(crate) async fn migrations_apply_once(store: &dyn SchemaStore, _caps: Caps) {
    assert_eq!(store.migrate().await.unwrap(), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        store.migrate().await.unwrap(),
        Vec::<u32>::new(),
        "second run applies nothing"
    );
    assert_eq!(store.applied_migrations().await.unwrap(), vec![1, 2, 3, 4, 5, 6]);
}
