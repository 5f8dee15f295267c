//! Flows served on [Restate](https://restate.dev), the durable-execution
//! engine (feature `restate`): a runtime [`Flow`](crate::Flow) becomes a Restate workflow
//! named after the flow, whose runs are keyed by their run id. Each node's
//! `exec` (with its retries and fallback) is one journaled step
//! ([`Flow::run_journaled`](crate::Flow::run_journaled)): a worker that dies mid-run is replaced, Restate
//! replays the run on another (or the same, restarted) worker, finished steps
//! are read back from the journal, and only the step in flight runs again.
//!
//! Handlers of the workflow `<flow>`:
//!
//! - `run`: the store as JSON in, the store after the run out; the run's id is
//!   the workflow key (`POST /<flow>/<run id>/run`);
//! - `status`: `{"status": "running"}`, `"paused"` (with the `question` a
//!   node's `interrupt` asked), `"finished"` or `"failed: <error>"`;
//! - `answer`: the answer to the question the run waits on (any JSON): a
//!   paused run holds no worker and survives any of them; the answer resumes
//!   it wherever Restate runs it, and `interrupt` returns the answer there;
//! - `events`: the run's events (`{"from": n}`: from number `n`), kept in its
//!   state as the run goes on (see `handlers.rs`).
//!
//! A runtime [`Flow`](crate::Flow) and a flow made by `flow!` (sync or `async struct`) are
//! served alike ([`Servable`], `served.rs`).
//!
//! Batch nodes whose items run at the same time (`BatchMode::Parallel`,
//! `AsyncBatchMode::Concurrent`) send their items out as invocations of the
//! service `<flow>-items` (handler `item`), one per item, all at once: Restate
//! spreads them over every worker behind the deployment's address, journals
//! and retries each on its own, and the run gets the results back in the
//! items' order. A worker runs as many items of a node at once as the node's
//! threads (or concurrency limit) say; the others wait their turn there. The
//! items (and outputs) travel as JSON: their types must be plain data (see
//! [`durable::register`](crate::durable::register)). Sequential batch nodes
//! keep their items on the run's worker, one after the other.
//!
//! `prep` and `post` run again on every replay: they must be deterministic
//! (read and write the store, nothing else); anything that talks to the world
//! belongs in `exec`.

mod discovery;
mod handlers;
mod journal;
mod served;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use restate_sdk::endpoint::Endpoint;
use restate_sdk::hyper::HyperEndpoint;
/// A service to bind to a Restate endpoint (restate-sdk's), as
/// [`RestateFlow::definitions`] makes them.
pub use restate_sdk::service::ServiceDefinition;
use restate_sdk::service::macro_support::service_definition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use discovery::{items_discovery, workflow_discovery};
use handlers::{Items, Serve};
use served::Served;
pub use served::{Servable, ServedFlow};

/// A flow served as a Restate workflow (see the module docs).
pub struct RestateFlow<S: 'static> {
    flow: Arc<dyn Served<S>>,
    tuning: Tuning,
}

/// What [`RestateFlow`]'s settings tell Restate when it is registered; unset
/// ones keep the server's defaults.
#[derive(Debug, Clone, Copy, Default)]
struct Tuning {
    retention: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
    inactivity: Option<Duration>,
}

/// Milliseconds, as Restate's manifest counts them.
fn millis(d: Duration) -> Option<u64> {
    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A store a run on Restate takes in and gives back as JSON: any type with
/// serde's `Serialize` and `Deserialize` (a struct of your own, or a map).
#[diagnostic::on_unimplemented(
    message = "the store `{Self}` cannot be served on Restate",
    label = "a run on Restate takes its store in and gives it back as JSON",
    note = "serve a store type of your own that derives serde's `Serialize` and `Deserialize` (`#[derive(serde::Serialize, serde::Deserialize)]`): a `SharedStore` cannot be one, as the types of its values are not in its JSON"
)]
pub trait RestateStore: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> RestateStore for T {}

