//! The one runner of each kind of node: `prep`, then `exec` with its retries
//! and fallback, then `post`, every hook's panic caught. Runtime flows,
//! `flow!` code and nodes run alone all call these; only how the store is
//! reached differs (an [`Access`] or an [`AsyncAccess`]).

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::hooks::{call, call_stage, caught, guarded, offload};
use super::retry::{exec_with_retry, retry_after, retry_after_async};
use super::{AsyncNode, ExecContext, Node, Retry};
use crate::access::{Access, AsyncAccess, locked};
use crate::context::{NO_FLOW, NodeCx, Root, short_type_name};
use crate::durable::{Ambient, ExecRecord, Visit, decode_value, encode_value};
use crate::error::{Error, Failure, Stage};

/// Runs a sync node in a sync run.
#[inline(always)]
pub(crate) fn run_node<S, N: Node<S>>(node: &N, mut store: impl Access<S>, cx: NodeCx<'_>) -> Result<N::Action, Error> {
    let prep = store.with_store(|s| call_stage(Stage::Prep, || node.prep(s, cx.params))).map_err(|h| cx.error(h))?;
    // The first attempt inline; retries and the fallback in a cold function.
    let retry = node.retry();
    let first = ExecContext::new(cx.node, 1, retry.max_attempts(), None);
    let (prep, exec) = match call(|| node.exec(&prep, &first)) {
        Ok(exec) => {
            cx.record_attempts(1);
            (prep, exec)
        }
        Err(failure) => retry_node(node, failure, retry, prep, cx)?,
    };
    store.with_store(|s| call_stage(Stage::Post, || node.post(s, prep, exec))).map_err(|h| cx.error(h))
}

/// [`run_node`] in a checkpointed run: `interrupt` sees the visit while the
/// hooks run, and `exec`'s result is recorded before `post` runs, or taken
/// from the record when an earlier try of this visit got that far.
#[cold]
#[inline(never)]
pub(crate) fn run_node_visit<S, N: Node<S>>(
    node: &N,
    mut store: impl Access<S>,
    cx: NodeCx<'_>,
    visit: &Visit<'_>,
) -> Result<N::Action, Error> {
    let prep = store.with_store(|s| call_stage(Stage::Prep, || node.prep(s, cx.params))).map_err(|h| cx.error(h))?;
    let exec = match replay_exec::<N::Exec>(visit, &cx)? {
        Some(exec) => exec,
        None => {
            let before = visit.answers_taken();
            let exec = |p: &N::Prep, c: &ExecContext<'_>| node.exec(p, c);
            let fallback = |p: &N::Prep, e, c: &ExecContext<'_>| node.exec_fallback(p, e, c);
            let (exec, attempts) = exec_with_retry(node.retry(), cx.node, None, cx.cancel, &prep, exec, fallback)
                .map_err(|h| cx.error(h))?;
            cx.record_attempts(attempts);
            record_exec(visit, &cx, visit.answers_taken() - before, &exec)?;
            exec
        }
    };
    store.with_store(|s| call_stage(Stage::Post, || node.post(s, prep, exec))).map_err(|h| cx.error(h))
}

/// Attempts 2.. and the fallback of a sync node. It owns `prep` while it works
/// so that the hot path never takes its address.
#[cold]
#[inline(never)]
fn retry_node<S, N: Node<S>>(
    node: &N,
    failure: Failure,
    retry: Retry,
    prep: N::Prep,
    cx: NodeCx<'_>,
) -> Result<(N::Prep, N::Exec), Error> {
    let exec = |p: &N::Prep, c: &ExecContext<'_>| node.exec(p, c);
    let fallback = |p: &N::Prep, e, c: &ExecContext<'_>| node.exec_fallback(p, e, c);
    let (exec, attempts) =
        retry_after(failure, retry, cx.node, None, cx.cancel, &prep, exec, fallback).map_err(|h| cx.error(h))?;
    cx.record_attempts(attempts);
    Ok((prep, exec))
}

