//! Runs journaled by a durable-execution engine (`durable::StepJournal`), on a
//! journal in memory that behaves as Restate's does: each step runs once and
//! is recorded; a replay after a crash returns the records in order without
//! running them, and checks that the run asks for the same steps.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use minllm::durable::{StepJournal, StepResult};
use minllm::{AsyncNode, BatchNode, End, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

/// The journal of one run: its records, the next one to replay, and a step
/// at which the process "dies" (that step never runs, the run stops).
#[derive(Default)]
struct Journal {
    records: Mutex<Vec<(String, Vec<u8>)>>,
    cursor: AtomicUsize,
    crash_at: Mutex<Option<usize>>,
    /// Answers given to the run's questions, not journaled yet.
    answers: Mutex<Vec<Vec<u8>>>,
}

impl Journal {
    /// A new attempt of the run, as the engine makes after a crash: replay from the start.
    fn restart(&self) {
        self.cursor.store(0, Ordering::SeqCst);
        *self.crash_at.lock().unwrap() = None;
    }
    fn names(&self) -> Vec<String> {
        self.records.lock().unwrap().iter().map(|(n, _)| n.clone()).collect()
    }
}

impl StepJournal for Journal {
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>> {
        Box::pin(async move {
            let at = self.cursor.fetch_add(1, Ordering::SeqCst);
            if let Some((recorded, bytes)) = self.records.lock().unwrap().get(at).cloned() {
                if recorded != name {
                    return Err(format!("replay asked for step {name} where the journal has {recorded}"));
                }
                return Ok(bytes);
            }
            if *self.crash_at.lock().unwrap() == Some(at) {
                return Err("the process died".to_owned());
            }
            let bytes = step.await;
            self.records.lock().unwrap().push((name, bytes.clone()));
            Ok(bytes)
        })
    }

    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let at = self.cursor.fetch_add(1, Ordering::SeqCst);
            if let Some((recorded, bytes)) = self.records.lock().unwrap().get(at).cloned() {
                assert_eq!(recorded, name, "the replay asks where the journal has {recorded}");
                return Ok(bytes);
            }
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() {
                // The engine suspends the run here; nothing waits in memory.
                return Err(format!("waiting for an answer to {}", String::from_utf8_lossy(&question)));
            }
            let answer = answers.remove(0);
            self.records.lock().unwrap().push((name, answer.clone()));
            Ok(answer)
        })
    }
}

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
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

/// A journal that fans out as a cluster does: each batch item goes to a
/// "worker" ([`Flow::run_batch_item`], all at once, each on a task of its
/// own), and the items' results are journaled as one record.
struct Fanning<'f> {
    journal: Journal,
    flow: &'f Flow,
    sent: Mutex<Vec<String>>,
}

impl StepJournal for Fanning<'_> {
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>> {
        self.journal.step(name, step)
    }

    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        self.journal.ask(name, question)
    }

    fn fans_out(&self) -> bool {
        true
    }

    fn fan_out<'a>(
        &'a self,
        node: String,
        name: String,
        items: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<Vec<StepResult>, String>> {
        Box::pin(async move {
            self.sent.lock().unwrap().push(node.clone());
            let mut steps = Vec::new();
            for (i, item) in items.iter().enumerate() {
                steps.push(self.flow.run_batch_item(&node, i, item)?);
            }
            // The items run only if the record is not there already.
            let all = Box::pin(async move {
                let tasks: Vec<_> = steps.into_iter().map(tokio::spawn).collect();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(task.await.map_err(|e| e.to_string()).unwrap_or_default());
                }
                serde_json::to_vec(&results).unwrap()
            });
            let record = self.journal.step(format!("{name} items"), all).await?;
            serde_json::from_slice(&record).map_err(|e| e.to_string())
        })
    }
}

/// Squares its items at the same time, in a nested flow.
struct Squares;

impl BatchNode for Squares {
    type Item = u64;
    type Output = u64;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<u64>> {
        Ok((0..store.get::<u64>("n").unwrap_or(5)).collect())
    }
    fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<u64> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if *i == 13 {
            return Err("thirteen is unlucky".into());
        }
        Ok(i * i)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<u64>, squares: Vec<u64>) -> NodeResult<()> {
        store.set("squares", squares);
        Ok(())
    }
    fn mode(&self) -> minllm::BatchMode {
        minllm::BatchMode::Parallel { threads: Some(3) }
    }
}

