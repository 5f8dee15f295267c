//! The node contract: `prep -> exec -> post`, sync and async.

use std::future::Future;
use std::time::Duration;

use crate::action::Action;
use crate::error::{BoxError, Error, NodeResult};
use crate::params::Params;
use crate::store::SharedStore;

/// How often a node's `exec` is attempted and how long to wait between attempts.
///
/// ```
/// use std::time::Duration;
/// use minllm::Retry;
///
/// let retry = Retry::attempts(3).wait(Duration::from_millis(500));
/// assert_eq!(retry.attempts, 3);
/// assert_eq!(Retry::default(), Retry::attempts(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How many times `exec` runs at most, the first run included (what
    /// PocketFlow calls `max_retries`). `0` counts as `1`.
    pub attempts: u32,
    /// How long to wait after a failed attempt before the next one.
    pub wait: Duration,
}

impl Retry {
    /// One attempt, no wait: the default.
    pub const ONCE: Retry = Retry { attempts: 1, wait: Duration::ZERO };

    /// `n` attempts at most, no wait between them.
    #[inline]
    pub const fn attempts(n: u32) -> Retry {
        Retry { attempts: n, wait: Duration::ZERO }
    }

    /// The same attempts, waiting `wait` after each failure.
    #[inline]
    pub const fn wait(self, wait: Duration) -> Retry {
        Retry { wait, ..self }
    }

    #[inline]
    pub(crate) fn max_attempts(&self) -> u32 {
        self.attempts.max(1)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::ONCE
    }
}

/// What `exec` knows about the current attempt: its number (the Python
/// `cur_retry` plus one), how many there can be, and the batch item.
///
/// Each item of a parallel batch gets its own context, so the attempt number is
/// right even when items run at the same time.
#[derive(Debug, Clone, Copy)]
pub struct ExecContext<'a> {
    pub(crate) node: &'a str,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) item: Option<usize>,
}

impl<'a> ExecContext<'a> {
    /// A context for calling `exec` by hand, e.g. in a unit test of a node.
    #[inline]
    pub fn new(node: &'a str, attempt: u32, max_attempts: u32, item: Option<usize>) -> Self {
        ExecContext { node, attempt, max_attempts, item }
    }

    /// The attempt being made: 1 for the first run, 2 for the first retry, ...
    #[inline]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many attempts can be made in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a failure now goes to `exec_fallback` instead of a retry.
    #[inline]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The index of the batch item being processed, for batch nodes.
    #[inline]
    pub fn item(&self) -> Option<usize> {
        self.item
    }

    /// The node's name in its flow.
    #[inline]
    pub fn node(&self) -> &str {
        self.node
    }
}

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

    /// Runs this node alone on `store` (as PocketFlow's `node.run(shared)`), with
    /// retries, fallback and panic capture, and returns its action.
    fn run(&self, store: &mut S) -> Result<Self::Action, Error>
    where
        Self: Sized,
    {
        crate::step::run_node_alone(self, store)
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
        crate::step::run_async_node_alone(self, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_context_tells_the_attempt_and_where_it_runs() {
        let first = ExecContext::new("ask", 1, 3, Some(4));
        assert_eq!((first.attempt(), first.max_attempts(), first.item(), first.node()), (1, 3, Some(4), "ask"));
        assert!(!first.is_last_attempt());
        assert!(ExecContext::new("ask", 3, 3, None).is_last_attempt());
        assert!(ExecContext::new("ask", 1, 1, None).is_last_attempt());
    }
}
