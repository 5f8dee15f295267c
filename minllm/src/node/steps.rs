//! A node in a run journaled by a durable-execution engine (see
//! `durable/steps.rs`): its `exec`, with its retries and fallback, is one
//! step of the journal, run once and read back on every replay; `prep` and
//! `post` run as in any run. An `exec` that calls `interrupt` ends its step
//! with the question; the journal waits for the answer (durably), and `exec`
//! runs again as a new step, where `interrupt` returns the answers so far.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use std::future::Future;

use super::{AsyncNode, ExecContext, Node, Retry, exec_with_retry, guarded, offload, retry_after_async};
use crate::access::{AsyncAccess, locked};
use crate::context::{Cancel, NodeCx};
use crate::durable::steps::{Outcome, failed_step, outcome_bytes, read_outcome};
use crate::durable::visit::Asks;
use crate::durable::{Ambient, StepJournal, Visit, decode_value, encode_value, is_interrupt, send_kept, with_kept};
use crate::error::{BoxError, CheckpointError, Error, Failure, HookError, NodeResult, Stage};
use crate::node::bridge::{Bridge, drive_here};
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
    // `prep` goes into each step and comes back; a replayed step never takes it.
    let slot = Arc::new(Mutex::new(Some(prep)));
    let make = || -> BoxFuture<'static, Vec<u8>> {
        let (shared, name, kept) = (Arc::clone(node), cx.node.to_owned(), Arc::clone(&slot));
        let (ambient, emitted) = Ambient::current().keeping();
        let asks = visit.asks_handle();
        let blocks = shared.exec_blocks();
        Box::pin(async move {
            let Some(prep) = kept.lock().take() else { return ran_twice() };
            let ran = exec_blocking(blocks, move |cancel| {
                let _inside = ambient.enter();
                let result = exec_with_retry(
                    shared.retry(),
                    &name,
                    None,
                    cancel,
                    &prep,
                    |p, c| shared.exec(p, c),
                    |p, e, c| shared.exec_fallback(p, e, c),
                );
                (prep, result)
            })
            .await;
            let bytes = outcome_bytes(match ran {
                Ok((prep, result)) => {
                    *kept.lock() = Some(prep);
                    outcome(result.map(|(exec, _)| exec).map_err(|h| h.failure), Some(&asks))
                }
                Err(failure) => Outcome::Failed(failure),
            });
            with_kept(emitted, bytes)
        })
    };
    let exec = exec_steps::<N::Exec>(steps, visit, cx, make).await?;
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
    let make = || -> BoxFuture<'static, Vec<u8>> {
        let (shared, name, kept, asks) = (Arc::clone(node), cx.node.to_owned(), Arc::clone(&slot), visit.asks_handle());
        let (ambient, emitted) = Ambient::current().keeping();
        Box::pin(ambient.scope(async move {
            let Some(prep) = kept.lock().take() else { return ran_twice() };
            let (node, held) = (&*shared, &prep);
            let first = ExecContext::new(&name, 1, node.retry().max_attempts(), None);
            let result = attempts_async(
                node.retry(),
                first,
                |ctx| async move { node.exec(held, &ctx).await },
                |err, ctx| async move { node.exec_fallback(held, err, &ctx).await },
            )
            .await;
            *kept.lock() = Some(prep);
            with_kept(emitted, outcome_bytes(outcome(result, Some(&asks))))
        }))
    };
    let exec = exec_steps::<N::Exec>(steps, visit, cx, make).await?;
    let prep = slot.lock().take().ok_or_else(|| cx.error(lost_prep()))?;
    let mut guard = locked!(store);
    match caught(Stage::Post, guarded(node.post(&mut guard, prep, exec)).await) {
        Ok(action) => Ok(finish(action)),
        Err(h) => Err(cx.fail(h)),
    }
}