#[test]
fn a_journal_that_fans_out_gets_the_items_of_parallel_batch_nodes_and_their_results_come_back_in_order() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    CALLS.store(0, Ordering::SeqCst);
    let mut inner = Flow::new("inner");
    inner.add("squares", Squares);
    let mut flow = Flow::new("f");
    flow.add("stage", inner);
    assert_eq!(flow.fanned_out_nodes(), [("stage > squares".to_owned(), 3)]);
    let fanning = Fanning { journal: Journal::default(), flow: &flow, sent: Mutex::default() };
    let mut store = SharedStore::new();
    store.set("n", 12_u64);
    runtime().block_on(flow.run_journaled(&mut store, &fanning, "r")).unwrap();
    let expected: Vec<u64> = (0..12).map(|i| i * i).collect();
    assert_eq!(store.get::<Vec<u64>>("squares").unwrap(), expected);
    assert_eq!(*fanning.sent.lock().unwrap(), ["stage > squares"]);
    assert_eq!(fanning.journal.names(), ["stage#1 > squares#1 items"]);
    assert_eq!(CALLS.load(Ordering::SeqCst), 12);
    // A replay reads the items' results back and sends nothing.
    fanning.journal.restart();
    let mut again = SharedStore::new();
    again.set("n", 12_u64);
    runtime().block_on(flow.run_journaled(&mut again, &fanning, "r")).unwrap();
    assert_eq!(again.get::<Vec<u64>>("squares").unwrap(), expected);
    assert_eq!(CALLS.load(Ordering::SeqCst), 12);
    // An item that fails on its worker fails the run, naming the node and the item.
    let fanning = Fanning { journal: Journal::default(), flow: &flow, sent: Mutex::default() };
    let mut store = SharedStore::new();
    store.set("n", 20_u64);
    let error = runtime().block_on(flow.run_journaled(&mut store, &fanning, "r2")).unwrap_err().to_string();
    assert!(error.contains("node `squares`") && error.contains("item 13"), "{error}");
    assert!(error.contains("thirteen is unlucky"), "{error}");
}

#[test]
fn a_worker_refuses_items_of_a_node_it_does_not_have_or_bytes_that_are_not_items() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut flow = Flow::new("f");
    flow.add("squares", Squares);
    let unknown = flow.run_batch_item("cubes", 0, b"3").err().unwrap();
    assert!(unknown.contains("flow `f` has no batch node `cubes`"), "{unknown}");
    // The node exists, the bytes are not a `u64`: the step's result says so.
    let step = flow.run_batch_item("squares", 4, b"\"four\"").unwrap();
    let outcome = String::from_utf8(runtime().block_on(step)).unwrap();
    assert!(
        outcome.contains("item 4 of batch node `squares`") && outcome.contains("not one of its items"),
        "{outcome}"
    );
    // Items run one after the other are not the workers' to run.
    struct Sequential;
    impl BatchNode for Sequential {
        type Item = u64;
        type Output = u64;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u64>> {
            Ok(vec![1])
        }
        fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<u64> {
            Ok(*i)
        }
        fn post(&self, _: &mut SharedStore, _: Vec<u64>, _: Vec<u64>) -> NodeResult<()> {
            Ok(())
        }
    }
    let mut flow = Flow::new("g");
    flow.add("one_by_one", Sequential);
    assert!(flow.fanned_out_nodes().is_empty());
    assert!(flow.run_batch_item("one_by_one", 0, b"1").is_err());
    // A sequential batch node keeps its items in the run even on a journal that fans out.
    let fanning = Fanning { journal: Journal::default(), flow: &flow, sent: Mutex::default() };
    runtime().block_on(flow.run_journaled(&mut SharedStore::new(), &fanning, "r")).unwrap();
    assert!(fanning.sent.lock().unwrap().is_empty());
    assert_eq!(fanning.journal.names(), ["one_by_one#1[0]"]);
}

