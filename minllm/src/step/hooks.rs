//! The rules every step calls its hooks by: a panic or an error becomes a
//! failure, `exec` is retried as the node's `Retry` says (waits cut short by
//! cancellation), then the fallback runs; blocking work moves off an async
//! runtime's workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Cancel, is_cancelled};
use crate::error::{BoxError, Failure, HookError, NodeResult, Stage};
use crate::node::{ExecContext, Retry};

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
