//! Async nodes, concurrent batches and flows, and sync nodes in async flows.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{mark, trace};
use minllm::{
    AsyncBatch, AsyncBatchNode, AsyncNode, BatchFlow, BoxError, Error, ExecContext, Flow, Node, NodeResult, Params,
    Retry, SharedStore,
};

/// Sleeps `ms` per item; fails on `fail_at`; counts starts and finishes and the
/// peak number of items in flight.
#[derive(Default)]
struct Sleepy {
    ms: u64,
    fail_at: Option<usize>,
    started: AtomicUsize,
    finished: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl AsyncBatchNode for Sleepy {
    type Item = usize;
    type Output = usize;
    type Action = ();
    async fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..store.try_get::<usize>("n")?).collect())
    }
    async fn exec(&self, item: &usize, _: &ExecContext<'_>) -> NodeResult<usize> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if self.fail_at == Some(*item) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(format!("item {item} failed").into());
        }
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(item * 10)
    }
    async fn post(&self, store: &mut SharedStore, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
}

fn store_with_n(n: usize) -> SharedStore {
    let store = SharedStore::new();
    store.set("n", n);
    store
}

#[tokio::test]
async fn a_hundred_concurrent_50ms_execs_finish_well_under_a_second() {
    let batch = AsyncBatch::concurrent(Sleepy { ms: 50, ..Sleepy::default() });
    let mut store = store_with_n(100);
    let started = Instant::now();
    batch.run_async(&mut store).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}; sequential would be 5 s");
    assert_eq!(store.get::<Vec<usize>>("out").unwrap(), (0..100).map(|i| i * 10).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_limit_caps_items_in_flight() {
    let batch = AsyncBatch::concurrent(Sleepy { ms: 10, ..Sleepy::default() }).limit(7);
    let mut store = store_with_n(50);
    batch.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<Vec<usize>>("out").unwrap().len(), 50);
    assert_eq!(batch.node().peak.load(Ordering::SeqCst), 7);
    assert_eq!(batch.node().finished.load(Ordering::SeqCst), 50);
}

#[tokio::test]
async fn a_sequential_async_batch_runs_one_item_at_a_time() {
    let batch = AsyncBatch::sequential(Sleepy { ms: 1, ..Sleepy::default() });
    batch.run_async(&mut store_with_n(10)).await.unwrap();
    assert_eq!(batch.node().peak.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_first_async_error_cancels_items_in_flight() {
    let batch = AsyncBatch::concurrent(Sleepy { ms: 200, fail_at: Some(5), ..Sleepy::default() });
    let mut flow = Flow::new("f");
    let started = Instant::now();
    flow.add("sleepy", batch);
    let err = flow.run_async(&mut store_with_n(20)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(150), "the batch did not wait for the others");
    assert_eq!(err.item(), Some(5));
    assert_eq!(err.to_string(), "exec of node `sleepy` in flow `f` failed (item 5): item 5 failed");
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
    assert_eq!(ask.run_async(&mut store).await.unwrap(), "done");
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

/// A sync node whose exec blocks the thread.
struct Blocking(Duration);

impl Node for Blocking {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        std::thread::sleep(self.0);
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        store.set("blocked", true);
        Ok(())
    }
}

#[test]
fn a_sync_node_in_an_async_flow_does_not_block_the_runtime() {
    // One thread: if the node blocked it, the ticker could not tick.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let (ticks, stop) = (ticks.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut flow = Flow::new("f");
        flow.add("blocking", Blocking(Duration::from_millis(300)));
        let mut store = SharedStore::new();
        flow.run_async(&mut store).await.unwrap();
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        assert_eq!(store.get::<bool>("blocked"), Some(true));
        let ticks = ticks.load(Ordering::SeqCst);
        assert!(ticks >= 10, "the runtime thread was blocked: only {ticks} ticks in 300 ms");
    });
}

/// Async prep/post that hold the store across an await, with exec in between.
struct Branch;

static INSIDE: AtomicUsize = AtomicUsize::new(0);
static OVERLAP: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

async fn critical_section() {
    if INSIDE.fetch_add(1, Ordering::SeqCst) != 0 {
        OVERLAP.store(true, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    INSIDE.fetch_sub(1, Ordering::SeqCst);
}

impl AsyncNode for Branch {
    type Prep = i64;
    type Exec = i64;
    type Action = ();
    async fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<i64> {
        critical_section().await;
        Ok(params.get("i")?)
    }
    async fn exec(&self, i: &i64, _: &ExecContext<'_>) -> NodeResult<i64> {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(i * 2)
    }
    async fn post(&self, store: &mut SharedStore, _: i64, doubled: i64) -> NodeResult<()> {
        critical_section().await;
        store.update_or_insert("sum", || 0_i64, |s| *s += doubled)?;
        Ok(())
    }
}

#[tokio::test]
async fn concurrent_branches_overlap_exec_but_never_prep_or_post() {
    let mut inner = Flow::new("branch");
    inner.add("branch", Branch);
    let batch =
        BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok((1..=20).map(|i| Params::new().with("i", i)).collect()))
            .parallel();
    let mut store = SharedStore::new();
    let started = Instant::now();
    batch.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<i64>("sum"), Some(420));
    assert!(!OVERLAP.load(Ordering::SeqCst), "two branches were inside prep/post at once");
    assert!(PEAK.load(Ordering::SeqCst) >= 10, "execs did not overlap: peak {}", PEAK.load(Ordering::SeqCst));
    // 20 branches: 20 × 2 critical sections of 2 ms, execs of 50 ms overlapping.
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_async_batch_flow_runs_branches_in_order_when_sequential() {
    let mut inner = Flow::new("branch");
    inner.add("branch", Branch);
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new().with("i", 1); 3]));
    let mut outer = Flow::new("outer");
    outer.add("batch", batch);
    let mut store = SharedStore::new();
    outer.run_async(&mut store).await.unwrap();
    assert_eq!(store.get::<i64>("sum"), Some(6));
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
