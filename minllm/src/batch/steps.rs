//! A batch node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): each item's `exec`, with its retries and fallback, is
//! one step of the journal, run once and read back on every replay.
//!
//! Where the items go depends on the node and the journal. A journal that
//! fans out ([`StepJournal::fans_out`], Restate) gets the items of a batch
//! node that runs them at the same time (`BatchMode::Parallel`,
//! `AsyncBatchMode::Concurrent`) as bytes, and runs each as a step of its own
//! on whichever worker it picks ([`run_remote_item`] is the worker's side).
//! Otherwise, and for sequential batch nodes, the items run here one after the
//! other, in their order, so that every replay asks for the same steps.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{AsyncBatchMode, AsyncBatchNode, BatchMode, BatchNode, DEFAULT_CONCURRENCY, DEFAULT_THREADS};
use crate::access::{AsyncAccess, locked};
use crate::context::NodeCx;
use crate::durable::steps::{Outcome, StepResult, failed_step, outcome_bytes, read_outcome};
use crate::durable::{Ambient, StepJournal, Visit, decode_value, encode_value, send_kept, with_kept};
use crate::error::{Error, Failure, HookError, Stage};
use crate::node::{
    Bridge, ExecContext, attempts_async, call_stage, cannot_block, caught, drive_here, exec_blocking, exec_with_retry,
    guarded, journal_error, not_multi_thread, outcome,
};

/// A sync batch node in a journaled (async) run: each item's `exec` in a step
/// of its own, here or on a worker.
pub(crate) async fn run_offloaded_batch_steps<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
    finish: impl FnOnce(N::Action) -> T,
) -> Result<T, Box<Error>>
where
    S: Send + Sync + 'static,
    N: BatchNode<S>,
{
    let items = {
        let guard = locked!(store);
        call_stage(Stage::Prep, || node.prep(&guard, cx.params))
    }
    .map_err(|h| cx.error(h))?;
    let items = Arc::new(items);
    let make = |i: usize| sync_item(Arc::clone(node), Arc::clone(&items), i, i, cx.node.to_owned());
    let remote = sync_item_limit(node.mode()).is_some() && visit.may_fan_out() && steps.fans_out();
    let outputs = item_steps::<N::Item, N::Output>(steps, visit, cx, &items, remote, make).await?;
    // Every step was run and dropped, or replayed: the items are the node's again.
    let items = Arc::try_unwrap(items).map_err(|_| journal_error(visit, cx, "a step kept its items".to_owned()))?;
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, items, outputs)).map(finish).map_err(|h| cx.fail(h))
}

/// An async batch node in a journaled run: each item's `exec` awaited in a
/// step of its own, here or on a worker.
pub(crate) async fn run_async_batch_steps<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
    finish: impl FnOnce(N::Action) -> T,
) -> Result<T, Box<Error>>
where
    S: Send + Sync,
    N: AsyncBatchNode<S>,
{
    let items = {
        let guard = locked!(store);
        caught(Stage::Prep, guarded(node.prep(&guard, cx.params)).await)
    }
    .map_err(|h| cx.error(h))?;
    let items = Arc::new(items);
    let make = |i: usize| async_item(Arc::clone(node), Arc::clone(&items), i, i, cx.node.to_owned());
    let remote = async_item_limit(node.mode()).is_some() && visit.may_fan_out() && steps.fans_out();
    let outputs = item_steps::<N::Item, N::Output>(steps, visit, cx, &items, remote, make).await?;
    let items = Arc::try_unwrap(items).map_err(|_| journal_error(visit, cx, "a step kept its items".to_owned()))?;
    let mut guard = locked!(store);
    match caught(Stage::Post, guarded(node.post(&mut guard, items, outputs)).await) {
        Ok(action) => Ok(finish(action)),
        Err(h) => Err(cx.fail(h)),
    }
}

