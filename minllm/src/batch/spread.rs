//! How the items of a batch spread: over rayon's threads, over scoped threads
//! of the batch's own, or over concurrent futures. Everywhere, results keep the
//! items' order and the first error cancels the rest.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rayon::prelude::*;

use crate::context::{Cancel, NodeCx};
use crate::error::{Error, HookError};

/// Runs `f` on every item on rayon's threads; results in input order. The first
/// error cancels the rest: no item starts after it. `Err(None)` means the parent
/// branch was cancelled (its own error is reported instead).
pub(crate) fn par_map<I, O, E, F>(items: &[I], parent: Option<&Cancel<'_>>, f: F) -> Result<Vec<O>, Option<E>>
where
    I: Sync,
    O: Send,
    E: Send,
    F: Fn(usize, &I, &Cancel<'_>) -> Result<O, E> + Sync,
{
    let cancel = Cancel::new(parent);
    let first_error = parking_lot::Mutex::new(None);
    let work = || {
        items
            .par_iter()
            .enumerate()
            .map(|(i, item)| {
                if cancel.is_cancelled() {
                    return None;
                }
                match f(i, item, &cancel) {
                    Ok(out) => Some(out),
                    Err(e) => {
                        first_error.lock().get_or_insert(e);
                        cancel.cancel();
                        None
                    }
                }
            })
            .collect::<Vec<Option<O>>>()
    };
    let outputs = work();
    if let Some(e) = first_error.into_inner() {
        return Err(Some(e));
    }
    // Without an error, only a cancelled parent skips items.
    outputs.into_iter().collect::<Option<Vec<O>>>().ok_or(None)
}

/// Runs `f` for every item on `threads` scoped threads of its own (not rayon's),
/// taking items in order; results in input order. The first error cancels the
/// rest: no item starts after it. `Err(None)` means the parent was cancelled.
///
/// Batch nodes with a thread limit use this: their threads live as long as the
/// batch runs, so nothing is left behind, whatever limits a program uses.
/// Batch flows use it for their branches: a branch holds the store while its
/// `prep` or `post` runs, and if that code used rayon on rayon's own threads,
/// a waiting thread could pick up another branch that needs the store too.
pub(crate) fn branches_on_threads<I, O, E, F>(
    items: &[I],
    threads: usize,
    parent: Option<&Cancel<'_>>,
    f: F,
) -> Result<Vec<O>, Option<E>>
where
    I: Sync,
    O: Send,
    E: Send,
    F: Fn(usize, &I, &Cancel<'_>) -> Result<O, E> + Sync,
{
    let spread = Spread::within(items.len(), parent);
    let work = |i: usize, cancel: &Cancel<'_>| f(i, &items[i], cancel);
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| spread.work(work));
        }
        spread.work(work);
    });
    spread.finish()
}

/// How many threads a pool of a batch's own starts when no limit is set: one
/// per item, up to [`DEFAULT_THREADS`]. Parallel [`BatchFlow`](crate::BatchFlow)s
/// and the Python package's parallel batches use it: their items mostly wait
/// on blocking calls (an LLM server), which overlap on threads whatever the
/// number of cores.
#[doc(hidden)]
pub fn default_threads(items: usize) -> usize {
    items.clamp(1, DEFAULT_THREADS)
}

/// The most threads [`default_threads`] gives a batch.
pub const DEFAULT_THREADS: usize = 32;

/// Items spread over worker threads: the next item to take, the outputs in
/// the items' order, the first error and the cancel flag it sets (no item
/// starts after it). Each worker thread calls [`work`](Spread::work); whoever
/// waits calls [`wait`](Spread::wait) and then [`finish`](Spread::finish).
///
/// The runtime runs its workers on scoped threads ([`branches_on_threads`]);
/// the Python package runs them on threads of its own and waits in slices, so
/// that Ctrl-C ends the wait at once.
#[doc(hidden)]
pub struct Spread<'a, O, E> {
    count: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    cancel: Cancel<'a>,
    failed: AtomicBool,
    outputs: Mutex<Vec<Option<O>>>,
    first_error: Mutex<Option<E>>,
    settled: Condvar,
    settled_lock: Mutex<()>,
}

impl<O, E> Spread<'static, O, E> {
    /// A spread of `count` items that nothing outside cancels.
    pub fn new(count: usize) -> Self {
        Spread::within(count, None)
    }
}

