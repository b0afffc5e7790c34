//! What every service shares for operations, so that each one serves the same endpoints and
//! stops the same way:
//! - [`init_tracing`]: logs on stderr, filtered by `RUST_LOG` (default given), as text or, with
//!   `AGENTOPS_LOG_FORMAT=json`, as one JSON object per line;
//! - [`endpoints`] / [`routes`] / [`serve`]: `GET /metrics` (Prometheus text format of a
//!   registry), `GET /healthz` (the process runs: `{"status": "ok"}`) and `GET /readyz` (every
//!   [`Readiness`] probe passed: `200`, else `503`; the body names each probe with its result);
//! - [`Readiness`]: the named, async readiness probes of a service ("broker", "store", or a
//!   flag the service sets once it is ready), each awaited with a timeout;
//! - [`bind`] / [`serve_on`]: the listener of a settings key (its error names the key), and the
//!   routes served there on a runtime;
//! - [`metrics::Registrar`]: a service's metrics, each created and registered in one call;
//!   [`metrics::ConsumerMetrics`]: a consuming service's lag and readiness flag, served with
//!   its registry;
//! - [`shutdown_signal`] / [`stop_flag`]: SIGTERM or Ctrl-C, as a future or as a flag;
//!   [`run_on_thread`]: a service's loop on a named thread of its own, waited for, with
//!   [`runtime`] (2 worker threads) beside it.
//!
//! Layout: `logging.rs` (tracing set-up), `readiness.rs` (probes), `endpoints.rs` (the routes,
//! the listener), `metrics.rs` (declaring metrics), `shutdown.rs` (signals, the runtime and
//! thread of a service's loop).
//!
//! ```no_run
//! # async fn example(listener: tokio::net::TcpListener) {
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//!
//! ops::init_tracing("info");
//! let registry = prometheus::Registry::new();
//! let assigned = Arc::new(AtomicBool::new(false));
//! let readiness = ops::Readiness::new()
//!     .flag("ready", assigned.clone())
//!     .probe("store", || async { true });
//! tokio::spawn(ops::serve(registry, readiness, listener));
//! ops::shutdown_signal().await;
//! # }
//! ```
#![deny(missing_docs)]

mod endpoints;
mod logging;
pub mod metrics;
mod readiness;
mod shutdown;

pub use endpoints::{bind, endpoints, metrics_text, routes, serve, serve_on, BindError};
pub use logging::init_tracing;
pub use readiness::{Readiness, Report, DEFAULT_PROBE_TIMEOUT};
pub use shutdown::{run_on_thread, runtime, shutdown_signal, stop_flag};