/// A batch node of a sync `flow!` machine in a journaled run: each item's
/// `exec` a step, run on a scoped thread while this one drives the journal
/// (see `node/bridge.rs`); the items stay in the run, one after the other.
pub(crate) fn run_batch_steps_sync<S, N: BatchNode<S>>(
    node: &N,
    store: &mut S,
    cx: NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
) -> Result<N::Action, Error> {
    if !steps.blocks_anywhere() {
        return Err(cannot_block(visit, &cx));
    }
    let items = call_stage(Stage::Prep, || node.prep(store, cx.params)).map_err(|h| cx.error(h))?;
    let ran = std::thread::scope(|scope| {
        let bridge = Bridge::new(scope);
        let (list, name) = (&items, cx.node);
        let make = |i: usize| {
            let (ambient, emitted) = Ambient::current().with_item(i).keeping();
            bridge.step(move || {
                let _inside = ambient.enter();
                let result = exec_with_retry(
                    node.retry(),
                    name,
                    Some(i),
                    None,
                    &list[i],
                    |it, c| node.exec(it, c),
                    |it, e, c| node.exec_fallback(it, e, c),
                );
                with_kept(
                    emitted,
                    outcome_bytes(outcome(result.map(|(output, _)| output).map_err(|h| h.failure), None)),
                )
            })
        };
        let ran = drive_here(item_steps::<N::Item, N::Output>(steps, visit, &cx, &items, false, make));
        bridge.quit();
        ran
    });
    let outputs = ran.ok_or_else(|| not_multi_thread(visit, &cx))?.map_err(|e| *e)?;
    call_stage(Stage::Post, || node.post(store, items, outputs)).map_err(|h| cx.error(h))
}

/// How many items of a sync batch node one worker runs at once when they fan
/// out: the node's thread count. `None` for a node whose items do not fan out.
pub(crate) fn sync_item_limit(mode: BatchMode) -> Option<usize> {
    match mode {
        BatchMode::Parallel { threads } => Some(threads.unwrap_or(DEFAULT_THREADS).max(1)),
        BatchMode::Sequential => None,
    }
}

/// [`sync_item_limit`] of an async batch node: its concurrency limit.
pub(crate) fn async_item_limit(mode: AsyncBatchMode) -> Option<usize> {
    match mode {
        AsyncBatchMode::Concurrent { limit } => Some(limit.unwrap_or(DEFAULT_CONCURRENCY).max(1)),
        AsyncBatchMode::Sequential => None,
    }
}

/// The step of item `list[at]` (item `index` of its batch) of sync batch node
/// `node` named `name`: its `exec` with retries and fallback, as an outcome.
fn sync_item<S, N: BatchNode<S>>(
    node: Arc<N>,
    list: Arc<Vec<N::Item>>,
    at: usize,
    index: usize,
    name: String,
) -> BoxFuture<'static, StepResult> {
    let (ambient, emitted) = Ambient::current().with_item(index).keeping();
    Box::pin(async move {
        let ran = exec_blocking(true, move |cancel| {
            let _inside = ambient.enter();
            exec_with_retry(
                node.retry(),
                &name,
                Some(index),
                cancel,
                &list[at],
                |it, c| node.exec(it, c),
                |it, e, c| node.exec_fallback(it, e, c),
            )
        })
        .await;
        let bytes = outcome_bytes(match ran {
            Ok(result) => outcome(result.map(|(output, _)| output).map_err(|h| h.failure), None),
            Err(failure) => Outcome::Failed(failure),
        });
        with_kept(emitted, bytes)
    })
}

/// [`sync_item`] of an async batch node: its `exec` awaited.
fn async_item<S: Send + Sync, N: AsyncBatchNode<S>>(
    node: Arc<N>,
    list: Arc<Vec<N::Item>>,
    at: usize,
    index: usize,
    name: String,
) -> BoxFuture<'static, StepResult> {
    let (ambient, emitted) = Ambient::current().with_item(index).keeping();
    Box::pin(ambient.scope(async move {
        let (node, item) = (&*node, &list[at]);
        let first = ExecContext::new(&name, 1, node.retry().max_attempts(), Some(index));
        let result = attempts_async(
            node.retry(),
            first,
            |ctx| async move { node.exec(item, &ctx).await },
            |err, ctx| async move { node.exec_fallback(item, err, &ctx).await },
        )
        .await;
        with_kept(emitted, outcome_bytes(outcome(result, None)))
    }))
}

