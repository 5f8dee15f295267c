//! Batch nodes and batch flows: order, first-error cancellation, panics,
//! params merging, and the store discipline of parallel branches.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::trace;
use minllm::{
    Batch, BatchFlow, BatchNode, Error, ExecContext, Flow, Node, NodeResult, Params, Retry, SharedStore, Stage,
};

/// Squares numbers; fails on `fail_at`; counts how many items started and how
/// many started after the failure.
#[derive(Default)]
struct Squares {
    fail_at: Option<usize>,
    panic_at: Option<usize>,
    pause: Duration,
    started: AtomicUsize,
    late_starts: AtomicUsize,
    failed: AtomicBool,
    attempts: Mutex<Vec<(usize, u32)>>,
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
        if self.failed.load(Ordering::SeqCst) {
            self.late_starts.fetch_add(1, Ordering::SeqCst);
        }
        let i = ctx.item().unwrap();
        self.attempts.lock().unwrap().push((i, ctx.attempt()));
        if self.panic_at == Some(i) {
            panic!("item {i} is cursed");
        }
        if self.fail_at == Some(i) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(format!("cannot square {n}").into());
        }
        std::thread::sleep(self.pause);
        Ok(n * n)
    }
    fn post(&self, store: &mut SharedStore, items: Vec<u64>, outputs: Vec<u64>) -> NodeResult<()> {
        assert_eq!(items.len(), outputs.len());
        store.set("squares", outputs);
        Ok(())
    }
}

fn numbers(n: u64) -> SharedStore {
    let store = SharedStore::new();
    store.set("numbers", (0..n).collect::<Vec<u64>>());
    store
}

#[test]
fn sequential_and_parallel_batches_keep_input_order() {
    for batch in [Batch::sequential(Squares::default()), Batch::parallel(Squares::default())] {
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
    let batch = Batch::parallel(Squares::default()).threads(3);
    let mut store = numbers(100);
    batch.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<u64>>("squares").unwrap()[99], 99 * 99);
}

#[test]
fn the_first_error_stops_a_sequential_batch_at_its_item() {
    let batch = Batch::sequential(Squares { fail_at: Some(4), ..Squares::default() });
    let mut flow = Flow::new("f");
    flow.add("squares", batch);
    let mut store = numbers(100);
    let err = flow.run(&mut store).unwrap_err();
    assert_eq!(err.item(), Some(4));
    assert_eq!(err.to_string(), "exec of node `squares` in flow `f` failed (item 4): cannot square 4");
    assert!(!store.contains("squares"), "post does not run after a failure");
}

#[test]
fn the_first_error_cancels_a_parallel_batch() {
    let node = Squares { fail_at: Some(10), pause: Duration::from_millis(2), ..Squares::default() };
    let batch = Batch::parallel(node);
    let mut store = numbers(2000);
    let err = batch.run(&mut store).unwrap_err();
    assert!(matches!(err, Error::Node { item: Some(10), stage: Stage::Exec, .. }), "{err:?}");
    let squares = batch.node();
    let started = squares.started.load(Ordering::SeqCst);
    let late = squares.late_starts.load(Ordering::SeqCst);
    // A worker may have passed its cancel check just before the failure; no
    // more than one item per worker thread can start after it.
    assert!(late <= rayon::current_num_threads(), "{late} items started after the failure");
    assert!(started < 200, "{started} of 2000 items started");
}

#[test]
fn a_panicking_item_becomes_an_error_with_its_index() {
    for batch in [
        Batch::sequential(Squares { panic_at: Some(3), ..Squares::default() }),
        Batch::parallel(Squares { panic_at: Some(3), ..Squares::default() }),
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
}

#[test]
fn retries_count_per_item_in_parallel() {
    let mut store = SharedStore::new();
    Batch::parallel(FirstTryFails).run(&mut store).unwrap();
    let out: Vec<(usize, u32)> = store.get("out").unwrap();
    assert_eq!(out, (0..64).map(|i| (i, 2)).collect::<Vec<_>>());
}

/// Records the params it sees.
struct Record;

impl Node for Record {
    type Prep = String;
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, p: &Params) -> NodeResult<String> {
        Ok(format!("{}:{}:{}", p.get_str("lang").unwrap_or("-"), p.get_str("file").unwrap_or("-"), p.len()))
    }
    fn exec(&self, _: &String, _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, seen: String, _: ()) -> NodeResult<()> {
        common::push(store, seen);
        Ok(())
    }
}