#[test]
fn items_that_cannot_travel_are_an_error_that_says_how_to_fix_it() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    #[derive(Clone)]
    struct Page {
        text: String,
    }
    struct Lengths;
    impl BatchNode for Lengths {
        type Item = Page;
        type Output = usize;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<Page>> {
            Ok(vec![Page { text: "abc".to_owned() }])
        }
        fn exec(&self, page: &Page, _: &ExecContext) -> NodeResult<usize> {
            Ok(page.text.len())
        }
        fn post(&self, _: &mut SharedStore, _: Vec<Page>, _: Vec<usize>) -> NodeResult<()> {
            Ok(())
        }
        fn mode(&self) -> minllm::BatchMode {
            minllm::BatchMode::Parallel { threads: None }
        }
    }
    let mut flow = Flow::new("f");
    flow.add("lengths", Lengths);
    let fanning = Fanning { journal: Journal::default(), flow: &flow, sent: Mutex::default() };
    let error = runtime().block_on(flow.run_journaled(&mut SharedStore::new(), &fanning, "r")).unwrap_err().to_string();
    assert!(error.contains("node `lengths`") && error.contains("sent to workers"), "{error}");
    assert!(error.contains("Page") && error.contains("minllm::durable::register"), "{error}");
    assert!(fanning.sent.lock().unwrap().is_empty());
}

#[test]
fn concurrent_async_batch_nodes_fan_out_too() {
    use minllm::{AsyncBatchMode, AsyncBatchNode};
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    struct Shout;
    impl AsyncBatchNode for Shout {
        type Item = String;
        type Output = String;
        type Action = ();
        async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<String>> {
            Ok(vec!["a".into(), "b".into(), "c".into()])
        }
        async fn exec(&self, word: &String, _: &ExecContext<'_>) -> NodeResult<String> {
            tokio::task::yield_now().await;
            Ok(word.to_uppercase())
        }
        async fn post(&self, store: &mut SharedStore, _: Vec<String>, out: Vec<String>) -> NodeResult<()> {
            store.set("out", out);
            Ok(())
        }
        fn mode(&self) -> AsyncBatchMode {
            AsyncBatchMode::Concurrent { limit: Some(2) }
        }
    }
    let mut flow = Flow::new("f");
    flow.add("shout", Shout);
    assert_eq!(flow.fanned_out_nodes(), [("shout".to_owned(), 2)]);
    let fanning = Fanning { journal: Journal::default(), flow: &flow, sent: Mutex::default() };
    let mut store = SharedStore::new();
    runtime().block_on(flow.run_journaled(&mut store, &fanning, "r")).unwrap();
    assert_eq!(store.get::<Vec<String>>("out").unwrap(), ["A", "B", "C"]);
    assert_eq!(*fanning.sent.lock().unwrap(), ["shout"]);
}

/// `flow!` flows, sync and async, in journaled runs.
mod typed {
    use super::{CALLS, Journal, TURN, runtime};
    use minllm::{Action, BatchNode, ExecContext, Flow, NodeResult, Params, flow, node};
    use std::sync::atomic::Ordering;

