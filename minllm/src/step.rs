//! What a flow runs as one step (a node, a batch node, a nested flow), erased to
//! one object-safe trait, and the hook-calling rules every step shares: panics
//! become errors, `exec` is retried, the fallback runs after the last attempt.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::{Action, Label};
use crate::error::{BoxError, Error, Failure, HookError, NodeResult, Stage};
use crate::node::{AsyncNode, ExecContext, Node, Retry};
use crate::params::Params;

/// One flow of a [`FlowPath`]: its name and, for a batch flow's runs, the item.
#[derive(Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub(crate) name: &'a str,
    pub(crate) item: Option<usize>,
}

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        match self.item {
            Some(i) => write!(f, "[{i}]"),
            None => Ok(()),
        }
    }
}

/// The path of flows a step runs in, printed as `outer > batch[3] > inner`.
///
/// A path links to its parent's; the flows a run enters in place (nested
/// flows, without native recursion) are a slice of the runner's own.
#[derive(Clone, Copy)]
#[doc(hidden)]
pub struct FlowPath<'a> {
    parent: Option<&'a FlowPath<'a>>,
    head: Seg<'a>,
    tail: &'a [Seg<'a>],
}

impl<'a> FlowPath<'a> {
    #[inline]
    pub fn root(name: &'a str) -> Self {
        FlowPath { parent: None, head: Seg { name, item: None }, tail: &[] }
    }

    #[inline]
    pub(crate) fn child(&'a self, name: &'a str, item: Option<usize>) -> FlowPath<'a> {
        FlowPath { parent: Some(self), head: Seg { name, item }, tail: &[] }
    }

    /// This path followed by the flows `inner`.
    #[inline]
    pub(crate) fn extended(&'a self, inner: &'a [Seg<'a>]) -> FlowPath<'a> {
        match inner.split_first() {
            None => *self,
            Some((head, tail)) => FlowPath { parent: Some(self), head: *head, tail },
        }
    }

    /// Whether this is the path of an outermost flow.
    #[inline]
    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none() && self.tail.is_empty()
    }
}

impl fmt::Display for FlowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Outermost first, without recursion: paths can be very long.
        let mut chain = vec![self];
        while let Some(parent) = chain.last().and_then(|p| p.parent) {
            chain.push(parent);
        }
        for (i, path) in chain.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{}", path.head)?;
            for seg in path.tail {
                write!(f, " > {seg}")?;
            }
        }
        Ok(())
    }
}

/// Native recursion (a batch flow inside a batch flow's inner flow, and so on)
/// stops with [`Error::TooDeep`] before the thread's stack runs out. Outermost
/// runs are never refused, whatever their thread's stack.
pub(crate) fn check_stack(path: &FlowPath<'_>) -> Result<(), Error> {
    /// What a nested run keeps free for the nodes it runs.
    const RESERVE: usize = 128 * 1024;
    if path.is_root() {
        return Ok(());
    }
    match stacker::remaining_stack() {
        Some(left) if left < RESERVE => Err(Error::TooDeep { flow: path.to_string(), left }),
        _ => Ok(()),
    }
}

/// Set when a parallel sibling failed; checked between steps, items and retries.
#[doc(hidden)]
pub struct Cancel<'a> {
    flag: AtomicBool,
    parent: Option<&'a Cancel<'a>>,
}

impl<'a> Cancel<'a> {
    pub(crate) fn new(parent: Option<&'a Cancel<'a>>) -> Self {
        Cancel { flag: AtomicBool::new(false), parent }
    }

    pub(crate) fn cancel(&self) {
        // Release/Acquire: whoever sees the flag also sees the error stored before it.
        self.flag.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.parent.is_some_and(Cancel::is_cancelled)
    }
}

pub(crate) fn is_cancelled(cancel: Option<&Cancel<'_>>) -> bool {
    cancel.is_some_and(Cancel::is_cancelled)
}

