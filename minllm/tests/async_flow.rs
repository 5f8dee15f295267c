//! Async nodes, concurrent batches and flows, and sync nodes in async flows.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{PATIENCE, mark, trace, wait_until_async};
use minllm::{
    AsyncBatchMode, AsyncBatchNode, AsyncNode, BatchFlow, BoxError, Error, ExecContext, Flow, Node, NodeResult, Params,
    Retry, SharedStore,
};

/// Counts one item in flight while it lives; dropping a cancelled item's
/// future drops it too.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(now: &'a AtomicUsize, peak: &AtomicUsize) -> Self {
        peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        InFlight(now)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a batch's items did: how many started and finished, how many are in
/// flight now, and the most that were in flight at once.
#[derive(Default)]
struct Tally {
    started: AtomicUsize,
    finished: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A batch of `count` items that tallies them. Each item that starts before
/// any has finished waits until `target` were in flight at once (or PATIENCE
/// passes), so that a cap below the target shows as a peak below it and a
/// missing cap as a peak above it. Item `fail_at` fails once every item is in
/// flight. Its items run as `mode` says.
#[derive(Default)]
struct Gathering {
    mode: AsyncBatchMode,
    count: usize,
    target: usize,
    fail_at: Option<usize>,
    tally: Arc<Tally>,
}

fn gathering(count: usize, target: usize) -> Gathering {
    Gathering { count, target, mode: AsyncBatchMode::Concurrent { limit: None }, ..Gathering::default() }
}

impl AsyncBatchNode for Gathering {
    type Item = usize;
    type Output = usize;
    type Action = ();
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..self.count).collect())
    }
    async fn exec(&self, item: &usize, _: &ExecContext<'_>) -> NodeResult<usize> {
        let tally = &*self.tally;
        tally.started.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight::enter(&tally.in_flight, &tally.peak);
        // A batch that runs its items at once starts the next one here.
        tokio::task::yield_now().await;
        if self.fail_at == Some(*item) {
            wait_until_async(|| tally.in_flight.load(Ordering::SeqCst) == self.count).await;
            return Err(format!("item {item} failed").into());
        }
        if tally.finished.load(Ordering::SeqCst) == 0 {
            wait_until_async(|| tally.peak.load(Ordering::SeqCst) >= self.target).await;
        }
        // Later items finish first: the output order is the batch's doing.
        for _ in *item..self.count {
            tokio::task::yield_now().await;
        }
        tally.finished.fetch_add(1, Ordering::SeqCst);
        Ok(item * 10)
    }
    async fn post(&self, store: &mut SharedStore, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn mode(&self) -> AsyncBatchMode {
        self.mode
    }
}