fn per_file(files: &'static [&'static str]) -> BatchFlow {
    let mut inner = Flow::new("one file");
    inner.add("record", Record);
    BatchFlow::new(inner, move |_: &SharedStore, _: &Params| {
        Ok(files.iter().map(|f| Params::new().with("file", *f)).collect())
    })
}

#[test]
fn batch_params_merge_over_the_parents() {
    let mut outer = Flow::new("outer");
    outer.add("files", per_file(&["a.txt", "b.txt"]));
    outer.params(Params::new().with("lang", "en").with("file", "parent.txt"));
    let mut store = SharedStore::new();
    assert_eq!(outer.run(&mut store).unwrap(), "default");
    assert_eq!(trace(&store), ["en:a.txt:2", "en:b.txt:2"]);
}

#[test]
fn a_batch_flow_post_picks_the_action() {
    let batch = per_file(&["x", "y", "z"]).post(|store: &mut SharedStore, list: Vec<Params>| {
        store.set("count", list.len());
        Ok(if list.len() > 2 { "many" } else { "few" })
    });
    let mut store = SharedStore::new();
    assert_eq!(batch.run(&mut store).unwrap(), "many");
    assert_eq!(store.get::<usize>("count"), Some(3));
}

/// Checks that no other branch is inside prep or post while it is, and
/// measures how many execs overlap.
struct Guarded;

static INSIDE: AtomicUsize = AtomicUsize::new(0);
static OVERLAP_SEEN: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn critical_section() {
    if INSIDE.fetch_add(1, Ordering::SeqCst) != 0 {
        OVERLAP_SEEN.store(true, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_millis(5));
    INSIDE.fetch_sub(1, Ordering::SeqCst);
}

impl Node for Guarded {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        critical_section();
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        critical_section();
        Ok(())
    }
}

#[test]
fn parallel_branches_overlap_exec_but_never_prep_or_post() {
    let mut inner = Flow::new("branch");
    inner.add("guarded", Guarded);
    let batch =
        BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok((0..8).map(|i| Params::new().with("i", i)).collect()))
            .limit(4);
    batch.run(&mut SharedStore::new()).unwrap();
    assert!(!OVERLAP_SEEN.load(Ordering::SeqCst), "two branches were inside prep/post at once");
    assert!(PEAK.load(Ordering::SeqCst) >= 2, "execs never overlapped");
}

/// Fails in the branch for `bad`; others wait a little.
struct FailFor(&'static str);

impl Node for FailFor {
    type Prep = String;
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, p: &Params) -> NodeResult<String> {
        Ok(p.get("file")?)
    }
    fn exec(&self, file: &String, _: &ExecContext) -> NodeResult<()> {
        if file == self.0 {
            return Err(format!("{file} is corrupt").into());
        }
        std::thread::sleep(Duration::from_millis(5));
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, file: String, _: ()) -> NodeResult<()> {
        common::push(store, file);
        Ok(())
    }
}

#[test]
fn a_failing_branch_names_its_item_and_cancels_the_rest() {
    let mut inner = Flow::new("one");
    inner.add("check", FailFor("f3"));
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
        Ok((0..200).map(|i| Params::new().with("file", format!("f{i}"))).collect())
    })
    .parallel();
    let mut outer = Flow::new("outer");
    outer.add("files", batch);
    let mut store = SharedStore::new();
    let err = outer.run(&mut store).unwrap_err();
    assert_eq!(err.to_string(), "exec of node `check` in flow `outer > files[3]` failed: f3 is corrupt");
    assert!(trace(&store).len() < 200, "the other branches were cancelled");
}