/// A node of a sync `flow!` machine in a journaled run: its `exec` a step,
/// run on a scoped thread while this one drives the journal (`bridge.rs`).
pub(crate) fn run_node_steps_sync<S, N: Node<S>>(
    node: &N,
    store: &mut S,
    cx: NodeCx<'_>,
    visit: &Visit<'_>,
    steps: &dyn StepJournal,
) -> Result<N::Action, Error> {
    if !steps.blocks_anywhere() {
        return Err(cannot_block(visit, &cx));
    }
    let prep = call_stage(Stage::Prep, || node.prep(store, cx.params)).map_err(|h| cx.error(h))?;
    // `prep` goes into each step's thread and comes back.
    let slot = Mutex::new(Some(prep));
    let ran = std::thread::scope(|scope| {
        let bridge = Bridge::new(scope);
        let make = || {
            let (asks, slot, name) = (visit.asks_handle(), &slot, cx.node);
            let (ambient, emitted) = Ambient::current().keeping();
            bridge.step(move || {
                let Some(prep) = slot.lock().take() else { return ran_twice() };
                let _inside = ambient.enter();
                let result = exec_with_retry(
                    node.retry(),
                    name,
                    None,
                    None,
                    &prep,
                    |p, c| node.exec(p, c),
                    |p, e, c| node.exec_fallback(p, e, c),
                );
                *slot.lock() = Some(prep);
                let bytes = outcome_bytes(outcome(result.map(|(exec, _)| exec).map_err(|h| h.failure), Some(&asks)));
                with_kept(emitted, bytes)
            })
        };
        let ran = drive_here(exec_steps::<N::Exec>(steps, visit, &cx, make));
        bridge.quit();
        ran
    });
    let exec = ran.ok_or_else(|| not_multi_thread(visit, &cx))?.map_err(|e| *e)?;
    let prep = slot.lock().take().ok_or_else(|| cx.error(lost_prep()))?;
    call_stage(Stage::Post, || node.post(store, prep, exec)).map_err(|h| cx.error(h))
}

/// The error of a sync `flow!` machine whose journal's futures cannot be
/// driven from its thread.
pub(crate) fn cannot_block(visit: &Visit<'_>, cx: &NodeCx<'_>) -> Error {
    Error::Resume {
        flow: cx.flow.to_string(),
        run: visit.run().to_owned(),
        reason: format!(
            "node `{}` is in a sync `flow!` flow, which this journal cannot run inside a runtime flow: \
             make the `flow!` flow an `async struct`, or serve it as a flow of its own",
            cx.node
        ),
    }
}

/// The error of a sync `flow!` machine journaled outside a multi-thread runtime.
pub(crate) fn not_multi_thread(visit: &Visit<'_>, cx: &NodeCx<'_>) -> Error {
    Error::Resume {
        flow: cx.flow.to_string(),
        run: visit.run().to_owned(),
        reason: format!(
            "node `{}` of a sync `flow!` flow runs in a journaled run only on a multi-thread tokio runtime \
             (`#[tokio::main]`, or make the flow an `async struct`)",
            cx.node
        ),
    }
}

