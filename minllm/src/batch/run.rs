//! The one runner of each kind of batch: `prep` returns the items, each item's
//! `exec` runs with its retries and fallback (one after the other, on threads
//! or as futures, as the mode says), `post` gets the outputs in order. Runtime
//! flows, `flow!` code and batches run alone all call these.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::Instrument as _;

use super::spread::{batch_error, branches_on_threads, concurrent_map, par_map};
use super::{AsyncBatchMode, AsyncBatchNode, BatchMode, BatchNode};
use crate::access::{Access, AsyncAccess, locked};
use crate::context::{Cancel, NodeCx, is_cancelled, item_span};
use crate::durable::{Ambient, ExecRecord, Visit, decode_value, encode_value};
use crate::error::{Error, Failure, HookError, Stage};
use crate::node::{ExecContext, Retry, call_stage, caught, exec_with_retry, guarded, offload, retry_after_async};

/// Runs a sync batch node in a sync run.
pub(crate) fn run_batch<S, N: BatchNode<S>>(
    node: &N,
    mode: BatchMode,
    mut store: impl Access<S>,
    cx: NodeCx<'_>,
) -> Result<N::Action, Error> {
    let items = store.with_store(|s| call_stage(Stage::Prep, || node.prep(s, cx.params))).map_err(|h| cx.error(h))?;
    let outputs =
        exec_items(node, mode, &items, cx.node, cx.span, cx.cancel, cx.visit).map_err(|h| batch_error(&cx, h))?;
    store.with_store(|s| call_stage(Stage::Post, || node.post(s, items, outputs))).map_err(|h| cx.error(h))
}

/// Runs a sync batch node in an async run: `prep` and `post` on the task
/// (holding the store), the items' `exec`s on tokio's blocking pool (in
/// parallel when `mode` says so).
pub(crate) async fn run_offloaded_batch<S, N>(
    node: &Arc<N>,
    mode: BatchMode,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
) -> Result<N::Action, Box<Error>>
where
    S: Send + Sync + 'static,
    N: BatchNode<S>,
{
    let items = {
        let guard = locked!(store);
        call_stage(Stage::Prep, || node.prep(&guard, cx.params))
    }
    .map_err(|h| cx.error(h))?;
    let (shared, name, span) = (Arc::clone(node), cx.node.to_owned(), cx.span.clone());
    let (items, outputs) = offload(move |cancel| {
        let outputs = exec_items(&*shared, mode, &items, &name, &span, Some(cancel), None);
        (items, outputs)
    })
    .await
    .map_err(|f| f.into_error(cx.flow.to_string(), cx.node.to_owned(), Stage::Exec, None))?;
    let outputs = outputs.map_err(|h| batch_error(cx, h))?;
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, items, outputs)).map_err(|h| cx.fail(h))
}

/// Runs an async batch node.
pub(crate) async fn run_async_batch<S, N>(
    node: &N,
    mode: AsyncBatchMode,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
) -> Result<N::Action, Box<Error>>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    let items = {
        let guard = locked!(store);
        caught(Stage::Prep, guarded(node.prep(&guard, cx.params)).await)
    }
    .map_err(|h| cx.error(h))?;
    let outputs = exec_async_items(node, mode, &items, cx).await?;
    let mut guard = locked!(store);
    caught(Stage::Post, guarded(node.post(&mut guard, items, outputs)).await).map_err(|h| cx.fail(h))
}

