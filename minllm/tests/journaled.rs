//! Runs journaled by a durable-execution engine (`durable::StepJournal`), on a
//! journal in memory that behaves as Restate's does (`journal_common`).

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod journal_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use journal_common::{Journal, runtime};
use minllm::{AsyncNode, BatchNode, End, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

static CALLS: AtomicUsize = AtomicUsize::new(0);
static FLAKY: AtomicUsize = AtomicUsize::new(0);

/// Three paid calls in a loop.
struct Fetch;

impl Node for Fetch {
    type Prep = u64;
    type Exec = String;
    type Action = &'static str;
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<u64> {
        Ok(store.get::<u64>("n").unwrap_or(0))
    }
    fn exec(&self, n: &u64, _: &ExecContext) -> NodeResult<String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        // The second call fails once, and is retried inside its step.
        if *n == 1 && FLAKY.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("a hiccup".into());
        }
        Ok(format!("page {n}"))
    }
    fn post(&self, store: &mut SharedStore, n: u64, page: String) -> NodeResult<&'static str> {
        store.update_or_insert("pages", Vec::new, |v: &mut Vec<String>| v.push(page))?;
        store.set("n", n + 1);
        Ok(if n + 1 < 3 { "again" } else { "done" })
    }
    fn retry(&self) -> minllm::Retry {
        minllm::Retry::attempts(2)
    }
}

/// An async paid call, in a nested flow.
struct Sum;

impl AsyncNode for Sum {
    type Prep = Vec<String>;
    type Exec = String;
    type Action = ();
    async fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<String>> {
        Ok(store.get("pages").unwrap_or_default())
    }
    async fn exec(&self, pages: &Vec<String>, _: &ExecContext<'_>) -> NodeResult<String> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(pages.join(" + "))
    }
    async fn post(&self, store: &mut SharedStore, _: Vec<String>, sum: String) -> NodeResult<()> {
        store.set("sum", sum);
        Ok(())
    }
}

fn flow() -> Flow {
    let mut inner = Flow::new("report");
    inner.add("sum", Sum);
    let mut outer = Flow::new("research");
    let fetch = outer.add("fetch", Fetch);
    let report = outer.add("report", inner);
    outer.edge(fetch.on("again") >> fetch).edge(fetch.on("done") >> report).max_steps(10);
    outer
}

#[test]
fn a_journaled_run_replays_its_finished_steps_after_a_crash_and_runs_each_exec_once() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    CALLS.store(0, Ordering::SeqCst);
    FLAKY.store(0, Ordering::SeqCst);
    let (flow, journal, rt) = (flow(), Journal::default(), runtime());
    // The process dies when the run reaches its third step.
    *journal.crash_at.lock().unwrap() = Some(2);
    let error = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r1")).unwrap_err();
    assert!(error.to_string().contains("the process died"), "{error}");
    assert_eq!(journal.names(), ["fetch#1", "fetch#2"]);
    // The engine replays the run from its input: the two finished steps are
    // read back, the rest runs.
    journal.restart();
    let mut store = SharedStore::new();
    let last = rt.block_on(flow.run_journaled(&mut store, &journal, "r1")).unwrap();
    assert_eq!(last, "default");
    assert_eq!(store.get::<String>("sum").unwrap(), "page 0 + page 1 + page 2");
    assert_eq!(journal.names(), ["fetch#1", "fetch#2", "fetch#3", "report#4 > sum#1"]);
    // Four paid calls and one retry: nothing ran twice across the crash.
    assert_eq!(CALLS.load(Ordering::SeqCst), 5);
    // A third attempt replays everything and calls nothing.
    journal.restart();
    let mut again = SharedStore::new();
    rt.block_on(flow.run_journaled(&mut again, &journal, "r1")).unwrap();
    assert_eq!(again.get::<String>("sum"), store.get::<String>("sum"));
    assert_eq!(CALLS.load(Ordering::SeqCst), 5);
}

/// The tests share the call counters.
static TURN: Mutex<()> = Mutex::new(());

#[test]
fn a_failed_step_is_journaled_and_fails_the_same_way_on_replay() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    struct Broken;
    impl Node for Broken {
        type Prep = ();
        type Exec = ();
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Err("the model refused".into())
        }
        fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
            Ok(())
        }
        fn retry(&self) -> minllm::Retry {
            minllm::Retry::attempts(3)
        }
    }
    CALLS.store(0, Ordering::SeqCst);
    let mut flow = Flow::new("f");
    flow.add("broken", Broken);
    let (journal, rt) = (Journal::default(), runtime());
    let first = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r")).unwrap_err().to_string();
    assert!(first.contains("node `broken`") && first.contains("after 3 attempts: the model refused"), "{first}");
    journal.restart();
    let again = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r")).unwrap_err().to_string();
    assert_eq!(again, first);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "the replay read the failure back");
}

