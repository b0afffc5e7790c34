//! Short-lived caches of users (for the bearer middleware) and of their tenant grants (for the
//! dashboard routes), pure: time is passed in.
//!
//! Every authenticated request needs the token's user (deleted users must be refused), and
//! every dashboard request the user's grants. With `auth_api.user_cache_ttl_ms > 0` what was
//! read from the store is reused for that long, so a dashboard's burst of requests costs one
//! store read of each. Deletions, grants and revocations through this process evict at once; a
//! user deleted or a tenant revoked by another process (the CLI) is refused at most one TTL
//! later. `0` reads the store on every request. At most `capacity` entries are kept.

use std::collections::HashMap;

use store::{User, Uuid};

/// A cache of values per user id.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl_ms: u64,
    capacity: usize,
    entries: HashMap<Uuid, (V, u64)>,
}

/// The users of the bearer middleware.
pub type UserCache = TtlCache<User>;

/// The tenants granted to each user.
pub type GrantCache = TtlCache<std::sync::Arc<[String]>>;

impl<V: Clone> TtlCache<V> {
    /// Entries live `ttl_ms`; at most `capacity` of them.
    pub fn new(ttl_ms: u64, capacity: usize) -> TtlCache<V> {
        TtlCache {
            ttl_ms,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        self.ttl_ms > 0
    }

    /// The value of user `id`, if read less than a TTL before `now_ms`.
    pub fn get(&self, id: Uuid, now_ms: u64) -> Option<V> {
        self.entries
            .get(&id)
            .filter(|(_, at)| now_ms < at.saturating_add(self.ttl_ms))
            .map(|(value, _)| value.clone())
    }

    /// Remembers the value of user `id` read from the store at `now_ms`.
    pub fn put(&mut self, id: Uuid, value: V, now_ms: u64) {
        if !self.enabled() {
            return;
        }
        if !self.entries.contains_key(&id) && self.entries.len() >= self.capacity {
            let ttl = self.ttl_ms;
            self.entries.retain(|_, (_, at)| now_ms < at.saturating_add(ttl));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(id, (value, now_ms));
    }

    /// Forgets a user's value (deleted or changed).
    pub fn remove(&mut self, id: Uuid) {
        self.entries.remove(&id);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn user(n: u128) -> User {
        User {
            id: Uuid::from_u128(n),
            email: format!("u{n}@example.com"),
            username: None,
            password_hash: "h".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn entries_expire_after_exactly_the_ttl() {
        let mut c = UserCache::new(1000, 10);
        c.put(Uuid::from_u128(1), user(1), 5_000);
        assert_eq!(c.get(Uuid::from_u128(1), 5_999), Some(user(1)));
        assert_eq!(c.get(Uuid::from_u128(1), 6_000), None);
        assert_eq!(c.get(Uuid::from_u128(2), 5_000), None);
    }

    #[test]
    fn removed_users_are_gone_at_once() {
        let mut c = UserCache::new(60_000, 10);
        c.put(Uuid::from_u128(1), user(1), 0);
        c.remove(Uuid::from_u128(1));
        assert_eq!(c.get(Uuid::from_u128(1), 1), None);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let mut c = UserCache::new(0, 10);
        c.put(Uuid::from_u128(1), user(1), 0);
        assert!(c.is_empty());
        assert_eq!(c.get(Uuid::from_u128(1), 0), None);
    }

    proptest! {
        #[test]
        fn never_more_than_capacity(capacity in 1usize..20, ids in proptest::collection::vec(0u128..100, 1..300)) {
            let mut c = UserCache::new(1000, capacity);
            for (t, id) in ids.iter().enumerate() {
                c.put(Uuid::from_u128(*id), user(*id), t as u64 * 7);
                prop_assert!(c.len() <= capacity);
                prop_assert_eq!(c.get(Uuid::from_u128(*id), t as u64 * 7), Some(user(*id)));
            }
        }
    }
}
