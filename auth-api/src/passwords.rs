//! Passwords: the rules a new password must meet (pure) and the bcrypt pool.
//!
//! bcrypt reads at most 72 bytes of key; longer passwords are refused (never silently
//! truncated), and up to exactly 72 bytes every byte counts. (The crate's `non_truncating_*`
//! functions count the C string's NUL terminator as a 73rd byte and so refuse a password of
//! exactly 72 bytes; bcrypt drops that terminator at 72 bytes, as OpenBSD's and libxcrypt's
//! implementations do, without losing any password byte. So the length is checked here, before
//! the standard functions run.) Hashing and verification are
//! CPU-bound (about a quarter second at cost 12), so they run off the async runtime on
//! `bcrypt_max_concurrent` dedicated threads (below the core count, at a lower scheduling
//! priority) fed by a bounded queue: a flood of logins occupies at most those threads and the
//! queue, the excess is answered `503` with `Retry-After` at once, and the request threads win
//! every core they ask for, so other routes keep their latency. Unknown accounts are
//! verified against a dummy hash of the same cost, so their answer takes as long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::{Error, Result};

/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes (UTF-8): what bcrypt reads.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Checks a new password: 8 or more characters, at most 72 bytes, no NUL.
pub fn check_password(password: &str) -> Result<()> {
    let invalid = |message: String| Error::Invalid {
        field: "password",
        message,
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid(format!(
            "must be at most {MAX_PASSWORD_BYTES} bytes (UTF-8); longer passwords are not truncated but refused"
        )));
    }
    if password.contains('\0') {
        return Err(invalid("must not contain NUL characters".into()));
    }
    Ok(())
}

/// Niceness of the bcrypt threads: the scheduler prefers the request threads whenever both
/// want a core, so a login flood slows logins, not the other routes.
pub const BCRYPT_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The bcrypt pool: `max_concurrent` dedicated low-priority threads and a queue of at most
/// `max_queue` jobs.
pub struct Hasher {
    cost: u32,
    jobs: std::sync::mpsc::SyncSender<Job>,
    max_concurrent: usize,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    dummy_hash: String,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("cost", &self.cost)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

/// Lowers the calling thread's priority (Linux: per-thread nice value).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let own = getpriority_process(me).unwrap_or(0);
        if let Err(e) = setpriority_process(me, (own + BCRYPT_NICE).min(19)) {
            tracing::warn!(error = %e, "cannot lower the priority of a bcrypt thread");
        }
    }
}

