//! A node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): its `exec`, with its retries and fallback, is one
//! step of the journal, run once and read back on every replay; `prep` and
//! `post` run as in any run.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use super::{AsyncNode, ExecContext, Node, exec_with_retry, guarded, offload, retry_after_async};
use crate::access::{AsyncAccess, locked};
use crate::context::NodeCx;
use crate::durable::steps::{outcome_bytes, read_outcome};
use crate::durable::{Ambient, StepJournal, Visit, decode_value, encode_value};
use crate::error::{CheckpointError, Error, Failure, HookError, Stage};
use crate::node::{call_stage, caught};

/// A sync node in a journaled (async) run: `exec` on tokio's blocking pool,
/// inside the step.
pub(crate) async fn run_offloaded_step<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
    finish: impl FnOnce(N::Action) -> T,
) -> Result<T, Box<Error>>
where
    S: Send + Sync + 'static,
    N: Node<S>,
{
    let prep = {
        let guard = locked!(store);
        call_stage(Stage::Prep, || node.prep(&guard, cx.params))
    }
    .map_err(|h| cx.error(h))?;
    // `prep` goes into the step and comes back; a replayed step never takes it.
    let slot = Arc::new(Mutex::new(Some(prep)));
    let (shared, name, kept, ambient) = (Arc::clone(node), cx.node.to_owned(), Arc::clone(&slot), Ambient::current());
    let step: BoxFuture<'static, Vec<u8>> = Box::pin(async move {
        let Some(prep) = kept.lock().take() else {
            return outcome_bytes(Err(Failure::Returned { source: "the step ran twice".into(), attempts: 1 }));
        };
        let ran = offload(move |cancel| {
            let _inside = ambient.enter();
            let result = exec_with_retry(
                shared.retry(),
                &name,
                None,
                Some(cancel),
                &prep,
                |p, c| shared.exec(p, c),
                |p, e, c| shared.exec_fallback(p, e, c),
            );
            (prep, result)
        })
        .await;
        outcome_bytes(match ran {
            Ok((prep, result)) => {
                *kept.lock() = Some(prep);
                encoded(result.map(|(exec, _)| exec).map_err(|h| h.failure))
            }
            Err(failure) => Err(failure),
        })
    });
    let exec = journaled::<N::Exec>(steps, visit, cx, step).await?;
    let prep = slot.lock().take().ok_or_else(|| cx.error(lost_prep()))?;
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, prep, exec)).map(finish).map_err(|h| cx.fail(h))
}

/// An async node in a journaled run: `exec` awaited inside the step.
pub(crate) async fn run_async_step<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
    finish: impl FnOnce(N::Action) -> T,
) -> Result<T, Box<Error>>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    let prep = {
        let guard = locked!(store);
        caught(Stage::Prep, guarded(node.prep(&guard, cx.params)).await)
    }
    .map_err(|h| cx.error(h))?;
    let slot = Arc::new(Mutex::new(Some(prep)));
    let (shared, name, kept) = (Arc::clone(node), cx.node.to_owned(), Arc::clone(&slot));
    let step: BoxFuture<'static, Vec<u8>> = Box::pin(Ambient::current().scope(async move {
        let Some(prep) = kept.lock().take() else {
            return outcome_bytes(Err(Failure::Returned { source: "the step ran twice".into(), attempts: 1 }));
        };
        let result = attempts(&*shared, &prep, &name).await;
        *kept.lock() = Some(prep);
        outcome_bytes(encoded(result))
    }));
    let exec = journaled::<N::Exec>(steps, visit, cx, step).await?;
    let prep = slot.lock().take().ok_or_else(|| cx.error(lost_prep()))?;
    let mut guard = locked!(store);
    match caught(Stage::Post, guarded(node.post(&mut guard, prep, exec)).await) {
        Ok(action) => Ok(finish(action)),
        Err(h) => Err(cx.fail(h)),
    }
}

/// An async node's attempts of `exec`, then its fallback.
async fn attempts<S, N>(node: &N, prep: &N::Prep, name: &str) -> Result<N::Exec, Failure>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    let retry = node.retry();
    let first = ExecContext::new(name, 1, retry.max_attempts(), None);
    let failure = match guarded(node.exec(prep, &first)).await {
        Ok(Ok(exec)) => return Ok(exec),
        Ok(Err(source)) => Failure::Returned { source, attempts: 1 },
        Err(payload) => Failure::panicked(payload),
    };
    retry_after_async(
        failure,
        retry,
        first,
        None,
        |ctx| async move { node.exec(prep, &ctx).await },
        |err, ctx| async move { node.exec_fallback(prep, err, &ctx).await },
    )
    .await
    .map(|(exec, _)| exec)
    .map_err(|h| h.failure)
}

/// An `exec` result as the bytes of a step, or why it has none.
fn encoded<E: Send + 'static>(result: Result<E, Failure>) -> Result<Vec<u8>, Failure> {
    result.and_then(|exec| {
        encode_value(&exec).map_err(|why| Failure::Returned {
            source: format!("its exec result cannot be journaled: {why}").into(),
            attempts: 1,
        })
    })
}

/// Runs `step` through the journal and reads its outcome: the `exec` result,
/// or the node's error (the same on every replay).
async fn journaled<E: Send + 'static>(
    steps: &dyn StepJournal,
    visit: &Visit<'_>,
    cx: &NodeCx<'_>,
    step: BoxFuture<'static, Vec<u8>>,
) -> Result<E, Box<Error>> {
    let journal_error = |reason: String| {
        Box::new(Error::Checkpoint {
            flow: cx.flow.to_string(),
            run: visit.run().to_owned(),
            source: CheckpointError::Backend(format!("the journal of node `{}`: {reason}", cx.node)),
        })
    };
    let bytes = steps.step(visit.step_name().to_owned(), step).await.map_err(journal_error)?;
    match read_outcome(&bytes) {
        Some(Ok(exec)) => {
            decode_value(&exec).map_err(|why| journal_error(format!("a journaled result does not fit: {why}")))
        }
        Some(Err(failure)) => Err(cx.fail(HookError::new(Stage::Exec, None, failure))),
        None => Err(journal_error("a journaled step this engine did not write".to_owned())),
    }
}

/// A `prep` that neither came back from its step nor stayed.
fn lost_prep() -> HookError {
    HookError::new(
        Stage::Exec,
        None,
        Failure::Returned { source: "the step did not give `prep` back".into(), attempts: 1 },
    )
}