#[tokio::test]
async fn a_concurrent_batch_runs_all_its_items_at_once_and_keeps_their_order() {
    let batch = gathering(100, 100);
    let mut store = SharedStore::new();
    batch.run_async(&mut store).await.unwrap();
    assert_eq!(batch.tally.peak.load(Ordering::SeqCst), 100);
    assert_eq!(store.get::<Vec<usize>>("out").unwrap(), (0..100).map(|i| i * 10).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_limit_caps_items_in_flight() {
    let batch = Gathering { mode: AsyncBatchMode::Concurrent { limit: Some(7) }, ..gathering(50, 7) };
    let mut store = SharedStore::new();
    batch.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<Vec<usize>>("out").unwrap().len(), 50);
    assert_eq!(batch.tally.peak.load(Ordering::SeqCst), 7);
    assert_eq!(batch.tally.finished.load(Ordering::SeqCst), 50);
}

#[tokio::test]
async fn a_sequential_async_batch_runs_one_item_at_a_time() {
    let batch = Gathering { mode: AsyncBatchMode::Sequential, ..gathering(10, 1) };
    batch.run_async(&mut SharedStore::new()).await.unwrap();
    assert_eq!(batch.tally.peak.load(Ordering::SeqCst), 1);
    assert_eq!(batch.tally.finished.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn the_first_async_error_cancels_items_in_flight() {
    // The others wait for a peak they never reach: only cancellation ends them early.
    let node = Gathering { fail_at: Some(5), ..gathering(20, usize::MAX) };
    let tally = Arc::clone(&node.tally);
    let mut flow = Flow::new("f");
    flow.add("batch", node);
    let err = flow.run_async(&mut SharedStore::new()).await.unwrap_err();
    assert_eq!(err.item(), Some(5));
    assert_eq!(err.to_string(), "exec of node `batch` in flow `f` failed (item 5): item 5 failed");
    assert_eq!(tally.started.load(Ordering::SeqCst), 20, "every item was in flight when item 5 failed");
    assert_eq!(tally.finished.load(Ordering::SeqCst), 0, "an item ran to its end after the failure");
    assert_eq!(tally.in_flight.load(Ordering::SeqCst), 0, "an item is still running after the run ended");
}

/// An async node that retries, falls back and picks actions.
struct Ask {
    fail_first: u32,
    calls: AtomicUsize,
}

impl AsyncNode for Ask {
    type Prep = String;
    type Exec = String;
    type Action = &'static str;
    async fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("question")?)
    }
    async fn exec(&self, q: &String, ctx: &ExecContext<'_>) -> NodeResult<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if ctx.attempt() <= self.fail_first {
            return Err("server busy".into());
        }
        Ok(format!("answer to {q} (attempt {})", ctx.attempt()))
    }
    async fn exec_fallback(&self, _: &String, error: BoxError, _: &ExecContext<'_>) -> NodeResult<String> {
        Ok(format!("fallback: {error}"))
    }
    async fn post(&self, store: &mut SharedStore, _: String, answer: String) -> NodeResult<&'static str> {
        let fell_back = answer.starts_with("fallback");
        store.set("answer", answer);
        Ok(if fell_back { "apologise" } else { "done" })
    }
    fn retry(&self) -> Retry {
        Retry::attempts(3).wait(Duration::from_millis(10))
    }
}

#[tokio::test]
async fn async_nodes_retry_wait_and_fall_back() {
    let ask = Ask { fail_first: 2, calls: AtomicUsize::new(0) };
    let mut store = SharedStore::new();
    store.set("question", "why".to_string());
    let started = Instant::now();
    assert_eq!(ask.run_async(&mut store).await.unwrap(), "done");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(20), "two waits of 10 ms: {took:?}");
    assert_eq!(store.get::<String>("answer").unwrap(), "answer to why (attempt 3)");

    let ask = Ask { fail_first: 9, calls: AtomicUsize::new(0) };
    assert_eq!(ask.run_async(&mut store).await.unwrap(), "apologise");
    assert_eq!(ask.calls.load(Ordering::SeqCst), 3);
    assert_eq!(store.get::<String>("answer").unwrap(), "fallback: server busy");
}

#[tokio::test]
async fn an_async_flow_runs_async_and_sync_nodes_and_branches() {
    let mut flow = Flow::new("mixed");
    let first = flow.add("first", mark("first"));
    let ask = flow.add("ask", Ask { fail_first: 0, calls: AtomicUsize::new(0) });
    let done = flow.add("done", mark("done"));
    let sorry = flow.add("sorry", mark("sorry"));
    flow.edge(first >> ask).edge(ask.on("done") >> done).edge(ask.on("apologise") >> sorry);
    let mut store = SharedStore::new();
    store.set("question", "what".to_string());
    assert_eq!(flow.run_async(&mut store).await.unwrap(), "default");
    assert_eq!(trace(&store), ["first", "done"]);

    // The same flow refuses a sync run, naming the async node.
    let err = flow.run(&mut store).unwrap_err();
    assert!(matches!(err, Error::AsyncInSyncRun { ref node, .. } if node == "ask"), "{err:?}");
}

/// A sync node whose exec blocks its thread until a ticker on the runtime has
/// ticked a few times, and records how many ticks it saw.
struct AwaitsTicks(Arc<AtomicUsize>);

impl Node for AwaitsTicks {
    type Prep = ();
    type Exec = usize;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<usize> {
        let deadline = Instant::now() + PATIENCE;
        while self.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(self.0.load(Ordering::SeqCst))
    }
    fn post(&self, store: &mut SharedStore, _: (), ticks: usize) -> NodeResult<()> {
        store.set("ticks seen", ticks);
        Ok(())
    }
}