#[test]
fn batch_params_errors_are_reported() {
    let mut inner = Flow::new("one");
    inner.add("record", Record);
    let batch = BatchFlow::new(inner, |store: &SharedStore, _: &Params| Ok(store.try_get::<Vec<Params>>("missing")?));
    let err = batch.run(&mut SharedStore::new()).unwrap_err();
    assert_eq!(err.stage(), Some(Stage::BatchParams));
    assert!(err.to_string().contains("store has no key `missing`"), "{err}");
}

/// Runs in parallel on its own, at most 3 items at a time.
#[derive(Default)]
struct SelfParallel {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl BatchNode for SelfParallel {
    type Item = usize;
    type Output = usize;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..12).collect())
    }
    fn exec(&self, i: &usize, _: &ExecContext) -> NodeResult<usize> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(*i)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn mode(&self) -> minllm::BatchMode {
        minllm::BatchMode::Parallel { limit: Some(3) }
    }
}

#[test]
fn a_bare_batch_node_runs_as_its_mode_says() {
    let mut flow = Flow::new("f");
    flow.add("par", SelfParallel::default());
    assert!(flow.to_mermaid().contains(r#"n0["par (parallel batch)"]"#), "{}", flow.to_mermaid());
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<usize>>("out").unwrap(), (0..12).collect::<Vec<_>>());

    let batch = Batch::new(SelfParallel::default());
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(batch.node().peak.load(Ordering::SeqCst), 3, "the limit of 3 threads holds");
    let batch = Batch::sequential(SelfParallel::default());
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(batch.node().peak.load(Ordering::SeqCst), 1, "a wrapper overrides the mode");
}

/// Fails item 0 at once; the other items wait, then fail too, with fallbacks
/// that count their calls.
struct SlowFailures {
    fallbacks: AtomicUsize,
}

impl BatchNode for SlowFailures {
    type Item = usize;
    type Output = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..4).collect())
    }
    fn exec(&self, i: &usize, _: &ExecContext) -> NodeResult<()> {
        if *i != 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("item {i} failed").into())
    }
    fn exec_fallback(&self, _: &usize, error: minllm::BoxError, _: &ExecContext) -> NodeResult<()> {
        self.fallbacks.fetch_add(1, Ordering::SeqCst);
        Err(error)
    }
    fn post(&self, _: &mut SharedStore, _: Vec<usize>, _: Vec<()>) -> NodeResult<()> {
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(5)
    }
}

#[test]
fn items_cancelled_by_a_failing_sibling_skip_their_fallback() {
    let batch = Batch::parallel(SlowFailures { fallbacks: AtomicUsize::new(0) }).threads(4);
    let err = batch.run(&mut SharedStore::new()).unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    // Item 0 used its 5 attempts and its fallback; the others were cancelled.
    assert!(batch.node().fallbacks.load(Ordering::SeqCst) <= 1);
}

/// A `post` that uses rayon while its branch holds the store.
struct ParallelPost;

impl Node for ParallelPost {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        use rayon::prelude::*;
        let sum: u64 = (0..10_000u64).into_par_iter().sum();
        store.update_or_insert("sum", || 0_u64, |s| *s += sum)?;
        Ok(())
    }
}

#[test]
fn parallel_branches_whose_hooks_use_rayon_do_not_deadlock() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut inner = Flow::new("branch");
        inner.add("post", ParallelPost);
        let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
            Ok((0..128).map(|i| Params::new().with("i", i)).collect())
        })
        .limit(8);
        let mut store = SharedStore::new();
        batch.run(&mut store).unwrap();
        done.send(store.get::<u64>("sum")).unwrap();
    });
    let sum = finished.recv_timeout(Duration::from_secs(60)).expect("the batch flow deadlocked");
    assert_eq!(sum, Some(128 * (0..10_000u64).sum::<u64>()));
}
