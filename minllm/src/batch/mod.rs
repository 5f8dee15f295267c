//! Batch nodes: `exec` once per item, sequentially, on threads or concurrently.
//! The runners are in [`run`]; how items spread over threads and futures is in
//! [`spread`].

mod run;
mod spread;

pub(crate) use run::{run_async_batch, run_batch, run_offloaded_batch};
pub use spread::DEFAULT_CONCURRENCY;
pub(crate) use spread::{branches_on_threads, concurrent_map};

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::access::AsyncStoreRef;
use crate::action::Action;
use crate::context::{NO_FLOW, Root, short_type_name};
use crate::error::{BoxError, Error, NodeResult};
use crate::node::{ExecContext, Retry};
use crate::params::Params;
use crate::store::SharedStore;

/// A node whose `exec` runs once per item: `prep` returns the items, `post` gets
/// every output, in the items' order.
///
/// Add it to a flow wrapped in [`Batch::sequential`] or [`Batch::parallel`]. Retries
/// and the fallback apply to each item on its own. The first failing item stops
/// the batch (items not yet started never start) and the error names its index.
///
/// ```
/// use minllm::{Batch, BatchNode, ExecContext, NodeResult, Params, SharedStore};
///
/// struct WordCount;
///
/// impl BatchNode for WordCount {
///     type Item = String;
///     type Output = usize;
///     type Action = ();
///
///     fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<String>> {
///         Ok(store.try_get("docs")?)
///     }
///     fn exec(&self, doc: &String, _: &ExecContext) -> NodeResult<usize> {
///         Ok(doc.split_whitespace().count())
///     }
///     fn post(&self, store: &mut SharedStore, _: Vec<String>, counts: Vec<usize>) -> NodeResult<()> {
///         store.set("counts", counts);
///         Ok(())
///     }
/// }
///
/// let mut store = SharedStore::new();
/// store.set("docs", vec!["a b".to_string(), "c d e".to_string()]);
/// Batch::parallel(WordCount).run(&mut store).unwrap();
/// assert_eq!(store.get::<Vec<usize>>("counts"), Some(vec![2, 3]));
/// ```
pub trait BatchNode<S = SharedStore>: Send + Sync + 'static {
    /// One unit of work.
    type Item: Send + Sync + 'static;
    /// What `exec` makes of one item.
    type Output: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads the items from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> NodeResult<Vec<Self::Item>>;

    /// Processes one item. Retried according to [`retry`](BatchNode::retry).
    fn exec(&self, item: &Self::Item, ctx: &ExecContext<'_>) -> NodeResult<Self::Output>;

    /// Runs after the last failed attempt on an item; the default returns the error.
    fn exec_fallback(&self, item: &Self::Item, error: BoxError, ctx: &ExecContext<'_>) -> NodeResult<Self::Output> {
        let _ = (item, ctx);
        Err(error)
    }

    /// Gets the items back with their outputs, in order; writes the store.
    fn post(&self, store: &mut S, items: Vec<Self::Item>, outputs: Vec<Self::Output>) -> NodeResult<Self::Action>;

    /// The retry policy of `exec`, applied to each item.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// How the items run when the node is added to a flow as it is (without a
    /// [`Batch`] wrapper that says otherwise): one by one unless overridden.
    fn mode(&self) -> BatchMode {
        BatchMode::Sequential
    }
}

/// How the items of a batch node run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchMode {
    /// One item after the other.
    #[default]
    Sequential,
    /// Items at the same time. For a [`BatchNode`]: on all cores (rayon's
    /// global pool), or on `limit` threads of the batch's own when set. For an
    /// [`AsyncBatchNode`]: as concurrent futures, at most `limit` in flight, or
    /// [`DEFAULT_CONCURRENCY`] when unset.
    Parallel {
        /// The most items in flight at once.
        limit: Option<usize>,
    },
}

