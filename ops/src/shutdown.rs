//! Stopping on SIGTERM or Ctrl-C, the same way in every binary; the runtime and the thread of
//! a service whose loop runs on a thread of its own.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

/// A future that resolves on the first SIGTERM or Ctrl-C (SIGINT) and logs which one arrived;
/// for servers that take a shutdown future (warp's `graceful`, `auth_api::run`: requests in
/// flight are finished).
///
/// The handlers are installed when this is called (inside a Tokio runtime), not when the
/// future is first polled: a signal that arrives in between is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutdown requested");
    }
}

/// A flag that turns true once [`shutdown_signal`] resolves, for services whose loop runs on a
/// thread of its own and polls it; the watching task runs on `runtime`.
pub fn stop_flag(runtime: &tokio::runtime::Handle) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = {
        let _entered = runtime.enter();
        shutdown_signal()
    };
    let flag = stop.clone();
    runtime.spawn(async move {
        signalled.await;
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// The Tokio runtime beside a service's own loop ([`run_on_thread`]): multi-threaded, with 2
/// worker threads and every driver (I/O, time) enabled; it runs the clients' futures, the
/// operations endpoints and the [`stop_flag`] watcher.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Runs `work` on a thread named `name` and waits for it: the consuming loop of a service,
/// which polls its [`stop_flag`]. A panic on that thread comes back as the error
/// `"{name} thread panicked"`.
pub fn run_on_thread<T, E>(name: &str, work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<std::io::Error> + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)?
        .join()
        .map_err(|_| std::io::Error::other(format!("{name} thread panicked")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_on_thread_names_the_thread_and_reports_its_panic() {
        let name = run_on_thread("worker", || {
            Ok::<_, std::io::Error>(std::thread::current().name().map(str::to_string))
        });
        assert_eq!(name.unwrap().as_deref(), Some("worker"));
        let panicked = run_on_thread("worker", || -> std::io::Result<()> { panic!("boom") });
        assert_eq!(panicked.unwrap_err().to_string(), "worker thread panicked");
    }

    #[tokio::test]
    async fn sigterm_sets_the_stop_flag() {
        let stop = stop_flag(&tokio::runtime::Handle::current());
        tokio::task::yield_now().await;
        assert!(!stop.load(Ordering::Relaxed), "set before any signal");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        while !stop.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
    }
}
