//! Nodes: the contract (`prep -> exec -> post`, sync and async), the policy of
//! `exec` ([`Retry`], [`ExecContext`]), the rules hooks are called by, and the
//! one runner of each kind of node that every engine uses.

mod bridge;
mod hooks;
mod retry;
mod run;
mod step;
mod steps;

#[cfg(feature = "restate")]
pub(crate) use bridge::block_on_parked;
pub(crate) use bridge::{Bridge, drive_here};
pub(crate) use hooks::{call_stage, caught, guarded, offload};
#[doc(hidden)]
pub use retry::wait_between_attempts;
pub use retry::{ExecContext, Retry};
pub(crate) use retry::{exec_with_retry, retry_after_async};
pub(crate) use run::{
    run_async_node, run_async_visit, run_node, run_node_visit, run_offloaded_node, run_offloaded_visit,
};
pub use step::{Step, step};
pub(crate) use steps::{
    attempts_async, cannot_block, exec_blocking, journal_error, not_multi_thread, outcome, run_async_step,
    run_node_steps_sync, run_offloaded_step,
};

use std::future::Future;

use crate::action::Action;
use crate::error::{BoxError, Error, NodeResult};
use crate::params::Params;
use crate::store::SharedStore;

/// One step of work: `prep` reads the store, `exec` does the work (an LLM call, a
/// computation) without seeing the store, `post` writes the store and picks the
/// next edge.
///
/// Only `exec` is retried (see [`retry`](Node::retry)); after its last failed
/// attempt, [`exec_fallback`](Node::exec_fallback) decides: its default returns the
/// error. Because `exec` never sees the store, it is safe to run in parallel.
///
/// `S` is the store: [`SharedStore`] by default, or any struct of yours.
///
/// ```
/// use minllm::{ExecContext, Node, NodeResult, Params, SharedStore};
///
/// struct Shout;
///
/// impl Node for Shout {
///     type Prep = String;
///     type Exec = String;
///     type Action = ();
///
///     fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
///         Ok(store.try_get("text")?)
///     }
///     fn exec(&self, text: &String, _: &ExecContext) -> NodeResult<String> {
///         Ok(text.to_uppercase())
///     }
///     fn post(&self, store: &mut SharedStore, _: String, loud: String) -> NodeResult<()> {
///         store.set("loud", loud);
///         Ok(())
///     }
/// }
///
/// let mut store = SharedStore::new();
/// store.set("text", "hi".to_string());
/// Shout.run(&mut store).unwrap();
/// assert_eq!(store.get::<String>("loud").as_deref(), Some("HI"));
/// ```
pub trait Node<S = SharedStore>: Send + Sync + 'static {
    /// What `prep` hands to `exec`.
    type Prep: Send + 'static;
    /// What `exec` hands to `post`.
    type Exec: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads what the node needs from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> NodeResult<Self::Prep>;

    /// Does the work. Retried according to [`retry`](Node::retry).
    fn exec(&self, prep: &Self::Prep, ctx: &ExecContext<'_>) -> NodeResult<Self::Exec>;

    /// Runs after the last failed attempt of `exec`, with its error. Return a value
    /// to carry on (a default answer), or an error to fail the node.
    fn exec_fallback(&self, prep: &Self::Prep, error: BoxError, ctx: &ExecContext<'_>) -> NodeResult<Self::Exec> {
        let _ = (prep, ctx);
        Err(error)
    }

    /// Writes results to the store and returns the action.
    fn post(&self, store: &mut S, prep: Self::Prep, exec: Self::Exec) -> NodeResult<Self::Action>;

    /// The retry policy of `exec`: one attempt unless overridden.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// Whether `exec` may block its thread for long (a blocking network call,
    /// a long computation): `true` unless overridden. In an async run such an
    /// `exec` goes to tokio's blocking pool, so that it never stalls the
    /// runtime's other tasks; that hand-off costs microseconds per call.
    /// Return `false` for an `exec` that is quick: it then runs in place on
    /// the run's task, at about the cost of an async node (`#[node(blocking =
    /// false)]` in `flow!` code). Sync runs ignore it.
    fn exec_blocks(&self) -> bool {
        true
    }

    /// Runs this node alone on `store` (as PocketFlow's `node.run(shared)`), with
    /// retries, fallback and panic capture, and returns its action.
    fn run(&self, store: &mut S) -> Result<Self::Action, Error>
    where
        Self: Sized,
    {
        run::run_node_alone(self, store)
    }
}

/// The async form of [`Node`]: every hook is an `async fn`. Write them as
/// `async fn` in your `impl`.
///
/// Async nodes run in flows started with [`Flow::run_async`](crate::Flow::run_async),
/// on tokio.
///
/// ```
/// use minllm::{AsyncNode, ExecContext, NodeResult, Params, SharedStore};
///
/// struct Fetch;
///
/// impl AsyncNode for Fetch {
///     type Prep = String;
///     type Exec = usize;
///     type Action = ();
///
///     async fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
///         Ok(store.try_get("url")?)
///     }
///     async fn exec(&self, url: &String, _: &ExecContext<'_>) -> NodeResult<usize> {
///         tokio::task::yield_now().await;
///         Ok(url.len())
///     }
///     async fn post(&self, store: &mut SharedStore, _: String, n: usize) -> NodeResult<()> {
///         store.set("len", n);
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut store = SharedStore::new();
/// store.set("url", "https://example.com".to_string());
/// Fetch.run_async(&mut store).await.unwrap();
/// assert_eq!(store.get::<usize>("len"), Some(19));
/// # });
/// ```
pub trait AsyncNode<S = SharedStore>: Send + Sync + 'static
where
    S: Send + Sync,
{
    /// What `prep` hands to `exec`.
    type Prep: Send + Sync + 'static;
    /// What `exec` hands to `post`.
    type Exec: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads what the node needs from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> impl Future<Output = NodeResult<Self::Prep>> + Send;

    /// Does the work. Retried according to [`retry`](AsyncNode::retry).
    fn exec(&self, prep: &Self::Prep, ctx: &ExecContext<'_>) -> impl Future<Output = NodeResult<Self::Exec>> + Send;

    /// Runs after the last failed attempt of `exec`; the default returns the error.
    fn exec_fallback(
        &self,
        prep: &Self::Prep,
        error: BoxError,
        ctx: &ExecContext<'_>,
    ) -> impl Future<Output = NodeResult<Self::Exec>> + Send {
        let _ = (prep, ctx);
        async move { Err(error) }
    }

    /// Writes results to the store and returns the action.
    fn post(
        &self,
        store: &mut S,
        prep: Self::Prep,
        exec: Self::Exec,
    ) -> impl Future<Output = NodeResult<Self::Action>> + Send;

    /// The retry policy of `exec`: one attempt unless overridden. Waits use tokio's timer.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// Runs this node alone on `store` and returns its action.
    fn run_async(&self, store: &mut S) -> impl Future<Output = Result<Self::Action, Error>> + Send
    where
        Self: Sized,
        S: 'static,
    {
        run::run_async_node_alone(self, store)
    }
}