impl<'a, O, E> Spread<'a, O, E> {
    /// A spread of `count` items, cancelled with `parent` too.
    pub(crate) fn within(count: usize, parent: Option<&'a Cancel<'a>>) -> Self {
        Spread {
            count,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            cancel: Cancel::new(parent),
            failed: AtomicBool::new(false),
            outputs: Mutex::new((0..count).map(|_| None).collect()),
            first_error: Mutex::new(None),
            settled: Condvar::new(),
            settled_lock: Mutex::new(()),
        }
    }

    /// What a worker thread does: takes the next item and runs `f` on it,
    /// until no item is left; items taken after a failure (or a cancel) are
    /// skipped. `f` gets the spread's cancel flag, for the waits inside it.
    pub fn work(&self, f: impl Fn(usize, &Cancel<'_>) -> Result<O, E>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.count {
                return;
            }
            if !self.cancel.is_cancelled() {
                match f(i, &self.cancel) {
                    Ok(out) => self.outputs.lock()[i] = Some(out),
                    Err(e) => {
                        self.first_error.lock().get_or_insert(e);
                        self.failed.store(true, Ordering::SeqCst);
                        self.cancel.cancel();
                        self.wake();
                    }
                }
            }
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.count {
                self.wake();
            }
        }
    }

    fn wake(&self) {
        let _guard = self.settled_lock.lock();
        self.settled.notify_all();
    }

    /// Waits until every item is done or one failed, at most `timeout` when
    /// given; whether that happened.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let settled = || self.done.load(Ordering::SeqCst) >= self.count || self.failed.load(Ordering::SeqCst);
        let mut guard = self.settled_lock.lock();
        match timeout {
            Some(timeout) => {
                if !settled() {
                    self.settled.wait_for(&mut guard, timeout);
                }
            }
            None => {
                while !settled() {
                    self.settled.wait(&mut guard);
                }
            }
        }
        settled()
    }

    /// Stops the spread: no item starts after this.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The first error, if an item failed; the others are cancelled.
    pub fn take_error(&self) -> Option<E> {
        self.first_error.lock().take()
    }

    /// The outputs in the items' order, or the first error; `Err(None)` when
    /// items were skipped without an error (the spread was cancelled).
    pub fn finish(&self) -> Result<Vec<O>, Option<E>> {
        if let Some(e) = self.take_error() {
            return Err(Some(e));
        }
        let outputs = std::mem::take(&mut *self.outputs.lock());
        outputs.into_iter().collect::<Option<Vec<O>>>().ok_or(None)
    }
}

/// The error of a batch step: a hook's failure, or `None` when a failing sibling
/// branch cancelled it.
pub(crate) fn batch_error(cx: &NodeCx<'_>, failure: Option<HookError>) -> Error {
    match failure {
        Some(h) => cx.error(h),
        None => Error::Cancelled { flow: cx.flow.to_string() },
    }
}

/// How many futures a concurrent batch (an [`AsyncBatchNode`](crate::AsyncBatchNode) or a parallel
/// [`BatchFlow`](crate::BatchFlow) in an async run) keeps in flight when no
/// limit is set: enough for thousands of slow calls to overlap, while a batch
/// of a million items holds only this many futures at once.
pub const DEFAULT_CONCURRENCY: usize = 1024;

/// Runs the futures `make(0..count)` at most `limit` at a time ([`DEFAULT_CONCURRENCY`]
/// when `None`); results in index order. The first error drops (cancels) the ones still running.
pub(crate) async fn concurrent_map<O, E, Fut>(
    count: usize,
    limit: Option<usize>,
    mut make: impl FnMut(usize) -> Fut,
) -> Result<Vec<O>, E>
where
    Fut: Future<Output = Result<O, E>>,
{
    let limit = limit.unwrap_or(DEFAULT_CONCURRENCY).max(1);
    let mut outputs: Vec<Option<O>> = (0..count).map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    loop {
        while running.len() < limit && next < count {
            let i = next;
            // A combinator, not an `async` block: awaiting the future from an
            // `async` block would hold it twice (the capture and the awaited
            // copy), and a batch holds one per item in flight.
            running.push(make(i).map(move |out| (i, out)));
            next += 1;
        }
        match running.next().await {
            Some((i, Ok(out))) => outputs[i] = Some(out),
            Some((_, Err(e))) => return Err(e),
            None => break,
        }
    }
    Ok(outputs.into_iter().map(|o| o.expect("every index ran to completion")).collect())
}
