//! A batch node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): each item's `exec`, with its retries and fallback, is
//! one step of the journal, run once and read back on every replay. The items
//! run one after the other there, in their order, so that every replay asks
//! for the same steps.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::BatchNode;
use crate::access::{AsyncAccess, locked};
use crate::context::{Cancel, NodeCx};
use crate::durable::steps::{Outcome, outcome_bytes, read_outcome};
use crate::durable::{Ambient, StepJournal, Visit, decode_value, encode_value, is_interrupt};
use crate::error::{CheckpointError, Error, Failure, HookError, Stage};
use crate::node::{call_stage, exec_with_retry, in_place, offload};

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
    let journal_error = |reason: String| {
        Box::new(Error::Checkpoint {
            flow: cx.flow.to_string(),
            run: visit.run().to_owned(),
            source: CheckpointError::Backend(format!("the journal of node `{}`: {reason}", cx.node)),
        })
    };
    let items = Arc::new(items);
    let mut outputs = Vec::with_capacity(items.len());
    for i in 0..items.len() {
        let (shared, list, name) = (Arc::clone(node), Arc::clone(&items), cx.node.to_owned());
        let ambient = Ambient::current().with_item(i);
        let step: BoxFuture<'static, Vec<u8>> = Box::pin(async move {
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
                Ok(Ok((output, _))) => match encode_value(&output) {
                    Ok(bytes) => Outcome::Done(bytes),
                    Err(why) => Outcome::Failed(Failure::Returned {
                        source: format!("its output cannot be journaled: {why}").into(),
                        attempts: 1,
                    }),
                },
                Ok(Err(h)) => match h.failure {
                    Failure::Returned { source, attempts } if is_interrupt(&*source) => {
                        Outcome::Failed(Failure::Returned {
                            source: "interrupt() cannot pause inside the items of a batch node in a journaled run"
                                .into(),
                            attempts,
                        })
                    }
                    failure => Outcome::Failed(failure),
                },
                Err(failure) => Outcome::Failed(failure),
            })
        });
        let bytes = steps.step(format!("{}[{i}]", visit.step_name()), step).await.map_err(journal_error)?;
        match read_outcome(&bytes) {
            Some(Outcome::Done(output)) => outputs.push(
                decode_value(&output)
                    .map_err(|why| journal_error(format!("a journaled output does not fit: {why}")))?,
            ),
            Some(Outcome::Failed(failure)) => return Err(cx.fail(HookError::new(Stage::Exec, Some(i), failure))),
            Some(Outcome::Asked(_)) | None => {
                return Err(journal_error("a journaled step this engine did not write".to_owned()));
            }
        }
    }
    // Every step was run and dropped, or replayed: the items are the node's again.
    let items = Arc::try_unwrap(items).map_err(|_| journal_error("a step kept its items".to_owned()))?;
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, items, outputs)).map(finish).map_err(|h| cx.fail(h))
}
