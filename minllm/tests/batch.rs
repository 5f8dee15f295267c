//! Batch nodes: order, first-error cancellation, panics, retries per item and
//! how their mode spreads the items. Batch flows are in `batch_flow.rs`.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gauge, MARGIN, wait_until};
use minllm::{BatchMode, BatchNode, Error, ExecContext, Flow, NodeResult, Params, Retry, SharedStore, Stage};

/// On all cores.
const PARALLEL: BatchMode = BatchMode::Parallel { threads: None };

/// Squares numbers, its items run as `mode` says; fails on `fail_at`, panics
/// on `panic_at`; counts the items that started.
#[derive(Default)]
struct Squares {
    mode: BatchMode,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
    started: Arc<AtomicUsize>,
}

impl BatchNode for Squares {
    type Item = u64;
    type Output = u64;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<u64>> {
        Ok(store.try_get("numbers")?)
    }
    fn exec(&self, n: &u64, ctx: &ExecContext) -> NodeResult<u64> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let i = ctx.item().unwrap();
        if self.panic_at == Some(i) {
            panic!("item {i} is cursed");
        }
        if self.fail_at == Some(i) {
            return Err(format!("cannot square {n}").into());
        }
        Ok(n * n)
    }
    fn post(&self, store: &mut SharedStore, items: Vec<u64>, outputs: Vec<u64>) -> NodeResult<()> {
        assert_eq!(items.len(), outputs.len());
        store.set("squares", outputs);
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        self.mode
    }
}

fn numbers(n: u64) -> SharedStore {
    let store = SharedStore::new();
    store.set("numbers", (0..n).collect::<Vec<u64>>());
    store
}

#[test]
fn sequential_and_parallel_batches_keep_input_order() {
    for batch in [Squares::default(), Squares { mode: PARALLEL, ..Squares::default() }] {
        let mut flow = Flow::new("f");
        flow.add("squares", batch);
        let mut store = numbers(1000);
        flow.run(&mut store).unwrap();
        let expected: Vec<u64> = (0..1000).map(|n| n * n).collect();
        assert_eq!(store.get::<Vec<u64>>("squares").unwrap(), expected);
    }
}

#[test]
fn a_pool_of_its_own_also_keeps_order() {
    let batch = Squares { mode: BatchMode::Parallel { threads: Some(3) }, ..Squares::default() };
    let mut store = numbers(100);
    batch.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<u64>>("squares").unwrap()[99], 99 * 99);
}

#[test]
fn the_first_error_stops_a_sequential_batch_at_its_item() {
    let node = Squares { fail_at: Some(4), ..Squares::default() };
    let started = Arc::clone(&node.started);
    let mut flow = Flow::new("f");
    flow.add("squares", node);
    let mut store = numbers(100);
    let err = flow.run(&mut store).unwrap_err();
    assert_eq!(err.item(), Some(4));
    assert_eq!(err.to_string(), "exec of node `squares` in flow `f` failed (item 4): cannot square 4");
    assert_eq!(started.load(Ordering::SeqCst), 5, "items 0 to 4 ran, none after");
    assert!(!store.contains("squares"), "post does not run after a failure");
}

/// A parallel batch. Item 0 fails at once. The items that start before that failure wait for
/// it (and MARGIN) and succeed; an item that starts after it counts itself
/// late and returns at once.
#[derive(Default)]
struct GivesWay {
    failed: AtomicBool,
    late: AtomicUsize,
}

impl BatchNode for GivesWay {
    type Item = usize;
    type Output = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..1000).collect())
    }
    fn exec(&self, i: &usize, _: &ExecContext) -> NodeResult<()> {
        if self.failed.load(Ordering::SeqCst) {
            self.late.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        if *i == 0 {
            self.failed.store(true, Ordering::SeqCst);
            return Err("item 0 failed".into());
        }
        wait_until(|| self.failed.load(Ordering::SeqCst));
        std::thread::sleep(MARGIN);
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: Vec<usize>, _: Vec<()>) -> NodeResult<()> {
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        PARALLEL
    }
}

#[test]
fn the_first_error_cancels_a_parallel_batch() {
    // On rayon's threads, however many: the thread that takes the batch runs item 0 first.
    let batch = GivesWay::default();
    let err = batch.run(&mut SharedStore::new()).unwrap_err();
    assert!(matches!(err, Error::Node { item: Some(0), stage: Stage::Exec, .. }), "{err:?}");
    // Between item 0 setting `failed` and the engine seeing its error, another
    // thread may start an item (a window of a few instructions, wider on a
    // loaded machine); without cancellation every one of the 999 would run.
    let late = batch.late.load(Ordering::SeqCst);
    assert!(late < 500, "{late} items started after the failure");
}

#[test]
fn a_panicking_item_becomes_an_error_with_its_index() {
    for batch in [
        Squares { panic_at: Some(3), ..Squares::default() },
        Squares { panic_at: Some(3), mode: PARALLEL, ..Squares::default() },
    ] {
        let mut store = numbers(8);
        let err = batch.run(&mut store).unwrap_err();
        assert!(matches!(err, Error::Panic { item: Some(3), .. }), "{err:?}");
        assert!(err.to_string().ends_with("panicked (item 3): item 3 is cursed"), "{err}");
        store.set("still", "usable");
        assert!(store.contains("still"));
    }
}

