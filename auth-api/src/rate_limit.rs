//! Failed-login limiting: pure, in memory, bounded.
//!
//! Each key (an account, a client address) has a budget of `burst` failures that refills
//! continuously over `window` (GCRA, the "virtual scheduling" form of a token bucket: one
//! timestamp per key). A key that spent its budget is refused until one failure has refilled
//! (`window / burst`), which is the `Retry-After` sent. Time is passed in (milliseconds), so
//! the limiter is tested without clocks.
//!
//! Memory: at most `capacity` keys. When a new key finds the table full, keys whose budget
//! has fully refilled are dropped (they carry no information); if none has, the key closest
//! to refilled is dropped. An attacker who floods the table with junk keys therefore at worst
//! shortens the memory of the least-limited key, and every failure it takes to do that costs
//! a bcrypt verification.

use std::collections::HashMap;
use std::time::Duration;

/// A refused attempt: how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Milliseconds until one more attempt is allowed.
    pub retry_after_ms: u64,
}

impl Limited {
    /// Whole seconds for `Retry-After` (rounded up, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// The failure budget of many keys.
#[derive(Debug)]
pub struct FailureLimiter {
    /// Time one failure takes to refill.
    interval_ms: u64,
    /// `(burst - 1) * interval_ms`: how far ahead of now the schedule may run.
    tolerance_ms: u64,
    capacity: usize,
    /// Theoretical arrival time of each key's next failure (epoch ms).
    tat: HashMap<String, u64>,
}

impl FailureLimiter {
    /// `burst` failures per `window`, for at most `capacity` keys.
    pub fn new(burst: u32, window: Duration, capacity: usize) -> FailureLimiter {
        let burst = u64::from(burst.max(1));
        let interval_ms = (window.as_millis() as u64 / burst).max(1);
        FailureLimiter {
            interval_ms,
            tolerance_ms: (burst - 1) * interval_ms,
            capacity: capacity.max(1),
            tat: HashMap::new(),
        }
    }

    /// Whether `key` may try now.
    pub fn check(&self, key: &str, now_ms: u64) -> Result<(), Limited> {
        match self.tat.get(key) {
            Some(&tat) if tat > now_ms + self.tolerance_ms => Err(Limited {
                retry_after_ms: tat - self.tolerance_ms - now_ms,
            }),
            _ => Ok(()),
        }
    }

    /// Spends one failure of `key`'s budget.
    pub fn record_failure(&mut self, key: &str, now_ms: u64) {
        if !self.tat.contains_key(key) && self.tat.len() >= self.capacity {
            self.make_room(now_ms);
        }
        let tat = self.tat.entry(key.to_string()).or_insert(now_ms);
        *tat = (*tat).max(now_ms) + self.interval_ms;
    }

    /// Forgets `key` (a successful login of that account).
    pub fn reset(&mut self, key: &str) {
        self.tat.remove(key);
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.tat.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.tat.is_empty()
    }

    fn make_room(&mut self, now_ms: u64) {
        self.tat.retain(|_, tat| *tat > now_ms);
        if self.tat.len() >= self.capacity {
            if let Some(key) = self
                .tat
                .iter()
                .min_by_key(|(_, tat)| **tat)
                .map(|(k, _)| k.clone())
            {
                self.tat.remove(&key);
            }
        }
    }
}

/// The two limits of a login: per account and per client address.
#[derive(Debug)]
pub struct LoginLimiter {
    accounts: FailureLimiter,
    clients: FailureLimiter,
}

/// Keys tracked per limiter at most.
pub const DEFAULT_CAPACITY: usize = 65_536;

impl LoginLimiter {
    /// Limits from the configuration.
    pub fn new(per_account: u32, per_client: u32, window: Duration, capacity: usize) -> LoginLimiter {
        LoginLimiter {
            accounts: FailureLimiter::new(per_account, window, capacity),
            clients: FailureLimiter::new(per_client, window, capacity),
        }
    }

