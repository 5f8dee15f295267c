//! How `exec` is attempted: the [`Retry`] policy, what each attempt knows
//! ([`ExecContext`]), and the one retry loop (sync and async): a failure or a
//! panic is retried as the policy says, waits end early when the run is
//! cancelled, then the fallback runs.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;

use super::hooks::call;
use crate::context::{Cancel, is_cancelled};
use crate::durable::is_interrupt;
use crate::error::{BoxError, Failure, HookError, NodeResult, Panicked, Stage, panic_message};

/// How often a node's `exec` is attempted and how long to wait between attempts.
///
/// ```
/// use std::time::Duration;
/// use minllm::Retry;
///
/// let retry = Retry::attempts(3).wait(Duration::from_millis(500));
/// assert_eq!(retry.attempts, 3);
/// assert_eq!(Retry::default(), Retry::attempts(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// How many times `exec` runs at most, the first run included (what
    /// PocketFlow calls `max_retries`). `0` counts as `1`.
    pub attempts: u32,
    /// How long to wait after a failed attempt before the next one.
    pub wait: Duration,
}

impl Retry {
    /// One attempt, no wait: the default.
    pub const ONCE: Retry = Retry { attempts: 1, wait: Duration::ZERO };

    /// `n` attempts at most, no wait between them.
    #[inline]
    pub const fn attempts(n: u32) -> Retry {
        Retry { attempts: n, wait: Duration::ZERO }
    }

    /// The same attempts, waiting `wait` after each failure.
    #[inline]
    pub const fn wait(self, wait: Duration) -> Retry {
        Retry { wait, ..self }
    }

    #[inline]
    pub(crate) fn max_attempts(&self) -> u32 {
        self.attempts.max(1)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::ONCE
    }
}

/// What `exec` knows about the current attempt: its number (the Python
/// `cur_retry` plus one), how many there can be, and the batch item.
///
/// Each item of a parallel batch gets its own context, so the attempt number is
/// right even when items run at the same time.
#[derive(Debug, Clone, Copy)]
pub struct ExecContext<'a> {
    pub(crate) node: &'a str,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) item: Option<usize>,
}

impl<'a> ExecContext<'a> {
    /// A context for calling `exec` by hand, e.g. in a unit test of a node.
    #[inline]
    pub fn new(node: &'a str, attempt: u32, max_attempts: u32, item: Option<usize>) -> Self {
        ExecContext { node, attempt, max_attempts, item }
    }

    /// The attempt being made: 1 for the first run, 2 for the first retry, ...
    #[inline]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many attempts can be made in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a failure now goes to `exec_fallback` instead of a retry.
    #[inline]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The index of the batch item being processed, for batch nodes.
    #[inline]
    pub fn item(&self) -> Option<usize> {
        self.item
    }

    /// The node's name in its flow.
    #[inline]
    pub fn node(&self) -> &str {
        self.node
    }
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
        if is_cancelled(cancel) || is_interrupt(&*source) {
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
        tracing::warn!(node, item, attempt, max_attempts, error = %source, "exec failed; retrying");
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

/// The async twin of [`retry_after`]: attempts 2.. and the fallback, after the
/// first attempt (`ctx`) failed. The async runners make their first attempt in
/// place and call this, boxed, only after a failure, so that their futures stay
/// as small as the first attempt. `exec` and `fallback` make each attempt's
/// future from its context, which they own.
pub(crate) async fn retry_after_async<'a, O, E, EF, F, FF>(
    first: Failure,
    retry: Retry,
    ctx: ExecContext<'a>,
    cancel: Option<&'a Cancel<'a>>,
    exec: E,
    fallback: F,
) -> Result<(O, u32), HookError>
where
    E: Fn(ExecContext<'a>) -> EF,
    EF: Future<Output = NodeResult<O>>,
    F: FnOnce(BoxError, ExecContext<'a>) -> FF,
    FF: Future<Output = NodeResult<O>>,
{
    let ExecContext { node, item, max_attempts, .. } = ctx;
    let mut attempt = 1;
    // A panicking attempt is retried like a failing one.
    let mut source = first.into_source();
    loop {
        // An interrupt pauses the run: no retry, no fallback.
        if is_cancelled(cancel) || is_interrupt(&*source) {
            return Err(HookError::new(Stage::Exec, item, Failure::from_fallback(source, attempt)));
        }
        if attempt >= max_attempts {
            let ctx = ExecContext { node, attempt, max_attempts, item };
            return match AssertUnwindSafe(fallback(source, ctx)).catch_unwind().await {
                Ok(Ok(v)) => Ok((v, attempt)),
                Ok(Err(source)) => Err(HookError::new(Stage::Exec, item, Failure::from_fallback(source, attempt))),
                Err(payload) => Err(HookError::new(Stage::Fallback, item, Failure::panicked(payload))),
            };
        }
        tracing::warn!(node, item, attempt, max_attempts, error = %source, "exec failed; retrying");
        if !retry.wait.is_zero() {
            tokio::time::sleep(retry.wait).await;
        }
        attempt += 1;
        let ctx = ExecContext { node, attempt, max_attempts, item };
        source = match AssertUnwindSafe(exec(ctx)).catch_unwind().await {
            Ok(Ok(v)) => return Ok((v, attempt)),
            Ok(Err(source)) => source,
            Err(payload) => Box::new(Panicked(panic_message(payload))),
        };
    }
}

/// Waits `wait` before a retry; returns early when `cancel` is set, so that a
/// cancelled run does not sit out its retry waits.
fn pause(wait: Duration, cancel: Option<&Cancel<'_>>) {
    match cancel {
        None => std::thread::sleep(wait),
        Some(cancel) => {
            wait_between_attempts(wait, || cancel.is_cancelled());
        }
    }
}

/// The wait between two attempts, ended early by `stop`, which it asks every
/// [`WAIT_SLICE`]; returns whether `stop` ended it. Sync runs stop on their
/// cancel flag; the Python package stops on Ctrl-C. A wait too long to add to
/// the clock lasts until stopped.
#[doc(hidden)]
pub fn wait_between_attempts(wait: Duration, mut stop: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now().checked_add(wait);
    loop {
        let left = deadline.map_or(WAIT_SLICE, |d| d.saturating_duration_since(Instant::now()));
        if stop() {
            return true;
        }
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(WAIT_SLICE));
    }
}

/// How often a wait between attempts asks whether to stop.
const WAIT_SLICE: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_context_tells_the_attempt_and_where_it_runs() {
        let first = ExecContext::new("ask", 1, 3, Some(4));
        assert_eq!((first.attempt(), first.max_attempts(), first.item(), first.node()), (1, 3, Some(4), "ask"));
        assert!(!first.is_last_attempt());
        assert!(ExecContext::new("ask", 3, 3, None).is_last_attempt());
        assert!(ExecContext::new("ask", 1, 1, None).is_last_attempt());
    }

    #[test]
    fn a_wait_between_attempts_ends_when_told_to_stop() {
        let mut asked = 0;
        let stopped = wait_between_attempts(Duration::from_secs(3600), || {
            asked += 1;
            asked == 3
        });
        assert!(stopped, "the hour's wait ended when told");
        assert_eq!(asked, 3, "asked again after being told to stop");
        // A wait that is never stopped runs to its end, asking on the way.
        let mut asked = 0;
        assert!(!wait_between_attempts(Duration::from_millis(30), || {
            asked += 1;
            false
        }));
        assert!(asked >= 2, "asked {asked} times");
        // Too long to add to the clock: waits until stopped.
        assert!(wait_between_attempts(Duration::MAX, || true));
    }
}
