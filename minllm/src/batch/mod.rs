//! Batch nodes: `exec` once per item, sequentially, on threads or concurrently.
//! The runners are in [`run`]; how items spread over threads and futures is in
//! [`spread`].

mod run;
mod spread;
mod steps;
mod wrappers;

pub(crate) use run::{run_async_batch, run_batch, run_offloaded_batch};
pub use spread::{DEFAULT_CONCURRENCY, DEFAULT_THREADS, Spread, default_threads};
pub(crate) use spread::{branches_on_threads, concurrent_map};
pub(crate) use steps::{
    async_item_limit, run_async_batch_steps, run_batch_steps_sync, run_offloaded_batch_steps, run_remote_async_item,
    run_remote_item, sync_item_limit,
};
#[allow(deprecated)]
pub use wrappers::{AsyncBatch, Batch};

use std::future::Future;

use crate::action::Action;
use crate::context::{NO_FLOW, Root, short_type_name};
use crate::error::{BoxError, Error, NodeResult};
use crate::node::{ExecContext, Retry};
use crate::params::Params;
use crate::store::SharedStore;

/// A node whose `exec` runs once per item: `prep` returns the items, `post` gets
/// every output, in the items' order.
///
/// How the items run is the node's [`mode`](BatchNode::mode): one after the
/// other (the default), or in parallel on threads. Add it to a flow as it is.
/// Retries and the fallback apply to each item on its own. The first failing
/// item stops the batch (items not yet started never start) and the error
/// names its index. In an async run, the items' `exec`s run on tokio's blocking
/// pool, so they never stall the runtime.
///
/// ```
/// use minllm::{BatchMode, BatchNode, ExecContext, NodeResult, Params, SharedStore};
///
/// struct WordCount;
///
/// impl BatchNode for WordCount {
///     type Item = String;
///     type Output = usize;
///     type Action = ();
///
///     fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<String>> {
///         Ok(store.try_get("docs")?)
///     }
///     fn exec(&self, doc: &String, _: &ExecContext) -> NodeResult<usize> {
///         Ok(doc.split_whitespace().count())
///     }
///     fn post(&self, store: &mut SharedStore, _: Vec<String>, counts: Vec<usize>) -> NodeResult<()> {
///         store.set("counts", counts);
///         Ok(())
///     }
///     fn mode(&self) -> BatchMode {
///         BatchMode::Parallel { threads: None } // on all cores
///     }
/// }
///
/// let mut store = SharedStore::new();
/// store.set("docs", vec!["a b".to_string(), "c d e".to_string()]);
/// WordCount.run(&mut store).unwrap();
/// assert_eq!(store.get::<Vec<usize>>("counts"), Some(vec![2, 3]));
/// ```
pub trait BatchNode<S = SharedStore>: Send + Sync + 'static {
    /// One unit of work.
    type Item: Send + Sync + 'static;
    /// What `exec` makes of one item.
    type Output: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads the items from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> NodeResult<Vec<Self::Item>>;

    /// Processes one item. Retried according to [`retry`](BatchNode::retry).
    fn exec(&self, item: &Self::Item, ctx: &ExecContext<'_>) -> NodeResult<Self::Output>;

    /// Runs after the last failed attempt on an item; the default returns the error.
    fn exec_fallback(&self, item: &Self::Item, error: BoxError, ctx: &ExecContext<'_>) -> NodeResult<Self::Output> {
        let _ = (item, ctx);
        Err(error)
    }

    /// Gets the items back with their outputs, in order; writes the store.
    fn post(&self, store: &mut S, items: Vec<Self::Item>, outputs: Vec<Self::Output>) -> NodeResult<Self::Action>;

    /// The retry policy of `exec`, applied to each item.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// How the items run: one after the other unless overridden (in `flow!`
    /// code, `#[node(parallel)]` writes this method).
    fn mode(&self) -> BatchMode {
        BatchMode::Sequential
    }

    /// Runs the batch node alone on `store` and returns its action.
    fn run(&self, store: &mut S) -> Result<Self::Action, Error>
    where
        Self: Sized,
    {
        run_batch(self, self.mode(), store, Root::new(NO_FLOW).cx(short_type_name::<Self>()))
    }
}

/// How the items of a [`BatchNode`] run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchMode {
    /// One item after the other, on the thread of the run.
    #[default]
    Sequential,
    /// Items at the same time, on threads. Outputs keep the items' order.
    Parallel {
        /// `None`: on all cores (rayon's global pool). `Some(n)`: on `n`
        /// threads of the batch's own, started for each run and gone when it
        /// ends, e.g. to cap how many calls go to an LLM server at once
        /// (blocking calls then overlap even on few cores). `Some(0)` counts
        /// as `Some(1)`.
        threads: Option<usize>,
    },
}