#[test]
fn a_batch_node_journals_each_item_and_a_replay_redoes_only_the_item_in_flight() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    struct Squares;
    impl BatchNode for Squares {
        type Item = u64;
        type Output = u64;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u64>> {
            Ok((0..5).collect())
        }
        fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<u64> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Ok(i * i)
        }
        fn post(&self, store: &mut SharedStore, _: Vec<u64>, squares: Vec<u64>) -> NodeResult<()> {
            store.set("squares", squares);
            Ok(())
        }
        fn mode(&self) -> minllm::BatchMode {
            minllm::BatchMode::Parallel { threads: Some(4) }
        }
    }
    CALLS.store(0, Ordering::SeqCst);
    let mut flow = Flow::new("f");
    let squares = flow.add("squares", Squares);
    flow.edge(squares >> End);
    let (journal, rt) = (Journal::default(), runtime());
    *journal.crash_at.lock().unwrap() = Some(3);
    let died = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r")).unwrap_err();
    assert!(died.to_string().contains("the process died"), "{died}");
    journal.restart();
    let mut store = SharedStore::new();
    rt.block_on(flow.run_journaled(&mut store, &journal, "r")).unwrap();
    assert_eq!(store.get::<Vec<u64>>("squares").unwrap(), [0, 1, 4, 9, 16]);
    assert_eq!(journal.names(), ["squares#1[0]", "squares#1[1]", "squares#1[2]", "squares#1[3]", "squares#1[4]"]);
    assert_eq!(CALLS.load(Ordering::SeqCst), 5, "each item ran once across the crash");
}

#[test]
fn async_batch_nodes_and_parallel_batch_flows_run_an_item_a_step() {
    use minllm::{AsyncBatchNode, BatchFlow};
    // `Sum` counts its calls, which other tests check.
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    struct Items;
    impl AsyncBatchNode for Items {
        type Item = u32;
        type Output = u32;
        type Action = ();
        async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
            Ok(vec![1, 2])
        }
        async fn exec(&self, i: &u32, _: &ExecContext<'_>) -> NodeResult<u32> {
            tokio::task::yield_now().await;
            Ok(i * 10)
        }
        async fn post(&self, store: &mut SharedStore, _: Vec<u32>, out: Vec<u32>) -> NodeResult<()> {
            store.set("out", out);
            Ok(())
        }
    }
    let mut flow = Flow::new("f");
    let items = flow.add("items", Items);
    flow.edge(items >> End);
    let journal = Journal::default();
    let mut store = SharedStore::new();
    runtime().block_on(flow.run_journaled(&mut store, &journal, "r")).unwrap();
    assert_eq!(store.get::<Vec<u32>>("out").unwrap(), [10, 20]);
    assert_eq!(journal.names(), ["items#1[0]", "items#1[1]"]);
    // A parallel batch flow runs its items one after the other, each node a step.
    let mut inner = Flow::new("inner");
    inner.add("sum", Sum);
    let mut outer = Flow::new("outer");
    outer.add("fan", BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new(); 2])).parallel());
    let journal = Journal::default();
    let mut store = SharedStore::new();
    store.set("pages", vec!["a".to_string(), "b".to_string()]);
    runtime().block_on(outer.run_journaled(&mut store, &journal, "r")).unwrap();
    assert_eq!(store.get::<String>("sum").unwrap(), "a + b");
    assert_eq!(journal.names(), ["fan#1[0] > sum#1", "fan#1[1] > sum#1"]);
}

#[test]
fn an_interrupt_in_a_journaled_run_waits_for_its_answer_through_the_journal() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    struct Publish;
    impl Node for Publish {
        type Prep = ();
        type Exec = String;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            let first: String = minllm::durable::interrupt("publish?")?;
            let second: String = minllm::durable::interrupt(format!("really {first}?"))?;
            Ok(format!("{first}/{second}"))
        }
        fn post(&self, store: &mut SharedStore, _: (), verdict: String) -> NodeResult<()> {
            store.set("verdict", verdict);
            Ok(())
        }
    }
    CALLS.store(0, Ordering::SeqCst);
    let mut flow = Flow::new("f");
    flow.add("publish", Publish);
    let (journal, rt) = (Journal::default(), runtime());
    let waiting = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r")).unwrap_err().to_string();
    assert!(waiting.contains("waiting for an answer to \"publish?\""), "{waiting}");
    // The answer comes; the engine replays the run, which asks again.
    journal.answers.lock().unwrap().push(br#""yes""#.to_vec());
    journal.restart();
    let waiting = rt.block_on(flow.run_journaled(&mut SharedStore::new(), &journal, "r")).unwrap_err().to_string();
    assert!(waiting.contains("waiting for an answer to \"really yes?\""), "{waiting}");
    journal.answers.lock().unwrap().push(br#""sure""#.to_vec());
    journal.restart();
    let mut store = SharedStore::new();
    rt.block_on(flow.run_journaled(&mut store, &journal, "r")).unwrap();
    assert_eq!(store.get::<String>("verdict").unwrap(), "yes/sure");
    assert_eq!(
        journal.names(),
        [
            "publish#1",
            "publish#1 question 1",
            "publish#1 (answered 1)",
            "publish#1 question 2",
            "publish#1 (answered 2)",
        ]
    );
    assert_eq!(CALLS.load(Ordering::SeqCst), 3, "exec ran once per question and once to finish");
}
