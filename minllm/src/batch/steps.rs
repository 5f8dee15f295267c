//! A batch node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): each item's `exec`, with its retries and fallback, is
//! one step of the journal, run once and read back on every replay. The items
//! run one after the other there, in their order, so that every replay asks
//! for the same steps.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{AsyncBatchNode, BatchNode};
use crate::access::{AsyncAccess, locked};
use crate::context::NodeCx;
use crate::durable::steps::{Outcome, outcome_bytes, read_outcome};
use crate::durable::{Ambient, StepJournal, Visit, decode_value};
use crate::error::{Error, HookError, Stage};
use crate::node::{
    ExecContext, attempts_async, call_stage, caught, exec_blocking, exec_with_retry, guarded, journal_error, outcome,
};

/// A sync batch node in a journaled (async) run: each item's `exec` on
/// tokio's blocking pool, inside its step.
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
    let make = |i: usize| -> BoxFuture<'static, Vec<u8>> {
        let (shared, list, name) = (Arc::clone(node), Arc::clone(&items), cx.node.to_owned());
        let ambient = Ambient::current().with_item(i);
        Box::pin(async move {
            let ran = exec_blocking(true, move |cancel| {
                let _inside = ambient.enter();
                exec_with_retry(
                    shared.retry(),
                    &name,
                    Some(i),
                    cancel,
                    &list[i],
                    |it, c| shared.exec(it, c),
                    |it, e, c| shared.exec_fallback(it, e, c),
                )
            })
            .await;
            outcome_bytes(match ran {
                Ok(result) => outcome(result.map(|(output, _)| output).map_err(|h| h.failure), None),
                Err(failure) => Outcome::Failed(failure),
            })
        })
    };
    let outputs = item_steps(steps, visit, cx, items.len(), make).await?;
    // Every step was run and dropped, or replayed: the items are the node's again.
    let items = Arc::try_unwrap(items).map_err(|_| journal_error(visit, cx, "a step kept its items".to_owned()))?;
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, items, outputs)).map(finish).map_err(|h| cx.fail(h))
}

/// An async batch node in a journaled run: each item's `exec` awaited inside its step.
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
    let make = |i: usize| -> BoxFuture<'static, Vec<u8>> {
        let (shared, list, name) = (Arc::clone(node), Arc::clone(&items), cx.node.to_owned());
        Box::pin(Ambient::current().with_item(i).scope(async move {
            let (node, item) = (&*shared, &list[i]);
            let first = ExecContext::new(&name, 1, node.retry().max_attempts(), Some(i));
            let result = attempts_async(
                node.retry(),
                first,
                |ctx| async move { node.exec(item, &ctx).await },
                |err, ctx| async move { node.exec_fallback(item, err, &ctx).await },
            )
            .await;
            outcome_bytes(outcome(result, None))
        }))
    };
    let outputs = item_steps(steps, visit, cx, items.len(), make).await?;
    let items = Arc::try_unwrap(items).map_err(|_| journal_error(visit, cx, "a step kept its items".to_owned()))?;
    let mut guard = locked!(store);
    match caught(Stage::Post, guarded(node.post(&mut guard, items, outputs)).await) {
        Ok(action) => Ok(finish(action)),
        Err(h) => Err(cx.fail(h)),
    }
}

/// Runs each item's step (`make(i)`) through the journal, in order; their outputs.
async fn item_steps<O: Send + 'static>(
    steps: &dyn StepJournal,
    visit: &Visit<'_>,
    cx: &NodeCx<'_>,
    count: usize,
    make: impl Fn(usize) -> BoxFuture<'static, Vec<u8>>,
) -> Result<Vec<O>, Box<Error>> {
    let mut outputs = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{}[{i}]", visit.step_name());
        let bytes = steps.step(name, make(i)).await.map_err(|why| journal_error(visit, cx, why))?;
        match read_outcome(&bytes) {
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