/// Every item's `exec` (with retries and fallback) of a sync batch node. In
/// a checkpointed run (`visit`), each item's output is recorded as it
/// finishes, and an item whose output was recorded before is not run again.
fn exec_items<S, N: BatchNode<S>>(
    node: &N,
    mode: BatchMode,
    items: &[N::Item],
    name: &str,
    span: &tracing::Span,
    cancel: Option<&Cancel<'_>>,
    visit: Option<&Visit<'_>>,
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
    // In a checkpointed or streamed run, each item is recorded, and its hooks
    // reach the run (`interrupt`, `emit` with the item's index) on whatever
    // thread; a plain run's items pay for none of it.
    // With a subscriber listening, each item has a span in the node's.
    let traced = !span.is_disabled();
    let ambient = Ambient::current();
    if visit.is_none() && ambient.is_empty() {
        if traced {
            return spread_items(mode, items, cancel, |i, item, c| {
                item_span(span, name, i).in_scope(|| one(i, item, c))
            });
        }
        return spread_items(mode, items, cancel, one);
    }
    spread_items(mode, items, cancel, |i, item, cancel| {
        let _inside = ambient.with_item(i).enter();
        let _span = traced.then(|| item_span(span, name, i).entered());
        if let Some(visit) = visit
            && let Some(output) = replay_item::<N::Output>(visit, i)?
        {
            return Ok(output);
        }
        let output = one(i, item, cancel)?;
        if let Some(visit) = visit {
            record_item(visit, i, &output)?;
        }
        Ok(output)
    })
}

/// `one` over every item, as `mode` says.
#[inline(always)]
fn spread_items<I: Sync, O: Send>(
    mode: BatchMode,
    items: &[I],
    cancel: Option<&Cancel<'_>>,
    one: impl Fn(usize, &I, Option<&Cancel<'_>>) -> Result<O, HookError> + Sync,
) -> Result<Vec<O>, Option<HookError>> {
    match mode {
        BatchMode::Sequential => items
            .iter()
            .enumerate()
            .map(|(i, item)| if is_cancelled(cancel) { Err(None) } else { one(i, item, cancel).map_err(Some) })
            .collect(),
        BatchMode::Parallel { threads: None } => par_map(items, cancel, |i, item, c| one(i, item, Some(c))),
        BatchMode::Parallel { threads: Some(threads) } => {
            branches_on_threads(items, threads, cancel, |i, item, c| one(i, item, Some(c)))
        }
    }
}

/// The output of item `i`, when an earlier try of this visit recorded it.
#[cold]
fn replay_item<O: Send + 'static>(visit: &Visit<'_>, i: usize) -> Result<Option<O>, HookError> {
    let item_error =
        |why: String| HookError::new(Stage::Exec, Some(i), Failure::Returned { source: why.into(), attempts: 1 });
    let Some(record) = visit.recorded(Some(i)).map_err(|e| item_error(e.to_string()))? else {
        return Ok(None);
    };
    let (_, bytes) = ExecRecord::read(&record).map_err(item_error)?;
    decode_value(bytes).map(Some).map_err(|why| item_error(format!("its recorded output cannot be read: {why}")))
}

/// Records item `i`'s output before the batch goes on.
#[cold]
fn record_item<O: Send + 'static>(visit: &Visit<'_>, i: usize, output: &O) -> Result<(), HookError> {
    let item_error =
        |why: String| HookError::new(Stage::Exec, Some(i), Failure::Returned { source: why.into(), attempts: 1 });
    let bytes = encode_value(output).map_err(|why| item_error(format!("its output cannot be checkpointed: {why}")))?;
    visit.record(Some(i), &ExecRecord::write(0, &bytes)).map_err(|e| item_error(e.to_string()))
}

/// Every item's `exec` (with retries and fallback) of an async batch node.
async fn exec_async_items<S, N>(
    node: &N,
    mode: AsyncBatchMode,
    items: &[N::Item],
    cx: &NodeCx<'_>,
) -> Result<Vec<N::Output>, Box<Error>>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    let retry = node.retry();
    let ambient = Ambient::current();
    if cx.visit.is_some() || !ambient.is_empty() {
        return exec_async_items_driven(node, mode, items, cx, ambient).await;
    }
    if !cx.span.is_disabled() {
        // With a subscriber listening, each item has a span in the node's.
        let one = |i: usize| exec_async_item(node, i, &items[i], cx, retry).instrument(item_span(cx.span, cx.node, i));
        return each_item(mode, items.len(), one).await;
    }
    each_item(mode, items.len(), |i| exec_async_item(node, i, &items[i], cx, retry)).await
}