/// A fanned-out item on the worker that runs it: item `index` of batch node
/// `node` (named `name`) from the bytes the run sent, as the step it is there.
pub(crate) fn run_remote_item<S, N: BatchNode<S>>(
    node: &Arc<N>,
    name: String,
    index: usize,
    item: &[u8],
) -> BoxFuture<'static, StepResult> {
    match decode_value::<N::Item>(item) {
        Ok(item) => sync_item(Arc::clone(node), Arc::new(vec![item]), 0, index, name),
        Err(why) => undecodable(&name, index, &why),
    }
}

/// [`run_remote_item`] of an async batch node.
pub(crate) fn run_remote_async_item<S: Send + Sync, N: AsyncBatchNode<S>>(
    node: &Arc<N>,
    name: String,
    index: usize,
    item: &[u8],
) -> BoxFuture<'static, StepResult> {
    match decode_value::<N::Item>(item) {
        Ok(item) => async_item(Arc::clone(node), Arc::new(vec![item]), 0, index, name),
        Err(why) => undecodable(&name, index, &why),
    }
}

/// The outcome of an item whose bytes do not make an item of its node.
fn undecodable(name: &str, index: usize, why: &str) -> BoxFuture<'static, StepResult> {
    let why = format!("item {index} of batch node `{name}` arrived as bytes that are not one of its items: {why}");
    let bytes = failed_step(why, 0);
    Box::pin(async move { bytes })
}

/// Runs each item's step through the journal: fanned out (`remote`), or here
/// one after the other with `make(i)`; their outputs, in the items' order.
async fn item_steps<I: Send + 'static, O: Send + 'static>(
    steps: &dyn StepJournal,
    visit: &Visit<'_>,
    cx: &NodeCx<'_>,
    items: &[I],
    remote: bool,
    make: impl Fn(usize) -> BoxFuture<'static, StepResult>,
) -> Result<Vec<O>, Box<Error>> {
    let outcomes = if remote {
        let sent = items.iter().map(encode_value).collect::<Result<Vec<_>, _>>().map_err(|why| {
            cx.fail(HookError::new(
                Stage::Prep,
                None,
                Failure::Returned {
                    source: format!("its items are sent to workers, and they cannot be: {why}").into(),
                    attempts: 1,
                },
            ))
        })?;
        let key = cx.flow.node_key(cx.node);
        let outcomes = steps.fan_out(key, visit.step_name().to_owned(), sent).await;
        let outcomes = outcomes.map_err(|why| journal_error(visit, cx, why))?;
        if outcomes.len() != items.len() {
            let why = format!("{} items went out and {} came back", items.len(), outcomes.len());
            return Err(journal_error(visit, cx, why));
        }
        outcomes
    } else {
        let mut outcomes = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            let name = format!("{}[{i}]", visit.step_name());
            outcomes.push(steps.step(name, make(i)).await.map_err(|why| journal_error(visit, cx, why))?);
        }
        outcomes
    };
    let mut outputs = Vec::with_capacity(outcomes.len());
    for (i, bytes) in outcomes.iter().enumerate() {
        send_kept(bytes);
        match read_outcome(bytes) {
            Some(Outcome::Done(output)) => outputs.push(
                decode_value(&output)
                    .map_err(|why| journal_error(visit, cx, format!("a journaled output does not fit: {why}")))?,
            ),
            Some(Outcome::Failed(failure)) => return Err(cx.fail(HookError::new(Stage::Exec, Some(i), failure))),
            Some(Outcome::Asked(_)) | None => {
                return Err(journal_error(visit, cx, "a journaled step this engine did not write".to_owned()));
            }
        }
    }
    Ok(outputs)
}