/// Where a step runs: its flow path, its name, the params, the cancel flag of the
/// enclosing parallel branch, and its tracing span.
#[derive(Clone, Copy)]
#[doc(hidden)]
pub struct StepCx<'a> {
    pub(crate) flow: &'a FlowPath<'a>,
    pub(crate) node: &'a str,
    pub(crate) params: &'a Params,
    pub(crate) cancel: Option<&'a Cancel<'a>>,
    pub(crate) span: &'a tracing::Span,
}

impl StepCx<'_> {
    #[inline]
    pub(crate) fn record_attempts(&self, attempts: u32) {
        if !self.span.is_disabled() {
            self.span.record("attempts", attempts);
        }
    }

    pub(crate) fn error(&self, hook: HookError) -> Error {
        hook.into_error(self.flow.to_string(), self.node.to_owned())
    }
}

/// What kind of step a node slot holds, for validation and diagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepKind {
    /// A [`Node`].
    Node,
    /// An [`AsyncNode`].
    AsyncNode,
    /// A [`Batch`](crate::Batch) run item by item.
    Batch,
    /// A [`Batch`](crate::Batch) run on threads.
    ParallelBatch,
    /// An [`AsyncBatch`](crate::AsyncBatch) run item by item.
    AsyncBatch,
    /// An [`AsyncBatch`](crate::AsyncBatch) run concurrently.
    ConcurrentBatch,
    /// A nested [`Flow`](crate::Flow).
    Flow,
    /// A [`BatchFlow`](crate::BatchFlow).
    BatchFlow,
    /// A step of another kind (e.g. a flow generated by `flow!`).
    Other,
}

impl StepKind {
    /// Whether the step can only run in async runs.
    pub fn is_async(self) -> bool {
        matches!(self, StepKind::AsyncNode | StepKind::AsyncBatch | StepKind::ConcurrentBatch)
    }
}

/// A step a flow can run, with its types erased. Implemented by the wrappers
/// minllm gives; users implement [`Node`], [`AsyncNode`] and the batch traits.
#[doc(hidden)]
pub trait DynStep<S>: Send + Sync + 'static {
    fn run(&self, store: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error>;
    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>>;
    fn kind(&self) -> StepKind;
    fn declared_actions(&self) -> Option<&'static [&'static str]>;
    /// The flow this step runs: itself for a nested flow, the inner flow of a
    /// batch flow. Validation and diagrams look inside it.
    fn inner_flow(&self) -> Option<&crate::flow::Flow<S>> {
        None
    }
    /// Moves the steps of the flows it holds into `into`, so that dropping a
    /// deeply nested flow needs no recursion.
    fn detach_inner(&mut self, _into: &mut Vec<Arc<dyn DynStep<S>>>) {}
}

/// Anything [`Flow::add`](crate::Flow::add) accepts: a [`Node`], an [`AsyncNode`],
/// a [`BatchNode`](crate::BatchNode) or [`AsyncBatchNode`](crate::AsyncBatchNode)
/// (run as its `mode` says), a [`Batch`](crate::Batch) or
/// [`AsyncBatch`](crate::AsyncBatch), a nested [`Flow`](crate::Flow) or a
/// [`BatchFlow`](crate::BatchFlow).
///
/// `M` only tells the implementations apart; type inference picks it.
pub trait IntoStep<S, M> {
    #[doc(hidden)]
    fn into_step(self) -> Arc<dyn DynStep<S>>;
}

#[doc(hidden)]
pub struct NodeMarker;
#[doc(hidden)]
pub struct AsyncNodeMarker;
#[doc(hidden)]
pub struct StepMarker;

impl<S: Send + Sync + 'static, N: Node<S>> IntoStep<S, NodeMarker> for N {
    fn into_step(self) -> Arc<dyn DynStep<S>> {
        Arc::new(NodeStep { node: Arc::new(self), store: PhantomData })
    }
}