impl Hasher {
    /// A pool of `max_concurrent` threads and `max_queue` waiting places at `cost`. Computes the
    /// dummy hash (one bcrypt run: call at start-up, off the async runtime).
    pub fn new(cost: u32, max_concurrent: usize, max_queue: usize) -> Result<Hasher> {
        let dummy_hash = bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost)
            .map_err(|e| Error::Internal(format!("bcrypt: {e}")))?;
        let max_concurrent = max_concurrent.max(1);
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(max_queue);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        for i in 0..max_concurrent {
            let (receiver, queued, running) = (receiver.clone(), queued.clone(), running.clone());
            std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return }; // the Hasher is gone
                        queued.fetch_sub(1, Ordering::SeqCst);
                        running.fetch_add(1, Ordering::SeqCst);
                        job();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
                .map_err(|e| Error::Internal(format!("starting a bcrypt thread: {e}")))?;
        }
        Ok(Hasher {
            cost,
            jobs,
            max_concurrent,
            queued,
            running,
            dummy_hash,
            metrics: None,
        })
    }

    /// Reports pool use to these metrics.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Hasher {
        self.metrics = Some(metrics);
        self
    }

    /// The configured cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// A bcrypt hash of `password` (which passed [`check_password`]; a longer one is refused
    /// here too, never truncated).
    pub async fn hash(&self, password: String) -> Result<String> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::Invalid {
                field: "password",
                message: format!("must be at most {MAX_PASSWORD_BYTES} bytes (UTF-8)"),
            });
        }
        let cost = self.cost;
        self.run(move || bcrypt::hash(password, cost))
            .await?
            .map_err(|e| Error::Internal(format!("bcrypt: {e}")))
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) the dummy hash is
    /// verified instead and the answer is false, after the same work.
    /// A password longer than 72 bytes could not have been set: it is verified against the dummy
    /// hash (the same work) and never matches, so it is never compared truncated.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        let known = hash.is_some() && password.len() <= MAX_PASSWORD_BYTES;
        let hash = hash.filter(|_| known).unwrap_or_else(|| self.dummy_hash.clone());
        let result = self.run(move || bcrypt::verify(password, &hash)).await?;
        Ok(match result {
            Ok(matches) => matches && known,
            Err(e) => {
                tracing::error!(error = %e, "stored password hash is unreadable");
                false
            }
        })
    }

    /// Queues `job` for a bcrypt thread; refuses at once when the queue is full. A job whose
    /// caller went away before it started (client disconnected) is skipped.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let metrics = self.metrics.clone();
        let wrapped: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            let started = Instant::now();
            let out = job();
            if let Some(m) = metrics {
                m.bcrypt_seconds.observe(started.elapsed().as_secs_f64());
            }
            let _ = tx.send(out);
        });
        self.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.jobs.try_send(wrapped) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return match e {
                std::sync::mpsc::TrySendError::Full(_) => {
                    if let Some(m) = &self.metrics {
                        m.bcrypt_rejected.inc();
                    }
                    Err(Error::Overloaded { retry_after_secs: 1 })
                }
                std::sync::mpsc::TrySendError::Disconnected(_) => {
                    Err(Error::Internal("bcrypt threads stopped".into()))
                }
            };
        }
        rx.await.map_err(|_| Error::Internal("bcrypt job dropped".into()))
    }

    /// Jobs waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn password_length_rules() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"a".repeat(72)).is_ok());
        for bad in ["", "1234567", &"a".repeat(73), "abc\0defgh"] {
            let e = check_password(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Invalid {
                        field: "password",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        // Characters for the minimum, bytes for the maximum: 8 three-byte characters pass,
        // 25 of them (75 bytes) do not.
        assert!(check_password(&"€".repeat(8)).is_ok());
        assert!(check_password(&"€".repeat(25)).is_err());
        assert!(check_password("€€€€€€€").is_err(), "7 characters");
    }

    proptest! {
        #[test]
        fn a_password_passes_exactly_when_its_lengths_fit(p in "\\PC{0,40}") {
            let ok = p.chars().count() >= 8 && p.len() <= 72 && !p.contains('\0');
            prop_assert_eq!(check_password(&p).is_ok(), ok);
        }
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new(4, 1, 4).unwrap();
        let hash = h.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(h
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!h.verify("wrong horse".into(), Some(hash.clone())).await.unwrap());
        assert!(
            !h.verify("x".repeat(100), Some(hash)).await.unwrap(),
            "too long: no match"
        );
        assert!(
            !h.verify("anything".into(), None).await.unwrap(),
            "unknown account"
        );
        assert!(
            !h.verify("anything".into(), Some("not a hash".into()))
                .await
                .unwrap(),
            "an unreadable hash never matches"
        );
    }

    /// Hashes of libxcrypt (Openwall's crypt_blowfish, another implementation), made with
    /// Python's `crypt.crypt(password, "$2b$04$abcdefghijklmnopqrstuu")`.
    const XCRYPT_Q72: &str = "$2b$04$abcdefghijklmnopqrstuuD54JDjPFIvoXt5EsxVW4u0WrLfemutO";
    const XCRYPT_Q71: &str = "$2b$04$abcdefghijklmnopqrstuu.V5NUetA0N2qrxv81A1rWzGTdF9BBGe";
    const XCRYPT_EURO24: &str = "$2b$04$abcdefghijklmnopqrstuuLMnfsIcwrd9XOzJ8Re069XuK/iLtljS";

    #[tokio::test]
    async fn exactly_72_bytes_are_hashed_whole_and_verified() {
        let h = Hasher::new(4, 1, 4).unwrap();
        for password in ["q".repeat(72), "€".repeat(24)] {
            assert_eq!(password.len(), 72);
            check_password(&password).unwrap();
            let hash = h.hash(password.clone()).await.unwrap();
            assert!(h.verify(password.clone(), Some(hash.clone())).await.unwrap());
            // Every byte counts: the last one changed, or dropped, does not match.
            let mut other = password.clone();
            other.pop();
            assert!(!h.verify(other.clone(), Some(hash.clone())).await.unwrap());
            other.push('x');
            assert!(!h.verify(other, Some(hash.clone())).await.unwrap());
            // One byte more is refused, never truncated to the 72 that match.
            assert!(!h.verify(format!("{password}x"), Some(hash)).await.unwrap());
        }
        let e = h.hash("q".repeat(73)).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: "password",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn hashes_agree_with_libxcrypt_at_72_bytes() {
        let salt = XCRYPT_Q72.parse::<bcrypt::HashParts>().unwrap().get_salt_raw();
        for (password, expected) in [
            ("q".repeat(72), XCRYPT_Q72),
            ("q".repeat(71), XCRYPT_Q71),
            ("€".repeat(24), XCRYPT_EURO24),
        ] {
            let ours = bcrypt::hash_with_salt(&password, 4, salt)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoB);
            assert_eq!(ours, expected, "{} bytes", password.len());
        }
        let h = Hasher::new(4, 1, 4).unwrap();
        let verify = |p: String, hash: &str| h.verify(p, Some(hash.to_string()));
        assert!(verify("q".repeat(72), XCRYPT_Q72).await.unwrap());
        assert!(verify("€".repeat(24), XCRYPT_EURO24).await.unwrap());
        assert!(!verify("q".repeat(71), XCRYPT_Q72).await.unwrap());
        // libxcrypt truncates: its hash of 72 bytes also matches 73. Ours refuses the 73rd.
        assert!(!verify("q".repeat(73), XCRYPT_Q72).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_configured_cost() {
        let h = Hasher::new(5, 1, 4).unwrap();
        assert!(h.dummy_hash.starts_with("$2b$05$"));
    }

    /// Occupies every thread of `h` until the returned sender is dropped.
    async fn block_threads(h: &Arc<Hasher>) -> std::sync::mpsc::Sender<()> {
        let (gate, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        for _ in 0..h.max_concurrent {
            let (h, wait) = (h.clone(), wait.clone());
            tokio::spawn(async move {
                h.run(move || {
                    let _ = wait.lock().unwrap().recv();
                })
                .await
            });
        }
        while h.running() < h.max_concurrent {
            tokio::task::yield_now().await;
        }
        gate
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let h = Arc::new(Hasher::new(4, 1, 2).unwrap());
        let gate = block_threads(&h).await;
        let mut queued = Vec::new();
        for _ in 0..2 {
            let h = h.clone();
            queued.push(tokio::spawn(async move { h.hash("password1".into()).await }));
        }
        while h.queued() < 2 {
            tokio::task::yield_now().await;
        }
        let e = h.hash("password1".into()).await.unwrap_err();
        assert!(matches!(e, Error::Overloaded { retry_after_secs: 1 }), "{e:?}");
        drop(gate);
        for q in queued {
            assert!(q.await.unwrap().is_ok(), "queued jobs run once a thread is free");
        }
        assert_eq!(h.queued(), 0);
        // The thread marks itself idle just after handing over the result.
        while h.running() > 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_is_skipped() {
        let h = Arc::new(Hasher::new(4, 1, 1).unwrap());
        let gate = block_threads(&h).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (h, ran) = (h.clone(), ran.clone());
            tokio::spawn(async move {
                h.run(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .await
            })
        };
        while h.queued() < 1 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        drop(gate);
        while h.queued() > 0 {
            tokio::task::yield_now().await;
        }
        // The thread takes jobs in order: once this one is done, the abandoned one was handled.
        assert!(h.hash("password1".into()).await.is_ok());
        assert_eq!(ran.load(Ordering::SeqCst), 0, "the abandoned job did not run");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bcrypt_threads_run_at_a_lower_priority() {
        let h = Hasher::new(4, 1, 1).unwrap();
        let nice = h
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap())
            .await
            .unwrap();
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(nice, (own + BCRYPT_NICE).min(19));
    }
}