#[test]
fn a_sync_node_in_an_async_flow_does_not_block_the_runtime() {
    // One thread: if the node blocked it, the ticker could not tick while the
    // node waits for its ticks. On a current-thread runtime the exec goes to
    // the blocking pool.
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime_keeps_ticking(&current, false);
    // On a multi-thread runtime of one worker the exec runs in place, and the
    // worker's other tasks move to another thread meanwhile: from a task on the
    // worker, and from the thread that blocks on the runtime.
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime_keeps_ticking(&multi, true);
    runtime_keeps_ticking(&multi, false);
}

/// Runs a flow of [`AwaitsTicks`] while a ticker task ticks, on `runtime`
/// (in a task of its own when `spawned`), and checks that the ticker ticked.
fn runtime_keeps_ticking(runtime: &tokio::runtime::Runtime, spawned: bool) {
    let run = async {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let (ticks, stop) = (ticks.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut flow = Flow::new("f");
        flow.add("blocking", AwaitsTicks(ticks));
        let mut store = SharedStore::new();
        flow.run_async(&mut store).await.unwrap();
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        let seen = store.get::<usize>("ticks seen").unwrap();
        assert!(seen >= 3, "the runtime thread was blocked: {seen} ticks while the node ran");
    };
    if spawned {
        runtime.block_on(runtime.spawn(run)).unwrap();
    } else {
        runtime.block_on(run);
    }
}

/// What the branches of a batch flow did: whether two were ever inside prep or
/// post at once, and how many execs run now, at most, and finished.
#[derive(Default)]
struct Branches {
    inside: AtomicUsize,
    overlap: AtomicBool,
    running: AtomicUsize,
    peak: AtomicUsize,
    finished: AtomicUsize,
}

impl Branches {
    async fn critical_section(&self) {
        if self.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlap.store(true, Ordering::SeqCst);
        }
        // Holds the store across an await, where another branch could get in.
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Async prep/post that hold the store across an await, with exec in between.
/// Each exec takes `hold`; those that start before any has finished then wait
/// until `target` execs were running at once (or PATIENCE passes).
struct Branch {
    target: usize,
    hold: Duration,
    seen: Arc<Branches>,
}

impl AsyncNode for Branch {
    type Prep = i64;
    type Exec = i64;
    type Action = ();
    async fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<i64> {
        self.seen.critical_section().await;
        Ok(params.get("i")?)
    }
    async fn exec(&self, i: &i64, _: &ExecContext<'_>) -> NodeResult<i64> {
        let seen = &*self.seen;
        let _running = InFlight::enter(&seen.running, &seen.peak);
        tokio::time::sleep(self.hold).await;
        if seen.finished.load(Ordering::SeqCst) == 0 {
            wait_until_async(|| seen.peak.load(Ordering::SeqCst) >= self.target).await;
        }
        seen.finished.fetch_add(1, Ordering::SeqCst);
        Ok(i * 2)
    }
    async fn post(&self, store: &mut SharedStore, i: i64, doubled: i64) -> NodeResult<()> {
        self.seen.critical_section().await;
        store.update_or_insert("sum", || 0_i64, |s| *s += doubled)?;
        common::push(store, i.to_string());
        Ok(())
    }
}

fn numbered(count: i64) -> impl Fn(&SharedStore, &Params) -> NodeResult<Vec<Params>> + Send + Sync + 'static {
    move |_: &SharedStore, _: &Params| Ok((1..=count).map(|i| Params::new().with("i", i)).collect())
}

#[tokio::test]
async fn concurrent_branches_overlap_exec_but_never_prep_or_post() {
    let seen = Arc::new(Branches::default());
    let mut inner = Flow::new("branch");
    inner.add("branch", Branch { target: 20, hold: Duration::ZERO, seen: Arc::clone(&seen) });
    let batch = BatchFlow::new(inner, numbered(20)).parallel();
    let mut store = SharedStore::new();
    batch.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<i64>("sum"), Some(420));
    assert!(!seen.overlap.load(Ordering::SeqCst), "two branches were inside prep/post at once");
    assert_eq!(seen.peak.load(Ordering::SeqCst), 20, "the execs of all 20 branches run at once");
}