/// Runs an async node's three hooks. The first attempt of `exec` is awaited
/// in place; retries and the fallback are a boxed future made after a failure.
///
/// The async runners fail with a boxed [`Error`]: a node's result moves
/// through every future around it, and a pointer moves faster than the error.
/// `finish` turns the action into what the caller wants (a label for runtime
/// flows), inside the node's own future rather than in one wrapped around it.
///
/// A plain `fn` returning an `async move` block rather than an `async fn`: the
/// block uses its captures where they are, where an `async fn` would first
/// move every argument into the future's locals (a copy per node, read back
/// at once, which stalls the CPU's store forwarding).
#[allow(clippy::manual_async_fn)]
pub(crate) fn run_async_node<'a, S, N, T>(
    node: &'a N,
    mut store: impl AsyncAccess<S> + 'a,
    cx: &'a NodeCx<'a>,
    finish: impl FnOnce(N::Action) -> T + 'a,
) -> impl Future<Output = Result<T, Box<Error>>> + 'a
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    async move {
        let prep = {
            let guard = locked!(store);
            caught(Stage::Prep, guarded(node.prep(&guard, cx.params)).await)
        }
        .map_err(|h| cx.error(h))?;
        // The policy is asked again after a failure rather than kept in the
        // future while the first attempt runs.
        let first = ExecContext::new(cx.node, 1, node.retry().max_attempts(), None);
        let failure = match guarded(node.exec(&prep, &first)).await {
            Ok(Ok(exec)) => {
                cx.record_attempts(1);
                Ok(exec)
            }
            Ok(Err(source)) => Err(Failure::Returned { source, attempts: 1 }),
            Err(payload) => Err(Failure::panicked(payload)),
        };
        let exec = match failure {
            Ok(exec) => exec,
            Err(failure) => retry_async_node(node, failure, node.retry(), first, &prep, cx).await?,
        };
        let mut guard = locked!(store);
        match caught(Stage::Post, guarded(node.post(&mut guard, prep, exec)).await) {
            Ok(action) => Ok(finish(action)),
            Err(h) => Err(cx.fail(h)),
        }
    }
}

/// [`run_async_node`] in a checkpointed run (the node's `visit`): `exec`'s
/// result recorded by an earlier try of this visit, or a new one, recorded
/// before `post` runs. Its callers choose it over [`run_async_node`] when
/// there is a visit, so that the plain runner checks nothing.
pub(crate) async fn run_async_visit<S, N, T>(
    node: &N,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
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
    let exec = match replay_exec::<N::Exec>(visit, cx)? {
        Some(exec) => exec,
        None => {
            let before = visit.answers_taken();
            let first = ExecContext::new(cx.node, 1, node.retry().max_attempts(), None);
            let exec = match guarded(node.exec(&prep, &first)).await {
                Ok(Ok(exec)) => exec,
                Ok(Err(source)) => {
                    let failure = Failure::Returned { source, attempts: 1 };
                    retry_async_node(node, failure, node.retry(), first, &prep, cx).await?
                }
                Err(payload) => {
                    retry_async_node(node, Failure::panicked(payload), node.retry(), first, &prep, cx).await?
                }
            };
            record_exec(visit, cx, visit.answers_taken() - before, &exec)?;
            exec
        }
    };
    let mut guard = locked!(store);
    match caught(Stage::Post, guarded(node.post(&mut guard, prep, exec)).await) {
        Ok(action) => Ok(finish(action)),
        Err(h) => Err(cx.fail(h)),
    }
}

/// The `exec` result an earlier try of this visit recorded, if any.
fn replay_exec<E: Send + 'static>(visit: &Visit<'_>, cx: &NodeCx<'_>) -> Result<Option<E>, Error> {
    let Some(record) = visit.recorded(None).map_err(|source| visit_error(visit, cx, source))? else { return Ok(None) };
    let (taken, bytes) = ExecRecord::read(&record).map_err(|reason| not_checkpointable(visit, cx, reason))?;
    visit.skip_answers(taken);
    decode_value(bytes).map(Some).map_err(|reason| not_checkpointable(visit, cx, reason))
}