impl<S: 'static> RestateFlow<S> {
    /// The workflow of `flow`, named after it: a runtime [`Flow`](crate::Flow) or a flow
    /// made by `flow!` (sync or `async struct`; a sync one needs the
    /// multi-thread tokio runtime that `#[tokio::main]` starts).
    pub fn new<M>(flow: impl Servable<S, M>) -> Self
    where
        S: RestateStore,
    {
        RestateFlow { flow: flow.into_served().0, tuning: Tuning::default() }
    }

    /// The workflow's name: the flow's.
    pub fn name(&self) -> &str {
        self.flow.name()
    }

    /// How long Restate keeps a run's state, journal and result after it
    /// ends (24 hours unless set): the `status`, `events` and `attach` of a
    /// finished run answer until then, and its id cannot start a new run.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.tuning.retention = Some(retention);
        self
    }

    /// How soon Restate tries a run (or an item) again after its worker went
    /// away: first after `first`, then twice as long each time up to `most`.
    /// The server's defaults wait up to a minute between tries, which a run
    /// whose worker is back pays in full.
    pub fn retry_backoff(mut self, first: Duration, most: Duration) -> Self {
        self.tuning.backoff = Some((first, most));
        self
    }

    /// How long an invocation may go without journaling anything before
    /// Restate suspends or retries it (a minute unless set): raise it above
    /// the longest `exec` that makes no other step, and above the time a
    /// batch item may wait for its turn on a busy worker.
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.inactivity = Some(timeout);
        self
    }

    /// The services to bind to a Restate endpoint: the workflow, and the
    /// service `<flow>-items` when batch nodes send their items out. An error
    /// when the flow's name is not a valid service name (letters, digits,
    /// `_`, `-`, `.`).
    pub fn definitions(self) -> Result<Vec<ServiceDefinition>, String>
    where
        S: RestateStore,
    {
        let name = self.flow.name().to_owned();
        let workflow = workflow_discovery(&name, self.tuning)?;
        let mut services = vec![service_definition(Serve { flow: Arc::clone(&self.flow) }, workflow)];
        let fanned = self.flow.fanned_out_nodes();
        if !fanned.is_empty() {
            let limits = fanned.into_iter().map(|(node, n)| (node, Arc::new(Semaphore::new(n)))).collect();
            let items = Items { flow: self.flow, limits: Arc::new(limits) };
            services.push(service_definition(items, items_discovery(&items_service(&name), self.tuning)?));
        }
        Ok(services)
    }
}

/// Serves `services` (those of one or more [`RestateFlow`]s) on `addr`
/// (HTTP/2, as Restate calls its deployments) until the future is dropped;
/// an error when `addr` cannot be listened on.
///
/// Each connection takes at most [`STREAMS_PER_CONNECTION`] invocations at
/// once, so that Restate spreads many (a batch's items) over many
/// connections: a load balancer in front of several workers, which balances
/// connections, then spreads them over every worker.
pub async fn serve(addr: SocketAddr, services: impl IntoIterator<Item = ServiceDefinition>) -> std::io::Result<()> {
    let mut endpoint = Endpoint::builder();
    for service in services {
        endpoint = endpoint.bind(service);
    }
    let endpoint = HyperEndpoint::new(endpoint.build());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait for connections to close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let connection = http2::Builder::new(TokioExecutor::new())
            .max_concurrent_streams(STREAMS_PER_CONNECTION)
            .serve_connection(TokioIo::new(stream), endpoint.clone());
        tokio::spawn(async move {
            // A connection that breaks (Restate went away) ends on its own.
            let _ = connection.await;
        });
    }
}

/// How many invocations one connection to a worker carries at once.
pub const STREAMS_PER_CONNECTION: u32 = 32;

/// The name of the service that runs the items of flow `flow`'s batch nodes.
fn items_service(flow: &str) -> String {
    format!("{flow}-items")
}
