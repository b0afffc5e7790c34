//! The [`ApiKeyStore`] contract: keys created once, found, listed in order, revoked once.

use store::{ApiKey, ApiKeyStore, Error};

use crate::Caps;

/// The scenarios start from a migrated database.
pub(crate) const MIGRATED: bool = true;

pub(crate) async fn api_keys_create_find_list_revoke(store: &dyn ApiKeyStore, _caps: Caps) {
    let key = |id: &str, tenant: &str| ApiKey {
        key_id: id.into(),
        tenant_id: tenant.into(),
        secret_sha256: format!("{:0>64}", id),
        label: format!("label of {id}"),
        created_at_ms: 1_000,
        revoked_at_ms: None,
    };
    store.create_api_key(&key("k2", "globex")).await.unwrap();
    store.create_api_key(&key("k1", "acme")).await.unwrap();
    assert!(
        matches!(
            store.create_api_key(&key("k1", "globex")).await,
            Err(Error::Conflict(_))
        ),
        "an id is never reused"
    );
    assert_eq!(store.api_key("k1").await.unwrap(), Some(key("k1", "acme")));
    assert_eq!(store.api_key("nope").await.unwrap(), None);
    assert_eq!(
        store.api_keys().await.unwrap(),
        vec![key("k1", "acme"), key("k2", "globex")]
    );
    assert!(store.revoke_api_key("k1", 5_000).await.unwrap());
    assert!(store.revoke_api_key("k1", 9_000).await.unwrap());
    assert!(!store.revoke_api_key("nope", 5_000).await.unwrap());
    let revoked = store.api_key("k1").await.unwrap().unwrap();
    assert_eq!(
        revoked.revoked_at_ms,
        Some(5_000),
        "the first revocation time is kept"
    );
    assert_eq!(store.api_key("k2").await.unwrap().unwrap().revoked_at_ms, None);
}
