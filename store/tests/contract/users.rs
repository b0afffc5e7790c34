//! The [`UserStore`] contract: unique, case-insensitive logins (also under concurrent
//! registrations where the backend can prove it), tenant grants per user.

use store::sqlite::SqliteStore;
use store::{Error, SchemaStore, User, UserStore, Uuid};

use crate::Caps;

/// The scenarios start from a migrated database.
pub(crate) const MIGRATED: bool = true;

fn user(email: &str, username: Option<&str>) -> User {
    User {
        id: Uuid::new_v4(),
        email: email.into(),
        username: username.map(String::from),
        password_hash: "$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01".into(),
        created_at_ms: 1_000,
        updated_at_ms: 2_000,
    }
}

pub(crate) async fn users_create_find_and_conflict_by_field(store: &dyn UserStore, _caps: Caps) {
    let ada = user("Ada@Example.COM", Some("Ada_L"));
    store.create_user(&ada).await.unwrap();
    let stored = User {
        email: "ada@example.com".into(),
        username: Some("ada_l".into()),
        ..ada.clone()
    };
    assert_eq!(
        store.user_by_id(ada.id).await.unwrap(),
        Some(stored.clone()),
        "stored lowercase"
    );
    for login in ["ada@example.com", "ADA@example.com", "ada_l", "Ada_L"] {
        assert_eq!(
            store.user_by_login(login).await.unwrap(),
            Some(stored.clone()),
            "{login}"
        );
    }
    assert_eq!(store.user_by_login("nobody@example.com").await.unwrap(), None);
    assert_eq!(store.user_by_login("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_id(Uuid::new_v4()).await.unwrap(), None);

    let same_email = user("ADA@example.com", Some("other"));
    let err = store.create_user(&same_email).await.unwrap_err();
    assert!(matches!(err, Error::Taken { field: "email" }), "{err}");
    let same_name = user("grace@example.com", Some("ADA_L"));
    let err = store.create_user(&same_name).await.unwrap_err();
    assert!(matches!(err, Error::Taken { field: "username" }), "{err}");
    // The failed registrations left nothing behind: their other values are still free.
    assert_eq!(store.user_by_id(same_email.id).await.unwrap(), None);
    assert_eq!(store.user_by_id(same_name.id).await.unwrap(), None);
    assert_eq!(store.user_by_login("other").await.unwrap(), None);
    assert_eq!(store.user_by_login("grace@example.com").await.unwrap(), None);
    let grace = user("grace@example.com", Some("other"));
    store.create_user(&grace).await.unwrap();

    // Users without a username do not collide with each other.
    store.create_user(&user("x@example.com", None)).await.unwrap();
    store.create_user(&user("y@example.com", None)).await.unwrap();

    // Deleting frees the values and the login.
    assert!(store.delete_user(ada.id).await.unwrap());
    assert!(!store.delete_user(ada.id).await.unwrap());
    assert_eq!(store.user_by_id(ada.id).await.unwrap(), None);
    assert_eq!(store.user_by_login("ada@example.com").await.unwrap(), None);
    assert_eq!(store.user_by_login("ada_l").await.unwrap(), None);
    store
        .create_user(&user("ada@example.com", Some("ada_l")))
        .await
        .unwrap();
}

pub(crate) async fn concurrent_registrations_of_one_email_make_one_user(store: &dyn UserStore, caps: Caps) {
    if !caps.concurrent_uniqueness {
        return;
    }
    let attempts: Vec<User> = (0..16)
        .map(|i| user("race@example.com", Some(&format!("racer{i}"))))
        .collect();
    let results = futures::future::join_all(attempts.iter().map(|u| store.create_user(u))).await;
    let won: Vec<&User> = attempts
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(u, _)| u)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(r, Err(Error::Taken { field: "email" })), "{r:?}");
    }
    let found = store.user_by_login("race@example.com").await.unwrap().unwrap();
    assert_eq!(found.id, won[0].id);
}

pub(crate) async fn tenant_grants_are_per_user(store: &dyn UserStore, _caps: Caps) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(store.tenants_of_user(a).await.unwrap().is_empty());
    store.grant_tenant(a, "globex", 1).await.unwrap();
    store.grant_tenant(a, "acme", 1).await.unwrap();
    store.grant_tenant(a, "acme", 2).await.unwrap(); // idempotent
    store.grant_tenant(b, "initech", 1).await.unwrap();
    assert_eq!(store.tenants_of_user(a).await.unwrap(), vec!["acme", "globex"]);
    assert_eq!(store.tenants_of_user(b).await.unwrap(), vec!["initech"]);
    assert!(store.revoke_tenant(a, "acme").await.unwrap());
    assert!(!store.revoke_tenant(a, "acme").await.unwrap());
    assert!(!store.revoke_tenant(b, "globex").await.unwrap());
    assert_eq!(store.tenants_of_user(a).await.unwrap(), vec!["globex"]);
    assert_eq!(store.tenants_of_user(b).await.unwrap(), vec!["initech"]);
}

pub(crate) async fn deleting_a_user_removes_its_grants(store: &dyn UserStore, _caps: Caps) {
    let u = user("gone@example.com", None);
    store.create_user(&u).await.unwrap();
    store.grant_tenant(u.id, "acme", 1).await.unwrap();
    assert!(store.delete_user(u.id).await.unwrap());
    assert!(store.tenants_of_user(u.id).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_connections_racing_for_one_email_make_one_user() {
    // Two stores on one file stand for two processes (the server and the CLI).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let path = path.to_str().unwrap();
    let first = SqliteStore::open(path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(path).await.unwrap();
    let user = |i: usize| User {
        id: Uuid::new_v4(),
        email: "race@example.com".into(),
        username: None,
        password_hash: "x".into(),
        created_at_ms: i as i64,
        updated_at_ms: i as i64,
    };
    let attempts = (0..20).map(|i| {
        let (a, b) = (first.clone(), second.clone());
        tokio::spawn(async move {
            let store = if i % 2 == 0 { a } else { b };
            store.create_user(&user(i)).await
        })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, Error::Taken { field: "email" })));
}