/// Records an `exec` result (which took `taken` interrupt answers) before `post`.
fn record_exec<E: Send + 'static>(visit: &Visit<'_>, cx: &NodeCx<'_>, taken: usize, exec: &E) -> Result<(), Error> {
    let bytes = encode_value(exec).map_err(|reason| not_checkpointable(visit, cx, reason))?;
    visit.record(None, &ExecRecord::write(taken, &bytes)).map_err(|source| visit_error(visit, cx, source))
}

fn visit_error(visit: &Visit<'_>, cx: &NodeCx<'_>, source: crate::error::CheckpointError) -> Error {
    Error::Checkpoint { flow: cx.flow.to_string(), run: visit.run().to_owned(), source }
}

fn not_checkpointable(visit: &Visit<'_>, cx: &NodeCx<'_>, reason: String) -> Error {
    Error::NotCheckpointable {
        flow: cx.flow.to_string(),
        run: visit.run().to_owned(),
        what: format!("the exec result of node `{}`", cx.node),
        reason,
    }
}

/// Attempts 2.. and the fallback of an async node, boxed: the node's own
/// future holds only its first attempt.
#[cold]
fn retry_async_node<'a, S, N>(
    node: &'a N,
    failure: Failure,
    retry: Retry,
    first: ExecContext<'a>,
    prep: &'a N::Prep,
    cx: &'a NodeCx<'a>,
) -> BoxFuture<'a, Result<N::Exec, Box<Error>>>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    Box::pin(async move {
        let (exec, attempts) = retry_after_async(
            failure,
            retry,
            first,
            cx.cancel,
            |ctx| async move { node.exec(prep, &ctx).await },
            |err, ctx| async move { node.exec_fallback(prep, err, &ctx).await },
        )
        .await
        .map_err(|h| cx.error(h))?;
        cx.record_attempts(attempts);
        Ok(exec)
    })
}

/// Runs a sync node in an async run: `prep` and `post` in place on the task
/// (holding the store), `exec` as [`Node::exec_blocks`] says:
///
/// - a blocking `exec` on tokio's blocking pool with its retries, so that it
///   never stalls the runtime's other tasks; dropping the run lets the attempt
///   in flight finish and stops the rest;
/// - a quick one in place on the task, attempt by attempt, the waits between
///   attempts async (dropping the run ends them).
pub(crate) async fn run_offloaded_node<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
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
    let (prep, exec) = if !node.exec_blocks() {
        let retry = node.retry();
        let first = ExecContext::new(cx.node, 1, retry.max_attempts(), None);
        match call(|| node.exec(&prep, &first)) {
            Ok(exec) => {
                cx.record_attempts(1);
                (prep, exec)
            }
            Err(failure) => retry_in_place(&**node, failure, retry, first, prep, cx).await?,
        }
    } else {
        // What `exec_on_pool` does, written out: awaiting it here would put its
        // future in this one's layout, which costs every quick transition
        // (measured: 432 -> 469 instructions).
        let (shared, name) = (Arc::clone(node), cx.node.to_owned());
        // `emit` reaches the run from the pool's thread too.
        let ambient = Ambient::current();
        let (prep, result) = offload(move |cancel| {
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
        .await
        .map_err(|f| f.into_error(cx.flow.to_string(), cx.node.to_owned(), Stage::Exec, None))?;
        let (exec, attempts) = result.map_err(|h| cx.error(h))?;
        cx.record_attempts(attempts);
        (prep, exec)
    };
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, prep, exec)).map(finish).map_err(|h| cx.fail(h))
}

