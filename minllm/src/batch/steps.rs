//! A batch node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): each item's `exec`, with its retries and fallback, is
//! one step of the journal, run once and read back on every replay. The items
//! run one after the other there, in their order, so that every replay asks
//! for the same steps.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{AsyncBatchNode, BatchNode};
use crate::access::{AsyncAccess, locked};
use crate::context::{Cancel, NodeCx};
use crate::durable::steps::{Outcome, outcome_bytes, read_outcome};
use crate::durable::{Ambient, StepJournal, Visit, decode_value, encode_value, is_interrupt};
use crate::error::{CheckpointError, Error, Failure, HookError, Stage};
use crate::node::{ExecContext, call_stage, caught, exec_with_retry, guarded, in_place, offload, retry_after_async};

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
            let run = move |cancel: Option<&Cancel<'_>>| {
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
            };
            // In place where the runtime allows it (see `node/steps.rs`).
            let ran = if in_place() {
                Ok(tokio::task::block_in_place(|| run(None)))
            } else {
                offload(move |cancel| run(Some(cancel))).await
            };
            outcome_bytes(match ran {
                Ok(result) => item_outcome(result.map(|(output, _)| output).map_err(|h| h.failure)),
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
            let item = &list[i];
            let retry = shared.retry();
            let first = ExecContext::new(&name, 1, retry.max_attempts(), Some(i));
            let failure = match guarded(shared.exec(item, &first)).await {
                Ok(Ok(output)) => return outcome_bytes(item_outcome(Ok(output))),
                Ok(Err(source)) => Failure::Returned { source, attempts: 1 },
                Err(payload) => Failure::panicked(payload),
            };
            let node = &*shared;
            let result = retry_after_async(
                failure,
                retry,
                first,
                None,
                |ctx| async move { node.exec(item, &ctx).await },
                |err, ctx| async move { node.exec_fallback(item, err, &ctx).await },
            )
            .await;
            outcome_bytes(item_outcome(result.map(|(output, _)| output).map_err(|h| h.failure)))
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

/// How an item's step ended (an item cannot pause: its batch goes on).
fn item_outcome<O: Send + 'static>(result: Result<O, Failure>) -> Outcome {
    match result {
        Ok(output) => match encode_value(&output) {
            Ok(bytes) => Outcome::Done(bytes),
            Err(why) => Outcome::Failed(Failure::Returned {
                source: format!("its output cannot be journaled: {why}").into(),
                attempts: 1,
            }),
        },
        Err(Failure::Returned { source, attempts }) if is_interrupt(&*source) => Outcome::Failed(Failure::Returned {
            source: "interrupt() cannot pause inside the items of a batch node in a journaled run".into(),
            attempts,
        }),
        Err(failure) => Outcome::Failed(failure),
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

fn journal_error(visit: &Visit<'_>, cx: &NodeCx<'_>, reason: String) -> Box<Error> {
    Box::new(Error::Checkpoint {
        flow: cx.flow.to_string(),
        run: visit.run().to_owned(),
        source: CheckpointError::Backend(format!("the journal of node `{}`: {reason}", cx.node)),
    })
}
