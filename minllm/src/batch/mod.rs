//! Batch nodes: `exec` once per item, sequentially, on threads or concurrently.
//! How items spread over threads and futures is in [`spread`].

mod spread;

pub use spread::DEFAULT_CONCURRENCY;
pub(crate) use spread::{batch_error, branches_on_threads, concurrent_map, par_map};

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::{Action, Label};
use crate::error::{BoxError, Error, HookError, NodeResult, Stage};
use crate::node::{ExecContext, Retry};
use crate::params::Params;
use crate::step::{
    AsyncBatchMarker, BatchMarker, Cancel, DynStep, IntoStep, StepCx, StepKind, call_async, call_stage,
    exec_with_retry, exec_with_retry_async, is_cancelled, offload, short_type_name, standalone,
};
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
        standalone(short_type_name::<N>(), |cx| {
            let node = &*self.node;
            let items = call_stage(Stage::Prep, || node.prep(store, cx.params)).map_err(|h| cx.error(h))?;
            let mode = self.mode.unwrap_or_else(|| node.mode());
            let outputs = exec_items(node, mode, &items, cx.node, None).map_err(|h| batch_error(&cx, h))?;
            call_stage(Stage::Post, || node.post(store, items, outputs)).map_err(|h| cx.error(h))
        })
    }
}

pub(crate) fn exec_items<S, N: BatchNode<S>>(
    node: &N,
    mode: BatchMode,
    items: &[N::Item],
    name: &str,
    cancel: Option<&Cancel<'_>>,
) -> Result<Vec<N::Output>, Option<HookError>> {
    let retry = node.retry();
    let one = |i: usize, item: &N::Item, cancel: Option<&Cancel<'_>>| {
        exec_with_retry(
            retry,
            name,
            Some(i),
            cancel,
            item,
            |it, c| node.exec(it, c),
            |it, e, c| node.exec_fallback(it, e, c),
        )
        .map(|(out, _)| out)
    };
    match mode {
        BatchMode::Sequential => items
            .iter()
            .enumerate()
            .map(|(i, item)| if is_cancelled(cancel) { Err(None) } else { one(i, item, cancel).map_err(Some) })
            .collect(),
        BatchMode::Parallel { limit: None } => par_map(items, cancel, |i, item, c| one(i, item, Some(c))),
        BatchMode::Parallel { limit: Some(threads) } => {
            branches_on_threads(items, threads, cancel, |i, item, c| one(i, item, Some(c)))
        }
    }
}

/// Runs a sync batch node in an async run: `prep` and `post` on the task
/// (holding the store), the items' `exec`s on tokio's blocking pool (in
/// parallel when `mode` says so).
pub(crate) async fn run_offloaded_batch<S, N>(
    node: &Arc<N>,
    mode: BatchMode,
    mut store: AsyncStoreRef<'_, S>,
    cx: StepCx<'_>,
) -> Result<N::Action, Error>
where
    S: Send + Sync + 'static,
    N: BatchNode<S>,
{
    let items = {
        let guard = store.lock().await;
        call_stage(Stage::Prep, || node.prep(&guard, cx.params))
    }
    .map_err(|h| cx.error(h))?;
    let (shared, name) = (Arc::clone(node), cx.node.to_owned());
    let (items, outputs) = offload(move |cancel| {
        let outputs = exec_items(&*shared, mode, &items, &name, Some(cancel));
        (items, outputs)
    })
    .await
    .map_err(|f| f.into_error(cx.flow.to_string(), cx.node.to_owned(), Stage::Exec, None))?;
    let outputs = outputs.map_err(|h| batch_error(&cx, h))?;
    let mut guard = store.lock().await;
    call_stage(Stage::Post, || node.post(&mut guard, items, outputs)).map_err(|h| cx.error(h))
}