/// Fails every item's first attempt: each item keeps its own attempt count.
struct FirstTryFails;

impl BatchNode for FirstTryFails {
    type Item = usize;
    type Output = (usize, u32);
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..64).collect())
    }
    fn exec(&self, item: &usize, ctx: &ExecContext) -> NodeResult<(usize, u32)> {
        if ctx.attempt() == 1 { Err("first try".into()) } else { Ok((*item, ctx.attempt())) }
    }
    fn post(&self, store: &mut SharedStore, _: Vec<usize>, out: Vec<(usize, u32)>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(2)
    }
    fn mode(&self) -> BatchMode {
        PARALLEL
    }
}

#[test]
fn retries_count_per_item_in_parallel() {
    let mut store = SharedStore::new();
    FirstTryFails.run(&mut store).unwrap();
    let out: Vec<(usize, u32)> = store.get("out").unwrap();
    assert_eq!(out, (0..64).map(|i| (i, 2)).collect::<Vec<_>>());
}

/// Runs as its mode says (in `flow!` code, as `#[node(parallel, limit = N)]`
/// says); each item visits the gauge.
struct SelfParallel(Gauge, BatchMode);

impl BatchNode for SelfParallel {
    type Item = usize;
    type Output = usize;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..12).collect())
    }
    fn exec(&self, i: &usize, _: &ExecContext) -> NodeResult<usize> {
        // Long enough for an item on another thread to come in, if it could.
        self.0.visit(Duration::from_millis(2));
        Ok(*i)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        self.1
    }
}

#[test]
fn a_bare_batch_node_runs_as_its_mode_says() {
    let mut flow = Flow::new("f");
    flow.add("par", SelfParallel(Gauge::new(3), BatchMode::Parallel { threads: Some(3) }));
    assert!(flow.to_mermaid().contains(r#"n0["par (parallel batch)"]"#), "{}", flow.to_mermaid());
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<usize>>("out").unwrap(), (0..12).collect::<Vec<_>>());

    let batch = SelfParallel(Gauge::new(3), BatchMode::Parallel { threads: Some(3) });
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(batch.0.peak(), 3, "the limit of 3 threads holds and is reached");
    let batch = SelfParallel(Gauge::new(1), BatchMode::Sequential);
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(batch.0.peak(), 1, "one item at a time");
    let mut flow = Flow::new("f");
    flow.add("seq", SelfParallel(Gauge::new(1), BatchMode::Sequential));
    assert!(flow.to_mermaid().contains(r#"n0["seq (batch)"]"#), "{}", flow.to_mermaid());
}

/// Every item fails all its attempts. On its last attempt, item 0 waits until
/// the others are on theirs, then fails, and so does its fallback; the others
/// fail once that fallback has run (and MARGIN). Attempts and fallbacks counted.
#[derive(Default)]
struct FailingSiblings {
    on_last_attempt: AtomicUsize,
    failed: AtomicBool,
    fallbacks: AtomicUsize,
    attempts: [AtomicU32; 4],
}

impl BatchNode for FailingSiblings {
    type Item = usize;
    type Output = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..4).collect())
    }
    fn exec(&self, i: &usize, ctx: &ExecContext) -> NodeResult<()> {
        self.attempts[*i].fetch_add(1, Ordering::SeqCst);
        if ctx.is_last_attempt() {
            if *i == 0 {
                wait_until(|| self.on_last_attempt.load(Ordering::SeqCst) == 3);
            } else {
                self.on_last_attempt.fetch_add(1, Ordering::SeqCst);
                wait_until(|| self.failed.load(Ordering::SeqCst));
                std::thread::sleep(MARGIN);
            }
        }
        Err(format!("item {i} failed").into())
    }
    fn exec_fallback(&self, _: &usize, error: minllm::BoxError, _: &ExecContext) -> NodeResult<()> {
        self.fallbacks.fetch_add(1, Ordering::SeqCst);
        self.failed.store(true, Ordering::SeqCst);
        Err(error)
    }
    fn post(&self, _: &mut SharedStore, _: Vec<usize>, _: Vec<()>) -> NodeResult<()> {
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(3)
    }
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: Some(4) }
    }
}

#[test]
fn items_cancelled_by_a_failing_sibling_skip_their_fallback() {
    let node = FailingSiblings::default();
    let err = node.run(&mut SharedStore::new()).unwrap_err();
    assert_eq!(err.item(), Some(0), "{err}");
    // All four failed their last attempt; only item 0, not cancelled, had its fallback.
    let attempts: Vec<u32> = node.attempts.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert_eq!(attempts, [3, 3, 3, 3]);
    assert_eq!(node.fallbacks.load(Ordering::SeqCst), 1, "a cancelled item ran its fallback");
}
