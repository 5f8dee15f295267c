//! Concurrency caps, tested from both sides (never more than the limit in
//! flight, and the limit is reached); first-error cancellation of parallel
//! branches; and what a dropped async run leaves running.
#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gauge, MARGIN, wait_until};

use minllm::{
    AsyncBatchMode, AsyncBatchNode, AsyncNode, BatchFlow, BatchMode, BatchNode, DEFAULT_CONCURRENCY, DEFAULT_THREADS,
    ExecContext, Flow, Node, NodeResult, Params, Retry, SharedStore,
};

/// How long a visitor stays after the target was reached: time for one more
/// to come in, if a cap let it.
const HOLD: Duration = Duration::from_millis(20);

/// A batch node over `items` items that visits the gauge once per item, run
/// as `mode` says.
struct Items {
    items: usize,
    gauge: Arc<Gauge>,
    mode: BatchMode,
}

/// [`Items`] as an async batch node, run as its mode says.
struct AsyncItems(Items, AsyncBatchMode);

impl BatchNode for Items {
    type Item = usize;
    type Output = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..self.items).collect())
    }
    fn exec(&self, _: &usize, _: &ExecContext) -> NodeResult<()> {
        self.gauge.visit(HOLD);
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: Vec<usize>, _: Vec<()>) -> NodeResult<()> {
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        self.mode
    }
}

impl AsyncBatchNode for AsyncItems {
    type Item = usize;
    type Output = ();
    type Action = ();
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..self.0.items).collect())
    }
    async fn exec(&self, _: &usize, _: &ExecContext<'_>) -> NodeResult<()> {
        self.0.gauge.visit_async(HOLD).await;
        Ok(())
    }
    async fn post(&self, _: &mut SharedStore, _: Vec<usize>, _: Vec<()>) -> NodeResult<()> {
        Ok(())
    }
    fn mode(&self) -> AsyncBatchMode {
        self.1
    }
}

fn items(items: usize, target: usize) -> Items {
    Items { items, gauge: Arc::new(Gauge::new(target)), mode: BatchMode::Sequential }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn batch_threads_n_runs_exactly_n_items_at_once() {
    let node = Items { mode: BatchMode::Parallel { threads: Some(6) }, ..items(24, 6) };
    let gauge = Arc::clone(&node.gauge);
    node.run(&mut SharedStore::new()).unwrap();
    assert_eq!(gauge.peak(), 6);
    assert_eq!(gauge.visits(), 24);

    // The same cap in a flow, sync and async.
    let node = Items { mode: BatchMode::Parallel { threads: Some(5) }, ..items(20, 5) };
    let gauge = Arc::clone(&node.gauge);
    let mut flow = Flow::new("f");
    flow.add("batch", node);
    flow.run(&mut SharedStore::new()).unwrap();
    assert_eq!(gauge.peak(), 5);
    gauge.reset();
    runtime().block_on(flow.run_async(&mut SharedStore::new())).unwrap();
    assert_eq!(gauge.peak(), 5);
}

#[test]
fn async_batch_limit_n_keeps_exactly_n_items_in_flight() {
    let node = AsyncItems(items(40, 7), AsyncBatchMode::Concurrent { limit: Some(7) });
    let gauge = Arc::clone(&node.0.gauge);
    runtime().block_on(node.run_async(&mut SharedStore::new())).unwrap();
    assert_eq!(gauge.peak(), 7);
    assert_eq!(gauge.visits(), 40);
}

#[test]
fn a_concurrent_async_batch_without_a_limit_keeps_the_default_in_flight() {
    let node =
        AsyncItems(items(DEFAULT_CONCURRENCY + 500, DEFAULT_CONCURRENCY), AsyncBatchMode::Concurrent { limit: None });
    let gauge = Arc::clone(&node.0.gauge);
    runtime().block_on(node.run_async(&mut SharedStore::new())).unwrap();
    assert_eq!(gauge.peak(), DEFAULT_CONCURRENCY);
}

/// A node that visits the gauge in its exec.
struct Visit(Arc<Gauge>);

impl Node for Visit {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        self.0.visit(HOLD);
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
}

/// The same in an async node.
struct VisitAsync(Arc<Gauge>);

impl AsyncNode for VisitAsync {
    type Prep = ();
    type Exec = ();
    type Action = ();
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: &ExecContext<'_>) -> NodeResult<()> {
        self.0.visit_async(HOLD).await;
        Ok(())
    }
    async fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
}

