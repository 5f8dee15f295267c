//! The rules every hook is called by: an error or a panic becomes a failure
//! tagged with its stage; blocking work moves off an async runtime's workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::context::Cancel;
use crate::error::{Failure, HookError, NodeResult, Stage};

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

/// An async hook's future with its panics caught: await it and hand the
/// result to [`caught`]. No state machine of its own, so a node's future is
/// its hooks' futures and little else.
#[inline(always)]
pub(crate) fn guarded<F: std::future::Future>(hook: F) -> futures_util::future::CatchUnwind<AssertUnwindSafe<F>> {
    use futures_util::FutureExt as _;
    AssertUnwindSafe(hook).catch_unwind()
}

/// What a [`guarded`] hook gave, as a [`HookError`] of `stage` when it failed.
#[inline(always)]
pub(crate) fn caught<T>(stage: Stage, result: std::thread::Result<NodeResult<T>>) -> Result<T, HookError> {
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(HookError::new(stage, None, Failure::Returned { source, attempts: 1 })),
        Err(payload) => Err(HookError::new(stage, None, Failure::panicked(payload))),
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