/// `one(i)` for every item, as `mode` says: at once up to its limit, or one
/// after the other; the outputs in the items' order.
#[inline(always)]
async fn each_item<O, F: Future<Output = Result<O, Box<Error>>>>(
    mode: AsyncBatchMode,
    count: usize,
    mut one: impl FnMut(usize) -> F,
) -> Result<Vec<O>, Box<Error>> {
    match mode {
        AsyncBatchMode::Concurrent { limit } => concurrent_map(count, limit, one).await,
        AsyncBatchMode::Sequential => {
            let mut outputs = Vec::with_capacity(count);
            for i in 0..count {
                outputs.push(one(i).await?);
            }
            Ok(outputs)
        }
    }
}

/// [`exec_async_items`] in a checkpointed or streamed run: each item's output
/// recorded as it finishes (and taken from the record when an earlier try got
/// it), each item's future polled in the item's ambient.
#[cold]
fn exec_async_items_driven<'a, S, N>(
    node: &'a N,
    mode: AsyncBatchMode,
    items: &'a [N::Item],
    cx: &'a NodeCx<'a>,
    ambient: Ambient,
) -> BoxFuture<'a, Result<Vec<N::Output>, Box<Error>>>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    let retry = node.retry();
    let one = move |i: usize| {
        let item = async move {
            let failed = |h: HookError| batch_error(cx, Some(h));
            if let Some(visit) = cx.visit
                && let Some(output) = replay_item::<N::Output>(visit, i).map_err(failed)?
            {
                return Ok(output);
            }
            let span = if cx.span.is_disabled() { tracing::Span::none() } else { item_span(cx.span, cx.node, i) };
            let output = exec_async_item(node, i, &items[i], cx, retry).instrument(span).await?;
            if let Some(visit) = cx.visit {
                record_item(visit, i, &output).map_err(failed)?;
            }
            Ok(output)
        };
        ambient.with_item(i).scope(item)
    };
    Box::pin(async move { each_item(mode, items.len(), &one).await })
}

/// One item's `exec`: the first attempt in place, retries and the fallback in
/// a boxed future made after a failure. A concurrent batch holds one of these
/// per item in flight, so it is kept small: a plain `fn` returning an `async
/// move` block (whose captures are not copied again into its locals, as an
/// `async fn`'s arguments are), holding pointers and the user's own future.
#[allow(clippy::manual_async_fn)]
fn exec_async_item<'a, S, N>(
    node: &'a N,
    i: usize,
    item: &'a N::Item,
    cx: &'a NodeCx<'a>,
    retry: Retry,
) -> impl Future<Output = Result<N::Output, Box<Error>>> + 'a
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    async move {
        let first = ExecContext::new(cx.node, 1, retry.max_attempts(), Some(i));
        let failure = match guarded(node.exec(item, &first)).await {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(source)) => Failure::Returned { source, attempts: 1 },
            Err(payload) => Failure::panicked(payload),
        };
        retry_async_item(node, failure, retry, first, item, cx).await
    }
}

/// Attempts 2.. and the fallback of one item of an async batch, boxed.
#[cold]
fn retry_async_item<'a, S, N>(
    node: &'a N,
    failure: Failure,
    retry: Retry,
    first: ExecContext<'a>,
    item: &'a N::Item,
    cx: &'a NodeCx<'a>,
) -> BoxFuture<'a, Result<N::Output, Box<Error>>>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    Box::pin(async move {
        retry_after_async(
            failure,
            retry,
            first,
            cx.cancel,
            |ctx| async move { node.exec(item, &ctx).await },
            |err, ctx| async move { node.exec_fallback(item, err, &ctx).await },
        )
        .await
        .map(|(out, _)| out)
        .map_err(|h| cx.fail(h))
    })
}