impl<S: Send + Sync + 'static, N: AsyncNode<S>> IntoStep<S, AsyncNodeMarker> for N {
    fn into_step(self) -> Arc<dyn DynStep<S>> {
        Arc::new(AsyncNodeStep { node: self, store: PhantomData })
    }
}

impl<S, T: DynStep<S>> IntoStep<S, StepMarker> for T {
    fn into_step(self) -> Arc<dyn DynStep<S>> {
        Arc::new(self)
    }
}

/// Calls a hook, turning an error or a panic into a [`Failure`].
#[inline(always)]
pub(crate) fn call<T>(hook: impl FnOnce() -> NodeResult<T>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Failure::Returned { source, attempts: 1 }),
        Err(payload) => Err(Failure::panicked(payload)),
    }
}

/// Calls a hook as [`call`] does, tagging a failure with its stage.
#[inline(always)]
pub(crate) fn call_stage<T>(stage: Stage, hook: impl FnOnce() -> NodeResult<T>) -> Result<T, HookError> {
    call(hook).map_err(|f| HookError::new(stage, None, f))
}

/// Runs `exec` up to `retry.max_attempts()` times, then the fallback.
/// Returns the value and the number of attempts made.
///
/// The first attempt is inlined into the caller; retries, waits and the
/// fallback live in a cold function, so a node that succeeds costs no more than
/// the call itself.
#[inline(always)]
pub(crate) fn exec_with_retry<I: ?Sized, O>(
    retry: Retry,
    node: &str,
    item: Option<usize>,
    cancel: Option<&Cancel<'_>>,
    input: &I,
    exec: impl Fn(&I, &ExecContext<'_>) -> NodeResult<O>,
    fallback: impl FnOnce(&I, BoxError, &ExecContext<'_>) -> NodeResult<O>,
) -> Result<(O, u32), HookError> {
    let ctx = ExecContext { node, attempt: 1, max_attempts: retry.max_attempts(), item };
    match call(|| exec(input, &ctx)) {
        Ok(v) => Ok((v, 1)),
        Err(failure) => retry_after(failure, retry, node, item, cancel, input, exec, fallback),
    }
}

/// Attempts 2.. and the fallback, after the first attempt failed.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn retry_after<I: ?Sized, O>(
    first: Failure,
    retry: Retry,
    node: &str,
    item: Option<usize>,
    cancel: Option<&Cancel<'_>>,
    input: &I,
    exec: impl Fn(&I, &ExecContext<'_>) -> NodeResult<O>,
    fallback: impl FnOnce(&I, BoxError, &ExecContext<'_>) -> NodeResult<O>,
) -> Result<(O, u32), HookError> {
    let max_attempts = retry.max_attempts();
    let mut attempt = 1;
    let mut failure = first;
    loop {
        let ctx = ExecContext { node, attempt, max_attempts, item };
        let source = failure.into_source();
        if is_cancelled(cancel) {
            // A sibling failed: this item's result will be thrown away, so no
            // fallback (which may cost a call) runs for it.
            return Err(HookError::new(Stage::Exec, item, Failure::from_fallback(source, attempt)));
        }
        if attempt >= max_attempts {
            return match catch_unwind(AssertUnwindSafe(|| fallback(input, source, &ctx))) {
                Ok(Ok(v)) => Ok((v, attempt)),
                Ok(Err(source)) => Err(HookError::new(Stage::Exec, item, Failure::from_fallback(source, attempt))),
                Err(payload) => Err(HookError::new(Stage::Fallback, item, Failure::panicked(payload))),
            };
        }
        tracing::debug!(node, attempt, error = %source, "exec failed; retrying");
        pause(retry.wait, cancel);
        if is_cancelled(cancel) {
            // Cancelled during the wait: no further attempt.
            return Err(HookError::new(Stage::Exec, item, Failure::from_fallback(source, attempt)));
        }
        attempt += 1;
        let ctx = ExecContext { node, attempt, max_attempts, item };
        match call(|| exec(input, &ctx)) {
            Ok(v) => return Ok((v, attempt)),
            Err(f) => failure = f,
        }
    }
}

/// The async twin of [`exec_with_retry`], written as a macro so that the hook
/// futures may borrow the input and the context without higher-ranked closures.
macro_rules! exec_with_retry_async {
    ($retry:expr, $node:expr, $item:expr, $cancel:expr, |$ctx:ident| $exec:expr, |$err:ident, $fctx:ident| $fallback:expr $(,)?) => {{
        use ::futures_util::FutureExt as _;
        let retry: $crate::node::Retry = $retry;
        let max_attempts = retry.max_attempts();
        let item: Option<usize> = $item;
        let mut attempt = 1;
        loop {
            let ctx = $crate::node::ExecContext { node: $node, attempt, max_attempts, item };
            let result = {
                let $ctx = &ctx;
                ::std::panic::AssertUnwindSafe($exec).catch_unwind().await
            };
            let source: $crate::error::BoxError = match result {
                Ok(Ok(v)) => break Ok((v, attempt)),
                Ok(Err(source)) => source,
                // A panicking attempt is retried like a failing one.
                Err(payload) => ::std::boxed::Box::new($crate::error::Panicked($crate::error::panic_message(payload))),
            };
            if $crate::step::is_cancelled($cancel) {
                break Err($crate::error::HookError::new(
                    $crate::error::Stage::Exec,
                    item,
                    $crate::error::Failure::from_fallback(source, attempt),
                ));
            }
            if attempt >= max_attempts {
                let $err = source;
                let $fctx = &ctx;
                break match ::std::panic::AssertUnwindSafe($fallback).catch_unwind().await {
                    Ok(Ok(v)) => Ok((v, attempt)),
                    Ok(Err(source)) => Err($crate::error::HookError::new(
                        $crate::error::Stage::Exec,
                        item,
                        $crate::error::Failure::from_fallback(source, attempt),
                    )),
                    Err(payload) => Err($crate::error::HookError::new(
                        $crate::error::Stage::Fallback,
                        item,
                        $crate::error::Failure::panicked(payload),
                    )),
                };
            }
            ::tracing::debug!(node = $node, attempt, error = %source, "exec failed; retrying");
            if !retry.wait.is_zero() {
                ::tokio::time::sleep(retry.wait).await;
            }
            attempt += 1;
        }
    }};
}
pub(crate) use exec_with_retry_async;

/// Calls an async hook, turning an error or a panic into a [`HookError`].
pub(crate) async fn call_async<T>(
    stage: Stage,
    hook: impl std::future::Future<Output = NodeResult<T>>,
) -> Result<T, HookError> {
    use futures_util::FutureExt as _;
    match AssertUnwindSafe(hook).catch_unwind().await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(HookError::new(stage, None, Failure::Returned { source, attempts: 1 })),
        Err(payload) => Err(HookError::new(stage, None, Failure::panicked(payload))),
    }
}

/// Waits `wait` before a retry; returns early when `cancel` is set, so that a
/// cancelled run does not sit out its retry waits.
fn pause(wait: Duration, cancel: Option<&Cancel<'_>>) {
    /// How often a wait looks at the cancel flag.
    const SLICE: Duration = Duration::from_millis(10);
    let Some(cancel) = cancel else {
        std::thread::sleep(wait);
        return;
    };
    // A wait too long to add to the clock is a wait until cancelled.
    let deadline = Instant::now().checked_add(wait);
    loop {
        let left = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()));
        if left.is_zero() || cancel.is_cancelled() {
            return;
        }
        std::thread::sleep(left.min(SLICE));
    }
}