#[tokio::test]
async fn an_async_batch_flow_runs_branches_in_order_when_sequential() {
    let seen = Arc::new(Branches::default());
    let mut inner = Flow::new("branch");
    // An exec long enough for the next branch to start beside it, if it could.
    inner.add("branch", Branch { target: 1, hold: Duration::from_millis(20), seen: Arc::clone(&seen) });
    let batch = BatchFlow::new(inner, numbered(3));
    let mut outer = Flow::new("outer");
    outer.add("batch", batch);
    let mut store = SharedStore::new();
    outer.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<i64>("sum"), Some(12));
    assert_eq!(trace(&store), ["1", "2", "3"]);
    assert_eq!(seen.peak.load(Ordering::SeqCst), 1, "two branches ran at once");
}

struct PanicsAsync;

impl AsyncNode for PanicsAsync {
    type Prep = ();
    type Exec = ();
    type Action = ();
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: &ExecContext<'_>) -> NodeResult<()> {
        tokio::task::yield_now().await;
        panic!("async boom")
    }
    async fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_async_panic_becomes_an_error() {
    let mut flow = Flow::new("f");
    flow.add("p", PanicsAsync);
    let err = flow.run_async(&mut SharedStore::new()).await.unwrap_err();
    assert_eq!(err.to_string(), "exec of node `p` in flow `f` panicked: async boom");
}

#[tokio::test]
async fn flows_run_on_spawned_tasks() {
    // run_async's future is Send: it can move to another worker.
    let mut flow = Flow::new("f");
    flow.add("a", mark("a"));
    let flow = Arc::new(flow);
    let handle = tokio::spawn({
        let flow = flow.clone();
        async move {
            let mut store = SharedStore::new();
            flow.run_async(&mut store).await.map(|_| trace(&store))
        }
    });
    assert_eq!(handle.await.unwrap().unwrap(), ["a"]);
}

/// A sync node that notes the thread its `exec` ran on, failing its first
/// `fail` attempts (with `wait` between attempts); its `exec` blocks or not as
/// `blocks` says.
struct NotesThread {
    blocks: bool,
    fail: usize,
    wait: Duration,
    attempts: Arc<AtomicUsize>,
}

impl Node for NotesThread {
    type Prep = ();
    type Exec = String;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err("not yet".into());
        }
        Ok(format!("{:?}", std::thread::current().id()))
    }
    fn post(&self, store: &mut SharedStore, _: (), thread: String) -> NodeResult<()> {
        store.set("exec thread", thread);
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(5).wait(self.wait)
    }
    fn exec_blocks(&self) -> bool {
        self.blocks
    }
}

fn notes_thread(blocks: bool, fail: usize, wait: Duration) -> (Flow, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut flow = Flow::new("f");
    flow.add("note", NotesThread { blocks, fail, wait, attempts: Arc::clone(&attempts) });
    (flow, attempts)
}

#[test]
fn a_quick_sync_exec_runs_in_place_and_a_blocking_one_on_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let here = format!("{:?}", std::thread::current().id());
    for (blocks, in_place) in [(false, true), (true, false)] {
        // Two failed attempts first: the retries run where the first did.
        let (flow, attempts) = notes_thread(blocks, 2, Duration::from_millis(1));
        let mut store = SharedStore::new();
        runtime.block_on(flow.run_async(&mut store)).unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        let thread = store.get::<String>("exec thread").unwrap();
        assert_eq!(thread == here, in_place, "blocks: {blocks}, exec ran on {thread}, the run on {here}");
    }
}

#[test]
fn a_dropped_run_ends_the_retry_wait_of_a_quick_sync_exec() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Every attempt fails; the 30 s wait after the first is under way when the
    // timeout drops the run.
    // A wait that blocked the task would keep the timeout from firing until
    // it ended, and the next attempt would start first.
    let (flow, attempts) = notes_thread(false, usize::MAX, Duration::from_secs(30));
    let result = runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(100), flow.run_async(&mut SharedStore::new())).await
    });
    assert!(result.is_err(), "the run ended before the timeout: {result:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "an attempt ran after the run was dropped");
}