    /// Whether this account may try from this client now (the longer wait wins).
    pub fn check(&self, account: &str, client: &str, now_ms: u64) -> Result<(), Limited> {
        let a = self.accounts.check(account, now_ms);
        let c = self.clients.check(client, now_ms);
        match (a, c) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(l), Ok(())) | (Ok(()), Err(l)) => Err(l),
            (Err(a), Err(c)) => Err(if a.retry_after_ms >= c.retry_after_ms {
                a
            } else {
                c
            }),
        }
    }

    /// Records a failed attempt against both.
    pub fn record_failure(&mut self, account: &str, client: &str, now_ms: u64) {
        self.accounts.record_failure(account, now_ms);
        self.clients.record_failure(client, now_ms);
    }

    /// A successful login clears the account's failures (not the client's: one valid account
    /// must not reset an address's budget for guessing others).
    pub fn record_success(&mut self, account: &str) {
        self.accounts.reset(account);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn a_burst_is_allowed_then_one_per_interval() {
        // 5 failures per 15 minutes: one refills every 3 minutes.
        let mut l = FailureLimiter::new(5, Duration::from_secs(900), 100);
        for _ in 0..5 {
            assert!(l.check("ada", 0).is_ok());
            l.record_failure("ada", 0);
        }
        assert_eq!(
            l.check("ada", 0),
            Err(Limited {
                retry_after_ms: 3 * MIN
            })
        );
        assert_eq!(
            l.check("ada", MIN),
            Err(Limited {
                retry_after_ms: 2 * MIN
            })
        );
        assert!(l.check("ada", 3 * MIN).is_ok());
        l.record_failure("ada", 3 * MIN);
        assert_eq!(
            l.check("ada", 3 * MIN),
            Err(Limited {
                retry_after_ms: 3 * MIN
            })
        );
        assert!(l.check("grace", 0).is_ok(), "keys are independent");
        assert!(l.check("ada", 18 * MIN).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Limited { retry_after_ms: 1 }.retry_after_secs(), 1);
        assert_eq!(Limited { retry_after_ms: 1000 }.retry_after_secs(), 1);
        assert_eq!(Limited { retry_after_ms: 1001 }.retry_after_secs(), 2);
    }

    #[test]
    fn success_clears_the_account_but_not_the_client() {
        let mut l = LoginLimiter::new(2, 20, Duration::from_secs(60), 100);
        l.record_failure("ada", "10.0.0.1", 0);
        l.record_failure("ada", "10.0.0.1", 0);
        assert!(
            l.check("ada", "10.0.0.2", 0).is_err(),
            "the account is limited from anywhere"
        );
        l.record_success("ada");
        assert!(l.check("ada", "10.0.0.2", 0).is_ok());
        let mut l = LoginLimiter::new(100, 2, Duration::from_secs(60), 100);
        l.record_failure("a", "10.0.0.1", 0);
        l.record_failure("b", "10.0.0.1", 0);
        l.record_success("b");
        assert!(l.check("c", "10.0.0.1", 0).is_err(), "the client stays limited");
    }

    #[test]
    fn a_full_table_drops_recovered_keys_first() {
        let mut l = FailureLimiter::new(1, Duration::from_secs(60), 2);
        l.record_failure("old", 0);
        l.record_failure("hot", 50 * 1000);
        l.record_failure("new", 61 * 1000); // "old" has refilled by now
        assert_eq!(l.len(), 2);
        assert!(l.check("hot", 61 * 1000).is_err(), "the limited key is kept");
        assert!(l.check("new", 61 * 1000).is_err());
    }

    proptest! {
        /// Whatever the attempt times, `k` failures accepted for one key between times `a` and
        /// `b` are at most the burst plus one per refill interval: `k <= burst + (b - a) / T`.
        #[test]
        fn a_burst_then_one_per_interval_at_most(
            burst in 1u32..8,
            gaps in proptest::collection::vec(0u64..20_000, 1..300),
        ) {
            let window_ms = 60_000u64;
            let interval = window_ms / u64::from(burst);
            let mut l = FailureLimiter::new(burst, Duration::from_millis(window_ms), 16);
            let mut now = 0u64;
            let mut accepted: Vec<u64> = Vec::new();
            for gap in gaps {
                now += gap;
                if l.check("target", now).is_ok() {
                    l.record_failure("target", now);
                    accepted.push(now);
                }
            }
            for i in 0..accepted.len() {
                for j in i..accepted.len() {
                    let k = (j - i + 1) as u64;
                    let bound = u64::from(burst) + (accepted[j] - accepted[i]) / interval;
                    prop_assert!(k <= bound, "{} accepted in {} ms, bound {}", k, accepted[j] - accepted[i], bound);
                }
            }
        }

        /// However many keys arrive, the table never holds more than its capacity.
        #[test]
        fn memory_is_bounded(
            capacity in 1usize..16,
            keys in proptest::collection::vec(0u16..1000, 1..500),
        ) {
            let mut l = FailureLimiter::new(3, Duration::from_secs(60), capacity);
            for (i, k) in keys.iter().enumerate() {
                l.record_failure(&k.to_string(), i as u64 * 10);
                prop_assert!(l.len() <= capacity);
            }
        }

        /// After `f` failures at once, the key may try again exactly when one failure has
        /// refilled: at `(f - burst + 1) * T` (at once while `f < burst`).
        #[test]
        fn allowed_again_exactly_when_one_failure_refilled(burst in 1u32..10, failures in 1u64..30) {
            let mut l = FailureLimiter::new(burst, Duration::from_secs(60), 16);
            for _ in 0..failures {
                l.record_failure("k", 0);
            }
            let interval = 60_000 / u64::from(burst);
            let again = (failures + 1).saturating_sub(u64::from(burst)) * interval;
            prop_assert!(l.check("k", again).is_ok());
            if again > 0 {
                prop_assert_eq!(l.check("k", again - 1), Err(Limited { retry_after_ms: 1 }));
            }
        }
    }
}