    #[derive(Debug, Default)]
    pub struct Tally {
        n: u32,
        doubles: Vec<u32>,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Action)]
    enum More {
        Again,
        Done,
    }

    struct Count;

    #[node]
    impl Count {
        fn prep(&self, tally: &Tally) -> u32 {
            tally.n
        }
        fn exec(&self, n: &u32) -> u32 {
            CALLS.fetch_add(1, Ordering::SeqCst);
            n + 1
        }
        fn post(&self, tally: &mut Tally, _: u32, n: u32) -> More {
            tally.n = n;
            if n < 3 { More::Again } else { More::Done }
        }
    }

    struct Doubles;

    impl BatchNode<Tally> for Doubles {
        type Item = u32;
        type Output = u32;
        type Action = ();
        fn prep(&self, tally: &Tally, _: &Params) -> NodeResult<Vec<u32>> {
            Ok((0..tally.n).collect())
        }
        fn exec(&self, i: &u32, _: &ExecContext) -> NodeResult<u32> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            Ok(i * 2)
        }
        fn post(&self, tally: &mut Tally, _: Vec<u32>, doubles: Vec<u32>) -> NodeResult<()> {
            tally.doubles = doubles;
            Ok(())
        }
        fn mode(&self) -> minllm::BatchMode {
            minllm::BatchMode::Parallel { threads: Some(2) }
        }
    }

    flow! {
        struct Counting: Tally {
            node count: Count = Count;
            node double: Doubles = Doubles;
            start count;
            max_steps 10;
            count - More::Again >> count;
            count - More::Done >> double;
        }
    }

    flow! {
        async struct AsyncCounting: Tally {
            node count: Count = Count;
            node double: Doubles = Doubles;
            start count;
            max_steps 10;
            count - More::Again >> count;
            count - More::Done >> double;
        }
    }

    const STEPS: [&str; 6] = ["count#1", "count#2", "count#3", "double#4[0]", "double#4[1]", "double#4[2]"];

    #[test]
    fn a_sync_flow_macro_flow_replays_its_finished_steps_after_a_crash() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        CALLS.store(0, Ordering::SeqCst);
        let (flow, journal, rt) = (Counting::new(), Journal::default(), runtime());
        *journal.crash_at.lock().unwrap() = Some(4);
        let died = rt.block_on(flow.run_journaled(&mut Tally::default(), &journal, "r")).unwrap_err();
        assert!(died.to_string().contains("the process died"), "{died}");
        assert_eq!(CALLS.load(Ordering::SeqCst), 4);
        journal.restart();
        let mut tally = Tally::default();
        rt.block_on(flow.run_journaled(&mut tally, &journal, "r")).unwrap();
        assert_eq!((tally.n, tally.doubles.as_slice()), (3, &[0, 2, 4][..]));
        assert_eq!(journal.names(), STEPS);
        assert_eq!(CALLS.load(Ordering::SeqCst), 6, "each exec ran once across the crash");
    }

    #[test]
    fn an_async_flow_macro_flow_runs_journaled_with_the_same_steps() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        CALLS.store(0, Ordering::SeqCst);
        let (flow, journal) = (AsyncCounting::new(), Journal::default());
        let mut tally = Tally::default();
        runtime().block_on(flow.run_journaled(&mut tally, &journal, "r")).unwrap();
        assert_eq!(tally.doubles, [0, 2, 4]);
        assert_eq!(journal.names(), STEPS);
        // A replay runs nothing.
        journal.restart();
        let mut again = Tally::default();
        runtime().block_on(flow.run_journaled(&mut again, &journal, "r")).unwrap();
        assert_eq!(again.doubles, [0, 2, 4]);
        assert_eq!(CALLS.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn a_flow_macro_flow_in_a_runtime_flow_journals_its_nodes_under_its_own_step() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let mut flow = Flow::new("outer");
        flow.add("stage", Counting::new());
        let journal = Journal::default();
        let mut tally = Tally::default();
        runtime().block_on(flow.run_journaled(&mut tally, &journal, "r")).unwrap();
        assert_eq!(tally.doubles, [0, 2, 4]);
        let expected: Vec<String> = STEPS.iter().map(|s| format!("stage#1 > {s}")).collect();
        assert_eq!(journal.names(), expected);
        // Its batch node is not the workers' to run: the runtime flow's
        // workers find nodes by key among the runtime flow's own.
        assert!(flow.fanned_out_nodes().is_empty());
    }

    #[test]
    fn a_sync_flow_macro_flow_needs_a_multi_thread_runtime_to_run_journaled() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let error = rt.block_on(Counting::new().run_journaled(&mut Tally::default(), &Journal::default(), "r"));
        let error = error.unwrap_err().to_string();
        assert!(error.contains("node `count`") && error.contains("multi-thread tokio runtime"), "{error}");
    }

    struct Approve;

    #[node]
    impl Approve {
        fn prep(&self, tally: &Tally) -> u32 {
            tally.n
        }
        fn exec(&self, n: &u32) -> NodeResult<String> {
            CALLS.fetch_add(1, Ordering::SeqCst);
            minllm::durable::interrupt(format!("publish {n}?"))
        }
        fn post(&self, tally: &mut Tally, _: u32, answer: String) {
            tally.doubles = vec![answer.len() as u32];
        }
    }

    flow! {
        struct Approval: Tally {
            node approve: Approve = Approve;
            start approve;
        }
    }

    #[test]
    fn an_interrupt_in_a_sync_flow_macro_flow_waits_for_its_answer_through_the_journal() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        CALLS.store(0, Ordering::SeqCst);
        let (flow, journal, rt) = (Approval::new(), Journal::default(), runtime());
        let waiting = rt.block_on(flow.run_journaled(&mut Tally::default(), &journal, "r")).unwrap_err().to_string();
        assert!(waiting.contains("waiting for an answer to \"publish 0?\""), "{waiting}");
        journal.answers.lock().unwrap().push(br#""yes""#.to_vec());
        journal.restart();
        let mut tally = Tally::default();
        rt.block_on(flow.run_journaled(&mut tally, &journal, "r")).unwrap();
        assert_eq!(tally.doubles, [3]);
        assert_eq!(journal.names(), ["approve#1", "approve#1 question 1", "approve#1 (answered 1)"]);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "asked once, then answered");
    }
}
