//! How the items of a batch spread: over rayon's threads, over scoped threads
//! of the batch's own, or over concurrent futures. Everywhere, results keep the
//! items' order and the first error cancels the rest.

use parking_lot::Mutex;

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
    let cancel = Cancel::new(parent);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_error = parking_lot::Mutex::new(None);
    let outputs: Mutex<Vec<Option<O>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let worker = || {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i >= items.len() || cancel.is_cancelled() {
                return;
            }
            match f(i, &items[i], &cancel) {
                Ok(out) => outputs.lock()[i] = Some(out),
                Err(e) => {
                    first_error.lock().get_or_insert(e);
                    cancel.cancel();
                }
            }
        }
    };
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    if let Some(e) = first_error.into_inner() {
        return Err(Some(e));
    }
    outputs.into_inner().into_iter().collect::<Option<Vec<O>>>().ok_or(None)
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