fn branches(count: usize) -> impl Fn(&SharedStore, &Params) -> NodeResult<Vec<Params>> + Send + Sync + 'static {
    move |_: &SharedStore, _: &Params| Ok((0..count).map(|i| Params::new().with("i", i)).collect())
}

#[test]
fn batch_flow_limit_n_runs_exactly_n_branches_at_once() {
    let gauge = Arc::new(Gauge::new(4));
    let mut inner = Flow::new("branch");
    inner.add("visit", Visit(Arc::clone(&gauge)));
    let batch = BatchFlow::new(inner, branches(16)).limit(4);
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(gauge.peak(), 4);

    let gauge = Arc::new(Gauge::new(3));
    let mut inner = Flow::new("branch");
    inner.add("visit", VisitAsync(Arc::clone(&gauge)));
    let batch = BatchFlow::new(inner, branches(12)).limit(3);
    runtime().block_on(batch.run_async(&mut SharedStore::new())).unwrap();
    assert_eq!(gauge.peak(), 3);
}

#[test]
fn a_parallel_batch_flow_without_a_limit_runs_a_thread_per_branch_up_to_the_default() {
    // More branches at once than this machine may have cores: their execs
    // mostly wait on blocking calls, which overlap on threads.
    let gauge = Arc::new(Gauge::new(12));
    let mut inner = Flow::new("branch");
    inner.add("visit", Visit(Arc::clone(&gauge)));
    let batch = BatchFlow::new(inner, branches(12)).parallel();
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(gauge.peak(), 12);

    // Past the default, the default: never more threads than it.
    let gauge = Arc::new(Gauge::new(DEFAULT_THREADS));
    let mut inner = Flow::new("branch");
    inner.add("visit", Visit(Arc::clone(&gauge)));
    let batch = BatchFlow::new(inner, branches(DEFAULT_THREADS + 8)).parallel();
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(gauge.peak(), DEFAULT_THREADS);
    assert_eq!(gauge.visits(), DEFAULT_THREADS + 8);
}

/// Fails at once in branch 0; the other branches count themselves and wait
/// for that failure (and a margin for the run to act on it), so that without
/// cancellation all of them would run.
struct FailFirst {
    started: Arc<AtomicUsize>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl Node for FailFirst {
    type Prep = usize;
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<usize> {
        Ok(params.get("i")?)
    }
    fn exec(&self, i: &usize, _: &ExecContext) -> NodeResult<()> {
        if *i == 0 {
            self.failed.store(true, Ordering::SeqCst);
            return Err("branch 0 fails".into());
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        wait_until(|| self.failed.load(Ordering::SeqCst));
        // Branch 0 has failed; the run cancels the batch right after it returns.
        std::thread::sleep(MARGIN);
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: usize, _: ()) -> NodeResult<()> {
        Ok(())
    }
}

#[test]
fn the_first_failing_branch_cancels_the_branches_not_yet_started() {
    for run_async in [false, true] {
        let started = Arc::new(AtomicUsize::new(0));
        let mut inner = Flow::new("branch");
        inner.add("work", FailFirst { started: Arc::clone(&started), failed: Arc::default() });
        let batch = BatchFlow::new(inner, branches(100)).limit(2);
        let result = if run_async {
            runtime().block_on(batch.run_async(&mut SharedStore::new()))
        } else {
            batch.run(&mut SharedStore::new())
        };
        let err = result.unwrap_err();
        assert_eq!(err.to_string(), "exec of node `work` in flow `branch > batch[0]` failed: branch 0 fails");
        // Branch 1 may have started beside branch 0; no branch after them.
        assert!(
            started.load(Ordering::SeqCst) <= 1,
            "{} branches started (async: {run_async})",
            started.load(Ordering::SeqCst)
        );
    }
}

/// A sync node that always fails, slowly between attempts, counting them.
struct Flaky(Arc<AtomicUsize>);

impl Node for Flaky {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("server down".into())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(5).wait(Duration::from_secs(30))
    }
}

#[test]
fn a_dropped_async_run_makes_no_further_attempt_and_shuts_down_promptly() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut flow = Flow::new("f");
    flow.add("flaky", Flaky(Arc::clone(&attempts)));
    let runtime = runtime();
    let timed_out = runtime.block_on(async {
        // Long enough for the first attempt to fail and the 30 s wait to begin.
        tokio::time::timeout(Duration::from_millis(200), flow.run_async(&mut SharedStore::new())).await
    });
    assert!(timed_out.is_err());
    // Dropping the runtime waits for its blocking work: the wait in progress
    // must end at once and no second attempt start (else this takes minutes).
    drop(runtime);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}