/// Runs blocking work on tokio's blocking pool, so a sync node in an async flow
/// does not stall the runtime's workers. Outside a runtime it runs in place.
///
/// The work gets a cancel flag that is set when the returned future is dropped
/// (a timeout, a failing sibling, a runtime shutting down): retries then stop
/// after the attempt in flight, and waits between attempts end at once.
pub(crate) async fn offload<T: Send + 'static>(
    work: impl FnOnce(&Cancel<'static>) -> T + Send + 'static,
) -> Result<T, Failure> {
    /// Sets the flag when the awaiting future goes away, finished or not.
    struct CancelOnDrop(Arc<Cancel<'static>>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.cancel();
        }
    }
    let flag = Arc::new(Cancel::new(None));
    let guard = CancelOnDrop(Arc::clone(&flag));
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn_blocking(move || work(&flag)).await.map_err(|e| {
            if e.is_panic() {
                Failure::panicked(e.into_panic())
            } else {
                Failure::Panicked {
                    message: "the blocking task was cancelled because the runtime shut down".to_owned(),
                    attempts: 1,
                }
            }
        }),
        Err(_) => Ok(work(&flag)),
    };
    drop(guard);
    result
}

/// A [`Node`] as a step.
pub(crate) struct NodeStep<N, S> {
    node: Arc<N>,
    store: PhantomData<fn(&mut S)>,
}