/// The async form of [`BatchNode`]: `exec` is an `async fn`, and the items run
/// one after the other or as concurrent futures, as its
/// [`mode`](AsyncBatchNode::mode) says.
pub trait AsyncBatchNode<S = SharedStore>: Send + Sync + 'static
where
    S: Send + Sync,
{
    /// One unit of work.
    type Item: Send + Sync + 'static;
    /// What `exec` makes of one item.
    type Output: Send + 'static;
    /// What `post` returns: the label of the next edge.
    type Action: Action;

    /// Reads the items from the store and the flow's params.
    fn prep(&self, store: &S, params: &Params) -> impl Future<Output = NodeResult<Vec<Self::Item>>> + Send;

    /// Processes one item. Retried according to [`retry`](AsyncBatchNode::retry).
    fn exec(&self, item: &Self::Item, ctx: &ExecContext<'_>) -> impl Future<Output = NodeResult<Self::Output>> + Send;

    /// Runs after the last failed attempt on an item; the default returns the error.
    fn exec_fallback(
        &self,
        item: &Self::Item,
        error: BoxError,
        ctx: &ExecContext<'_>,
    ) -> impl Future<Output = NodeResult<Self::Output>> + Send {
        let _ = (item, ctx);
        async move { Err(error) }
    }

    /// Gets the items back with their outputs, in order; writes the store.
    fn post(
        &self,
        store: &mut S,
        items: Vec<Self::Item>,
        outputs: Vec<Self::Output>,
    ) -> impl Future<Output = NodeResult<Self::Action>> + Send;

    /// The retry policy of `exec`, applied to each item.
    fn retry(&self) -> Retry {
        Retry::ONCE
    }

    /// How the items run: one after the other unless overridden (in `flow!`
    /// code, `#[node(concurrent)]` writes this method).
    fn mode(&self) -> AsyncBatchMode {
        AsyncBatchMode::Sequential
    }

    /// Runs the batch node alone on `store`, on the current tokio runtime, and
    /// returns its action.
    fn run_async(&self, store: &mut S) -> impl Future<Output = Result<Self::Action, Error>> + Send
    where
        Self: Sized,
        S: 'static,
    {
        async move {
            let root = Root::new(NO_FLOW);
            let cx = root.cx(short_type_name::<Self>());
            run_async_batch(self, self.mode(), store, &cx).await.map_err(|e| *e)
        }
    }
}

/// How the items of an [`AsyncBatchNode`] run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AsyncBatchMode {
    /// Each item's `exec` awaited before the next starts.
    #[default]
    Sequential,
    /// Items' `exec`s as concurrent futures on the run's task. Outputs keep the
    /// items' order.
    Concurrent {
        /// The most in flight at once: [`DEFAULT_CONCURRENCY`] when `None`.
        /// `Some(0)` counts as `Some(1)`.
        limit: Option<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::spread::{Spread, concurrent_map, default_threads, par_map};

    #[test]
    fn par_map_keeps_order_and_reports_the_error() {
        let items: Vec<usize> = (0..100).collect();
        let out: Result<Vec<usize>, Option<String>> = par_map(&items, None, |i, x, _| Ok(i + x));
        assert_eq!(out.unwrap(), (0..100).map(|i| 2 * i).collect::<Vec<_>>());
        let out: Result<Vec<usize>, Option<usize>> =
            par_map(&items, None, |i, _, _| if i == 7 { Err(i) } else { Ok(i) });
        assert_eq!(out, Err(Some(7)));
    }

    #[tokio::test]
    async fn concurrent_map_respects_the_limit() {
        let live = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let out: Result<Vec<usize>, ()> = concurrent_map(20, Some(3), |i| {
            let (live, peak) = (&live, &peak);
            async move {
                let now = live.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok(i)
            }
        })
        .await;
        assert_eq!(out.unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_spread_keeps_order_skips_items_after_the_first_error_and_settles() {
        let spread: Spread<'static, usize, String> = Spread::new(50);
        spread.work(|i, _| Ok(i * 3));
        assert!(spread.wait(Some(std::time::Duration::ZERO)), "every item is done");
        assert_eq!(spread.finish().unwrap(), (0..50).map(|i| i * 3).collect::<Vec<_>>());

        let ran = std::sync::atomic::AtomicUsize::new(0);
        let spread: Spread<'static, usize, String> = Spread::new(50);
        spread.work(|i, cancel| {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(!cancel.is_cancelled());
            if i == 4 { Err(format!("item {i}")) } else { Ok(i) }
        });
        // One thread took the items in order: none started after item 4 failed.
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert!(spread.wait(None), "a failure settles the spread");
        assert_eq!(spread.finish(), Err(Some("item 4".to_owned())));

        let spread: Spread<'static, usize, String> = Spread::new(3);
        spread.cancel();
        spread.work(|i, _| Ok(i));
        assert_eq!(spread.finish(), Err(None), "items skipped without an error");
    }

    #[test]
    fn a_pool_of_its_own_has_a_thread_per_item_up_to_the_default() {
        assert_eq!(default_threads(0), 1);
        assert_eq!(default_threads(5), 5);
        assert_eq!(default_threads(10_000), super::DEFAULT_THREADS);
    }

    /// A thread that works through `spread`'s items, each taking long enough
    /// for a waiter to be waiting before it ends.
    fn paced_worker(spread: &std::sync::Arc<Spread<'static, usize, String>>) -> std::thread::JoinHandle<()> {
        let spread = std::sync::Arc::clone(spread);
        std::thread::spawn(move || {
            spread.work(|i, _| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Ok(i)
            })
        })
    }

    #[test]
    fn a_spread_wakes_its_waiter_when_the_last_item_is_done() {
        use std::time::Duration;
        let spread: std::sync::Arc<Spread<'static, usize, String>> = std::sync::Arc::new(Spread::new(2));
        assert!(!spread.wait(Some(Duration::from_millis(1))), "nothing is done yet");
        let worker = paced_worker(&spread);
        // No timeout: only the last item's wake-up ends this wait (a wake-up
        // after another item finds the spread unsettled and waits on).
        assert!(spread.wait(None));
        worker.join().expect("the worker");
        assert_eq!(spread.finish().unwrap(), [0, 1]);

        // With a timeout (as the Python package waits, in slices), the wait
        // lasts until the item is done, well before the hour.
        let spread: std::sync::Arc<Spread<'static, usize, String>> = std::sync::Arc::new(Spread::new(1));
        let worker = paced_worker(&spread);
        assert!(spread.wait(Some(Duration::from_secs(3600))), "the wait returned before the item was done");
        worker.join().expect("the worker");
    }
}
