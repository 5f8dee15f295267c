//! Journaled runs whose journal fans the items of batch nodes out to workers
//! (`StepJournal::fan_out`, `Flow::run_batch_item`), on a journal in memory.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod journal_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use journal_common::{Fanning, Journal, runtime};
use minllm::{BatchNode, ExecContext, Flow, NodeResult, Params, SharedStore};

static CALLS: AtomicUsize = AtomicUsize::new(0);
/// The tests share the call counter.
static TURN: Mutex<()> = Mutex::new(());

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
