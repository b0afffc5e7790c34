//! The start of a consuming service whose loop runs on a thread of its own (aggregator,
//! alerter): what it runs with ([`Deps`]) and the steps before and around its loop ([`run`]).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ops::metrics::ConsumerMetrics;
use tokio::runtime::Handle;

/// What a consuming service's loop needs, built by [`run`] (or a test).
pub struct Deps<M> {
    /// Settings of the whole pipeline.
    pub settings: settings::Settings,
    /// The store, migrated (the service's rows, its checkpoints).
    pub store: Arc<dyn store::Store>,
    /// Runtime handle for the async clients.
    pub runtime: Handle,
    /// The service's metrics (shared with the operations endpoints).
    pub metrics: M,
}

/// Why [`run`] returned early; each variant shows as the error it holds (same message, same
/// sources).
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The store or the topics could not be opened.
    #[error(transparent)]
    Start(#[from] crate::StartError),
    /// The operations endpoints' address could not be bound.
    #[error(transparent)]
    Bind(#[from] ops::BindError),
    /// The service's thread could not be started, or it panicked.
    #[error(transparent)]
    Thread(#[from] std::io::Error),
    /// The service's loop failed.
    #[error(transparent)]
    Run(E),
}

/// Runs the consuming service `name` until its loop returns: opens the migrated store and the
/// pipeline's topics ([`crate::open_store_and_topics`]), installs the [`ops::stop_flag`], makes
/// fresh metrics `M` and serves their operations endpoints ([`ConsumerMetrics::serve_on`]) on
/// `listen` (the setting `<name>.metrics_listen`), then runs `work` on the thread `name`
/// ([`ops::run_on_thread`]) and waits for it.
pub fn run<M, E>(
    runtime: &Handle,
    name: &str,
    listen: SocketAddr,
    settings: settings::Settings,
    work: impl FnOnce(Deps<M>, Arc<AtomicBool>) -> Result<(), E> + Send + 'static,
) -> Result<(), Error<E>>
where
    M: Default + AsRef<ConsumerMetrics> + Send + 'static,
    E: Send + 'static,
{
    let store = runtime.block_on(crate::open_store_and_topics(&settings))?;
    let stop = ops::stop_flag(runtime);
    let metrics = M::default();
    metrics
        .as_ref()
        .serve_on(runtime, listen, &format!("{name}.metrics_listen"))?;
    let deps = Deps {
        settings,
        store,
        runtime: runtime.clone(),
        metrics,
    };
    ops::run_on_thread(name, move || work(deps, stop).map_err(Error::Run))
}