/// An async `exec`'s attempts (the first one `first`), then its fallback:
/// the retry loop of async runs, with no cancel flag (a step runs to its end).
pub(crate) async fn attempts_async<'a, O, EF, FF>(
    retry: Retry,
    first: ExecContext<'a>,
    exec: impl Fn(ExecContext<'a>) -> EF,
    fallback: impl FnOnce(BoxError, ExecContext<'a>) -> FF,
) -> Result<O, Failure>
where
    EF: Future<Output = NodeResult<O>>,
    FF: Future<Output = NodeResult<O>>,
{
    let failure = match guarded(exec(first)).await {
        Ok(Ok(output)) => return Ok(output),
        Ok(Err(source)) => Failure::Returned { source, attempts: 1 },
        Err(payload) => Failure::panicked(payload),
    };
    retry_after_async(failure, retry, first, None, exec, fallback)
        .await
        .map(|(output, _)| output)
        .map_err(|h| h.failure)
}

/// Runs `work` (a sync `exec` and its retries) for a step: in place when it
/// is quick (`blocks` false), in place too on a multi-thread runtime, which
/// moves the thread's other tasks away meanwhile (a result that came back from
/// the blocking pool waited for the engine's connection to wake up, about
/// 40 ms on Restate), else on the blocking pool with a cancel flag.
pub(crate) async fn exec_blocking<T: Send + 'static>(
    blocks: bool,
    work: impl FnOnce(Option<&Cancel<'_>>) -> T + Send + 'static,
) -> Result<T, Failure> {
    if !blocks {
        return Ok(work(None));
    }
    if in_place() {
        return Ok(tokio::task::block_in_place(|| work(None)));
    }
    offload(move |cancel| work(Some(cancel))).await
}

/// How a step ended: its `exec` result, the question it asked (when the node
/// can pause: `asks`), or its failure.
pub(crate) fn outcome<E: Send + 'static>(result: Result<E, Failure>, asks: Option<&Mutex<Asks>>) -> Outcome {
    match result {
        Ok(exec) => match encode_value(&exec) {
            Ok(bytes) => Outcome::Done(bytes),
            Err(why) => Outcome::Failed(Failure::Returned {
                source: format!("its exec result cannot be journaled: {why}").into(),
                attempts: 1,
            }),
        },
        Err(Failure::Returned { source, attempts }) if is_interrupt(&*source) => match asks {
            Some(asks) => Outcome::Asked(Visit::asked_in(asks).unwrap_or_else(|| b"null".to_vec())),
            None => Outcome::Failed(Failure::Returned {
                source: "interrupt() cannot pause inside the items of a batch node in a journaled run".into(),
                attempts,
            }),
        },
        Err(failure) => Outcome::Failed(failure),
    }
}

/// Runs the node's `exec` through the journal (`make` makes each step) until
/// it finishes or fails; each question it asks is answered through the
/// journal, and `exec` runs again, as a new step, with the answers so far.
async fn exec_steps<E: Send + 'static>(
    steps: &dyn StepJournal,
    visit: &Visit<'_>,
    cx: &NodeCx<'_>,
    make: impl Fn() -> BoxFuture<'static, Vec<u8>>,
) -> Result<E, Box<Error>> {
    let journal_error = |reason: String| journal_error(visit, cx, reason);
    let mut answered = 0usize;
    loop {
        let name = match answered {
            0 => visit.step_name().to_owned(),
            n => format!("{} (answered {n})", visit.step_name()),
        };
        let bytes = steps.step(name, make()).await.map_err(journal_error)?;
        send_kept(&bytes);
        match read_outcome(&bytes) {
            Some(Outcome::Done(exec)) => {
                return decode_value(&exec)
                    .map_err(|why| journal_error(format!("a journaled result does not fit: {why}")));
            }
            Some(Outcome::Failed(failure)) => return Err(cx.fail(HookError::new(Stage::Exec, None, failure))),
            Some(Outcome::Asked(question)) => {
                answered += 1;
                let pause = format!("{} question {answered}", visit.step_name());
                let answer = steps.ask(pause, question).await.map_err(journal_error)?;
                visit.answered(answer);
            }
            None => return Err(journal_error("a journaled step this engine did not write".to_owned())),
        }
    }
}

/// Whether blocking work may run in place here: on a multi-thread runtime
/// (`block_in_place` moves the thread's other tasks away meanwhile).
fn in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// A failure of the journal itself (not of a step), for node `cx`.
pub(crate) fn journal_error(visit: &Visit<'_>, cx: &NodeCx<'_>, reason: String) -> Box<Error> {
    Box::new(Error::Checkpoint {
        flow: cx.flow.to_string(),
        run: visit.run().to_owned(),
        source: CheckpointError::Backend(format!("the journal of node `{}`: {reason}", cx.node)),
    })
}

fn ran_twice() -> Vec<u8> {
    failed_step("the step ran twice".to_owned(), 1)
}

/// A `prep` that neither came back from its step nor stayed.
fn lost_prep() -> HookError {
    HookError::new(
        Stage::Exec,
        None,
        Failure::Returned { source: "the step did not give `prep` back".into(), attempts: 1 },
    )
}