impl<S: Send + Sync + 'static, N: BatchNode<S>> DynStep<S> for Batch<N> {
    fn run(&self, mut store: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error> {
        let node = &*self.node;
        let items = store.with(|s| call_stage(Stage::Prep, || node.prep(s, cx.params))).map_err(|h| cx.error(h))?;
        let mode = self.mode.unwrap_or_else(|| node.mode());
        let outputs = exec_items(node, mode, &items, cx.node, cx.cancel).map_err(|h| batch_error(&cx, h))?;
        let action =
            store.with(|s| call_stage(Stage::Post, || node.post(s, items, outputs))).map_err(|h| cx.error(h))?;
        Ok(action.into_label())
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>> {
        Box::pin(async move {
            let mode = self.mode.unwrap_or_else(|| self.node.mode());
            run_offloaded_batch(&self.node, mode, store, cx).await.map(Action::into_label)
        })
    }

    fn kind(&self) -> StepKind {
        match self.mode.unwrap_or_else(|| self.node.mode()) {
            BatchMode::Sequential => StepKind::Batch,
            BatchMode::Parallel { .. } => StepKind::ParallelBatch,
        }
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        N::Action::declared()
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
        let root = crate::step::Root::new(crate::step::NO_FLOW);
        self.run_hooks(AsyncStoreRef::exclusive(store), root.cx(short_type_name::<N>())).await
    }

    async fn run_hooks(&self, mut store: AsyncStoreRef<'_, S>, cx: StepCx<'_>) -> Result<N::Action, Error> {
        let node = &self.node;
        let items = {
            let guard = store.lock().await;
            call_async(Stage::Prep, node.prep(&guard, cx.params)).await
        }
        .map_err(|h| cx.error(h))?;
        let outputs = exec_async_items(node, self.mode.unwrap_or_else(|| node.mode()), &items, cx).await?;
        let mut guard = store.lock().await;
        call_async(Stage::Post, node.post(&mut guard, items, outputs)).await.map_err(|h| cx.error(h))
    }
}

pub(crate) async fn exec_async_items<S, N>(
    node: &N,
    mode: BatchMode,
    items: &[N::Item],
    cx: StepCx<'_>,
) -> Result<Vec<N::Output>, Error>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    match mode {
        BatchMode::Parallel { limit } => {
            concurrent_map(items.len(), limit, |i| exec_async_item(node, i, &items[i], cx)).await
        }
        BatchMode::Sequential => {
            let mut outputs = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                outputs.push(exec_async_item(node, i, item, cx).await?);
            }
            Ok(outputs)
        }
    }
}

async fn exec_async_item<S, N>(node: &N, i: usize, item: &N::Item, cx: StepCx<'_>) -> Result<N::Output, Error>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    let result: Result<_, HookError> =
        exec_with_retry_async!(node.retry(), cx.node, Some(i), cx.cancel, |ctx| node.exec(item, ctx), |err, ctx| node
            .exec_fallback(item, err, ctx),);
    result.map(|(out, _)| out).map_err(|h| cx.error(h))
}

impl<S: Send + Sync + 'static, N: AsyncBatchNode<S>> DynStep<S> for AsyncBatch<N, S> {
    fn run(&self, _: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error> {
        Err(Error::AsyncInSyncRun { flow: cx.flow.to_string(), node: cx.node.to_owned() })
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>> {
        Box::pin(async move { self.run_hooks(store, cx).await.map(Action::into_label) })
    }

    fn kind(&self) -> StepKind {
        match self.mode.unwrap_or_else(|| self.node.mode()) {
            BatchMode::Sequential => StepKind::AsyncBatch,
            BatchMode::Parallel { .. } => StepKind::ConcurrentBatch,
        }
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        N::Action::declared()
    }
}

impl<S: Send + Sync + 'static, N: BatchNode<S>> IntoStep<S, BatchMarker> for N {
    fn into_step(self) -> Arc<dyn DynStep<S>> {
        Arc::new(Batch::new(self))
    }
}

impl<S: Send + Sync + 'static, N: AsyncBatchNode<S>> IntoStep<S, AsyncBatchMarker> for N {
    fn into_step(self) -> Arc<dyn DynStep<S>> {
        Arc::new(AsyncBatch::<N, S>::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