impl<S: Send + Sync + 'static, N: Node<S>> DynStep<S> for NodeStep<N, S> {
    fn run(&self, mut store: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error> {
        let node = &*self.node;
        let prep = store.with(|s| call_stage(Stage::Prep, || node.prep(s, cx.params))).map_err(|h| cx.error(h))?;
        let (exec, attempts) = exec_with_retry(
            node.retry(),
            cx.node,
            None,
            cx.cancel,
            &prep,
            |p, c| node.exec(p, c),
            |p, e, c| node.exec_fallback(p, e, c),
        )
        .map_err(|h| cx.error(h))?;
        cx.record_attempts(attempts);
        let action = store.with(|s| call_stage(Stage::Post, || node.post(s, prep, exec))).map_err(|h| cx.error(h))?;
        Ok(action.into_label())
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>> {
        Box::pin(async move { run_offloaded_node(&self.node, store, cx).await.map(Action::into_label) })
    }

    fn kind(&self) -> StepKind {
        StepKind::Node
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        N::Action::declared()
    }
}

/// Runs a sync node in an async run: `prep` and `post` on the task (holding the
/// store), `exec` with its retries on tokio's blocking pool.
pub(crate) async fn run_offloaded_node<S, N>(
    node: &Arc<N>,
    mut store: AsyncStoreRef<'_, S>,
    cx: StepCx<'_>,
) -> Result<N::Action, Error>
where
    S: Send + Sync + 'static,
    N: Node<S>,
{
    let prep = {
        let guard = store.lock().await;
        call_stage(Stage::Prep, || node.prep(&guard, cx.params))
    }
    .map_err(|h| cx.error(h))?;
    let (shared, name) = (Arc::clone(node), cx.node.to_owned());
    let (prep, result) = offload(move |cancel| {
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
    let mut guard = store.lock().await;
    call_stage(Stage::Post, || node.post(&mut guard, prep, exec)).map_err(|h| cx.error(h))
}

/// An [`AsyncNode`] as a step.
pub(crate) struct AsyncNodeStep<N, S> {
    node: N,
    store: PhantomData<fn(&mut S)>,
}

/// Runs an async node's three hooks on an async store handle.
pub(crate) async fn run_async_node<S, N>(
    node: &N,
    mut store: AsyncStoreRef<'_, S>,
    cx: StepCx<'_>,
) -> Result<N::Action, Error>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    let prep = {
        let guard = store.lock().await;
        call_async(Stage::Prep, node.prep(&guard, cx.params)).await
    }
    .map_err(|h| cx.error(h))?;
    let result: Result<_, HookError> =
        exec_with_retry_async!(node.retry(), cx.node, None, cx.cancel, |ctx| node.exec(&prep, ctx), |err, ctx| node
            .exec_fallback(&prep, err, ctx),);
    let (exec, attempts) = result.map_err(|h| cx.error(h))?;
    cx.record_attempts(attempts);
    let mut guard = store.lock().await;
    call_async(Stage::Post, node.post(&mut guard, prep, exec)).await.map_err(|h| cx.error(h))
}

impl<S: Send + Sync + 'static, N: AsyncNode<S>> DynStep<S> for AsyncNodeStep<N, S> {
    fn run(&self, _: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error> {
        Err(Error::AsyncInSyncRun { flow: cx.flow.to_string(), node: cx.node.to_owned() })
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>> {
        Box::pin(async move { run_async_node(&self.node, store, cx).await.map(Action::into_label) })
    }

    fn kind(&self) -> StepKind {
        StepKind::AsyncNode
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        N::Action::declared()
    }
}

static NO_SPAN: tracing::Span = tracing::Span::none();

/// A disabled span, for steps run while nothing listens.
#[inline]
pub(crate) fn no_span() -> &'static tracing::Span {
    &NO_SPAN
}

/// The flow name used in errors of nodes run outside any flow.
pub(crate) const NO_FLOW: &str = "(no flow)";

/// Runs `f` with the context of a node run outside any flow.
pub(crate) fn standalone<R>(node: &str, f: impl FnOnce(StepCx<'_>) -> R) -> R {
    let path = FlowPath::root(NO_FLOW);
    let params = Params::new();
    let span = tracing::Span::none();
    f(StepCx { flow: &path, node, params: &params, cancel: None, span: &span })
}

pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

pub(crate) fn run_node_alone<S, N: Node<S>>(node: &N, store: &mut S) -> Result<N::Action, Error> {
    standalone(short_type_name::<N>(), |cx| crate::typed::Step::<S, NodeMarker>::run_step(node, store, cx))
}

pub(crate) async fn run_async_node_alone<S, N>(node: &N, store: &mut S) -> Result<N::Action, Error>
where
    S: Send + Sync,
    N: AsyncNode<S>,
{
    let path = FlowPath::root(NO_FLOW);
    let params = Params::new();
    let span = tracing::Span::none();
    let cx = StepCx { flow: &path, node: short_type_name::<N>(), params: &params, cancel: None, span: &span };
    run_async_node(node, AsyncStoreRef::exclusive(store), cx).await
}

#[doc(hidden)]
pub struct BatchMarker;
#[doc(hidden)]
pub struct AsyncBatchMarker;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_async_steps_need_an_async_run() {
        let kinds = [
            (StepKind::Node, false),
            (StepKind::AsyncNode, true),
            (StepKind::Batch, false),
            (StepKind::ParallelBatch, false),
            (StepKind::AsyncBatch, true),
            (StepKind::ConcurrentBatch, true),
            (StepKind::Flow, false),
            (StepKind::BatchFlow, false),
            (StepKind::Other, false),
        ];
        for (kind, is_async) in kinds {
            assert_eq!(kind.is_async(), is_async, "{kind:?}");
        }
    }

    #[test]
    fn an_outermost_run_is_never_refused_for_its_stack() {
        // On a thread whose whole stack is below what a nested run keeps free.
        let ok = std::thread::Builder::new()
            .stack_size(96 * 1024)
            .spawn(|| {
                let root = FlowPath::root("f");
                let nested = root.child("sub", None);
                (check_stack(&root).is_ok(), check_stack(&nested).is_err(), root.is_root(), nested.is_root())
            })
            .expect("spawn")
            .join()
            .expect("no overflow");
        assert_eq!(ok, (true, true, true, false));
        let segs = [Seg { name: "inner", item: Some(2) }];
        let root = FlowPath::root("f");
        assert!(!root.extended(&segs).is_root());
        assert_eq!(root.extended(&segs).to_string(), "f > inner[2]");
    }
}