/// The async form of [`BatchNode`]. Add it to a flow wrapped in
/// [`AsyncBatch::sequential`] or [`AsyncBatch::concurrent`].
pub trait AsyncBatchNode<S = SharedStore>: Send + Sync + 'static
where
    S: Send + Sync,
{
    /// One unit of work.
    type Item: Send + Sync + 'static;
    /// What `exec` makes of one item.
    type Output: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads the items from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> impl Future<Output = NodeResult<Vec<Self::Item>>> + Send;

    /// Processes one item. Retried according to [`retry`](AsyncBatchNode::retry).
    fn exec(&self, item: &Self::Item, ctx: &ExecContext<'_>) -> impl Future<Output = NodeResult<Self::Output>> + Send;

    /// Runs after the last failed attempt on an item; the default returns the error.
    fn exec_fallback(
        &self,
        item: &Self::Item,
        error: BoxError,
        ctx: &ExecContext<'_>,
    ) -> impl Future<Output = NodeResult<Self::Output>> + Send {
        let _ = (item, ctx);
        async move { Err(error) }
    }

    /// Gets the items back with their outputs, in order; writes the store.
    fn post(
        &self,
        store: &mut S,
        items: Vec<Self::Item>,
        outputs: Vec<Self::Output>,
    ) -> impl Future<Output = NodeResult<Self::Action>> + Send;

    /// The retry policy of `exec`, applied to each item.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// How the items run when the node is added to a flow as it is (without an
    /// [`AsyncBatch`] wrapper that says otherwise): one by one unless overridden.
    fn mode(&self) -> BatchMode {
        BatchMode::Sequential
    }
}

/// A [`BatchNode`] ready to add to a flow: run item by item, or in parallel on
/// rayon's threads (all cores).
///
/// A batch node can also be added to a flow as it is; it then runs the way its
/// [`mode`](BatchNode::mode) says. In an async run, the items' `exec`s run on
/// tokio's blocking pool, so they never stall the runtime.
pub struct Batch<N> {
    node: Arc<N>,
    mode: Option<BatchMode>,
}

impl<N> Batch<N> {
    /// Runs the way the node's [`mode`](BatchNode::mode) says.
    pub fn new(node: N) -> Self {
        Batch { node: Arc::new(node), mode: None }
    }

    /// Runs `exec` on one item after the other.
    pub fn sequential(node: N) -> Self {
        Batch { node: Arc::new(node), mode: Some(BatchMode::Sequential) }
    }

    /// Runs `exec` on all cores at once (rayon's global pool). Outputs keep the
    /// items' order.
    pub fn parallel(node: N) -> Self {
        Batch { node: Arc::new(node), mode: Some(BatchMode::Parallel { limit: None }) }
    }

    /// Runs `exec` in parallel on `threads` threads of its own, started for each
    /// run of the batch and gone when it ends, e.g. to cap how many calls go to
    /// an LLM server at once (blocking calls then overlap even on few cores).
    pub fn threads(self, threads: usize) -> Self {
        Batch { mode: Some(BatchMode::Parallel { limit: Some(threads.max(1)) }), ..self }
    }

    /// The wrapped node.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// Runs the batch node alone on `store` and returns its action.
    pub fn run<S>(&self, store: &mut S) -> Result<N::Action, Error>
    where
        S: Send + Sync + 'static,
        N: BatchNode<S>,
    {
        run_batch(&*self.node, self.mode(), store, Root::new(NO_FLOW).cx(short_type_name::<N>()))
    }

    /// How the items run: as the wrapper says, or as the node's `mode` does.
    pub(crate) fn mode<S>(&self) -> BatchMode
    where
        N: BatchNode<S>,
    {
        self.mode.unwrap_or_else(|| self.node.mode())
    }

    pub(crate) fn shared(&self) -> &Arc<N> {
        &self.node
    }
}

/// An [`AsyncBatchNode`] ready to add to a flow: items one after the other, or
/// all at once as concurrent futures, optionally at most `limit` at a time.
pub struct AsyncBatch<N, S = SharedStore> {
    node: N,
    mode: Option<BatchMode>,
    store: PhantomData<fn(&mut S)>,
}

impl<N, S> AsyncBatch<N, S> {
    /// Runs the way the node's [`mode`](AsyncBatchNode::mode) says.
    pub fn new(node: N) -> Self {
        AsyncBatch { node, mode: None, store: PhantomData }
    }

    /// Awaits each item's `exec` before starting the next.
    pub fn sequential(node: N) -> Self {
        AsyncBatch { node, mode: Some(BatchMode::Sequential), store: PhantomData }
    }

    /// Runs the items' `exec`s concurrently, at most [`DEFAULT_CONCURRENCY`] in
    /// flight unless [`limit`](AsyncBatch::limit) says otherwise (outputs keep
    /// the items' order).
    pub fn concurrent(node: N) -> Self {
        AsyncBatch { node, mode: Some(BatchMode::Parallel { limit: None }), store: PhantomData }
    }

    /// Runs concurrently, at most `limit` items in flight at once.
    pub fn limit(self, limit: usize) -> Self {
        AsyncBatch { mode: Some(BatchMode::Parallel { limit: Some(limit.max(1)) }), ..self }
    }

    /// The wrapped node.
    pub fn node(&self) -> &N {
        &self.node
    }
}

impl<N: AsyncBatchNode<S>, S: Send + Sync + 'static> AsyncBatch<N, S> {
    /// Runs the batch node alone on `store` and returns its action.
    pub async fn run_async(&self, store: &mut S) -> Result<N::Action, Error> {
        let root = Root::new(NO_FLOW);
        run_async_batch(&self.node, self.mode(), AsyncStoreRef::exclusive(store), root.cx(short_type_name::<N>())).await
    }

    /// How the items run: as the wrapper says, or as the node's `mode` does.
    pub(crate) fn mode(&self) -> BatchMode {
        self.mode.unwrap_or_else(|| self.node.mode())
    }
}

#[cfg(test)]
mod tests {
    use super::spread::{concurrent_map, par_map};

    #[test]
    fn par_map_keeps_order_and_reports_the_error() {
        let items: Vec<usize> = (0..100).collect();
        let out: Result<Vec<usize>, Option<String>> = par_map(&items, None, |i, x, _| Ok(i + x));
        assert_eq!(out.unwrap(), (0..100).map(|i| 2 * i).collect::<Vec<_>>());
        let out: Result<Vec<usize>, Option<usize>> =
            par_map(&items, None, |i, _, _| if i == 7 { Err(i) } else { Ok(i) });
        assert_eq!(out, Err(Some(7)));
    }

    #[tokio::test]
    async fn concurrent_map_respects_the_limit() {
        let live = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let out: Result<Vec<usize>, ()> = concurrent_map(20, Some(3), |i| {
            let (live, peak) = (&live, &peak);
            async move {
                let now = live.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok(i)
            }
        })
        .await;
        assert_eq!(out.unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