/// A sync node's `exec` with its retries on tokio's blocking pool; `prep`
/// goes there and comes back with the result.
async fn exec_on_pool<S, N>(node: &Arc<N>, prep: N::Prep, cx: &NodeCx<'_>) -> Result<PrepExec<S, N>, Box<Error>>
where
    S: Send + Sync + 'static,
    N: Node<S>,
{
    let (shared, name) = (Arc::clone(node), cx.node.to_owned());
    // `interrupt` and `emit` reach the run from the pool's thread too.
    let ambient = Ambient::current();
    let (prep, result) = offload(move |cancel| {
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
    .await
    .map_err(|f| f.into_error(cx.flow.to_string(), cx.node.to_owned(), Stage::Exec, None))?;
    let (exec, attempts) = result.map_err(|h| cx.error(h))?;
    cx.record_attempts(attempts);
    Ok((prep, exec))
}

/// [`run_offloaded_node`] in a checkpointed run (the node's `visit`):
/// `exec`'s recorded result, or a new one on the pool (or in place, as
/// [`Node::exec_blocks`] says) recorded before `post`. Its callers choose it
/// when there is a visit.
pub(crate) async fn run_offloaded_visit<S, N, T>(
    node: &Arc<N>,
    mut store: impl AsyncAccess<S>,
    cx: &NodeCx<'_>,
    visit: &Visit<'_>,
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
    let (prep, exec) = match replay_exec::<N::Exec>(visit, cx)? {
        Some(exec) => (prep, exec),
        None => {
            let before = visit.answers_taken();
            let (prep, exec) = if node.exec_blocks() {
                exec_on_pool(node, prep, cx).await?
            } else {
                let exec = |p: &N::Prep, c: &ExecContext<'_>| node.exec(p, c);
                let fallback = |p: &N::Prep, e, c: &ExecContext<'_>| node.exec_fallback(p, e, c);
                let (exec, _) = exec_with_retry(node.retry(), cx.node, None, cx.cancel, &prep, exec, fallback)
                    .map_err(|h| cx.error(h))?;
                (prep, exec)
            };
            record_exec(visit, cx, visit.answers_taken() - before, &exec)?;
            (prep, exec)
        }
    };
    let mut guard = locked!(store);
    call_stage(Stage::Post, || node.post(&mut guard, prep, exec)).map(finish).map_err(|h| cx.fail(h))
}

/// A sync node's `prep` given back with its `exec` result.
type PrepExec<S, N> = (<N as Node<S>>::Prep, <N as Node<S>>::Exec);

/// Attempts 2.. and the fallback of a sync node whose `exec` runs in place in
/// an async run: the waits between attempts are async. `prep` is held in a
/// lock (uncontended) so that the future is `Send` with a `Prep` that is only
/// `Send`.
#[cold]
fn retry_in_place<'a, S, N>(
    node: &'a N,
    failure: Failure,
    retry: Retry,
    first: ExecContext<'a>,
    prep: N::Prep,
    cx: &'a NodeCx<'a>,
) -> BoxFuture<'a, Result<PrepExec<S, N>, Box<Error>>>
where
    S: Send + Sync,
    N: Node<S>,
{
    Box::pin(async move {
        let prep = parking_lot::Mutex::new(prep);
        let held = &prep;
        let (exec, attempts) = retry_after_async(
            failure,
            retry,
            first,
            cx.cancel,
            // Lazy: the attempt runs when its future is polled, inside the
            // loop's panic guard.
            |ctx| async move { node.exec(&held.lock(), &ctx) },
            |err, ctx| async move { node.exec_fallback(&held.lock(), err, &ctx) },
        )
        .await
        .map_err(|h| cx.error(h))?;
        cx.record_attempts(attempts);
        Ok((prep.into_inner(), exec))
    })
}

/// [`Node::run`]: the node outside any flow.
pub(crate) fn run_node_alone<S, N: Node<S>>(node: &N, store: &mut S) -> Result<N::Action, Error> {
    run_node(node, store, Root::new(NO_FLOW).cx(short_type_name::<N>()))
}

/// [`AsyncNode::run_async`]: the node outside any flow.
pub(crate) async fn run_async_node_alone<S, N>(node: &N, store: &mut S) -> Result<N::Action, Error>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    let root = Root::new(NO_FLOW);
    run_async_node(node, store, &root.cx(short_type_name::<N>()), |action| action).await.map_err(|e| *e)
}
