//! Batch flows: params merging, `post`, errors of the params function, and the
//! store discipline of parallel branches (their `exec`s overlap, their `prep`s
//! and `post`s never do; the first failing branch cancels the rest).

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gauge, PATIENCE, trace};
use minllm::{BatchFlow, ExecContext, Flow, Node, NodeResult, Params, Retry, SharedStore, Stage};

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

/// What the branches of a batch flow saw: whether two were ever inside prep or
/// post at once, and how many execs ran at once.
struct Seen {
    inside: AtomicUsize,
    overlap: AtomicBool,
    execs: Gauge,
}

impl Seen {
    fn critical_section(&self) {
        if self.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlap.store(true, Ordering::SeqCst);
        }
        // Long enough for another branch to get in, if it could.
        std::thread::sleep(Duration::from_millis(5));
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reports to `Seen` from each of its hooks.
struct Guarded(Arc<Seen>);

impl Node for Guarded {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        self.0.critical_section();
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        // Ten times the prep a fifth branch would need to join, if it could.
        self.0.execs.visit(Duration::from_millis(50));
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        self.0.critical_section();
        Ok(())
    }
}

#[test]
fn parallel_branches_overlap_exec_but_never_prep_or_post() {
    let seen = Arc::new(Seen { inside: AtomicUsize::new(0), overlap: AtomicBool::new(false), execs: Gauge::new(4) });
    let mut inner = Flow::new("branch");
    inner.add("guarded", Guarded(Arc::clone(&seen)));
    let batch =
        BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok((0..8).map(|i| Params::new().with("i", i)).collect()))
            .limit(4);
    batch.run(&mut SharedStore::new()).unwrap();
    assert!(!seen.overlap.load(Ordering::SeqCst), "two branches were inside prep/post at once");
    assert_eq!(seen.execs.peak(), 4, "the execs of exactly 4 branches run at once");
}

/// What the branches of the failing batch flow did.
#[derive(Default)]
struct Checked {
    prepped: std::sync::Mutex<Vec<String>>,
    retried: AtomicUsize,
}

/// Reads a file in prep and finds `bad` corrupt. Files f0 to f2 are busy on
/// their first attempt and retry after a wait that only a cancellation cuts
/// short; the others pass at once (they only start when cancellation fails).
struct FailFor {
    bad: &'static str,
    checked: Arc<Checked>,
}

impl Node for FailFor {
    type Prep = String;
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, p: &Params) -> NodeResult<String> {
        let file: String = p.get("file")?;
        self.checked.prepped.lock().unwrap().push(file.clone());
        if file == self.bad {
            return Err(format!("{file} is corrupt").into());
        }
        Ok(file)
    }
    fn exec(&self, file: &String, ctx: &ExecContext) -> NodeResult<()> {
        if ctx.attempt() > 1 {
            self.checked.retried.fetch_add(1, Ordering::SeqCst);
        } else if ["f0", "f1", "f2"].contains(&file.as_str()) {
            return Err(format!("{file} is busy").into());
        }
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, file: String, _: ()) -> NodeResult<()> {
        common::push(store, file);
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(2).wait(PATIENCE)
    }
}

#[test]
fn a_failing_branch_names_its_item_and_cancels_the_rest() {
    let checked = Arc::new(Checked::default());
    let mut inner = Flow::new("one");
    inner.add("check", FailFor { bad: "f3", checked: Arc::clone(&checked) });
    // Four threads take branches 0 to 3; branches 0 to 2 cannot end before
    // branch 3 fails, so no thread is free to take another branch before then.
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
        Ok((0..200).map(|i| Params::new().with("file", format!("f{i}"))).collect())
    })
    .limit(4);
    let mut outer = Flow::new("outer");
    outer.add("files", batch);
    let mut store = SharedStore::new();
    let err = outer.run(&mut store).unwrap_err();
    assert_eq!(err.to_string(), "prep of node `check` in flow `outer > files[3]` failed: f3 is corrupt");
    let prepped = checked.prepped.lock().unwrap().clone();
    assert!(prepped.iter().any(|f| f == "f3"), "{prepped:?}");
    let first_four = ["f0", "f1", "f2", "f3"];
    assert!(prepped.iter().all(|f| first_four.contains(&f.as_str())), "started after the failure: {prepped:?}");
    assert_eq!(checked.retried.load(Ordering::SeqCst), 0, "a branch retried after the failure");
    assert!(trace(&store).is_empty(), "branches ran to their end after the failure: {:?}", trace(&store));
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
