//! `#[node]` and `#[derive(Action)]` on valid code.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use minllm::{Action, BoxError, ExecContext, Flow, Node, Params, SharedStore, node};

#[derive(Debug, Clone, Copy, PartialEq, Action)]
enum Decision {
    Search,
    GiveUp,
    #[action(rename = "final answer")]
    Answer,
}

#[test]
fn derived_actions_have_snake_case_labels() {
    assert_eq!(Decision::Search.label(), "search");
    assert_eq!(Decision::GiveUp.label(), "give_up");
    assert_eq!(Decision::Answer.into_label(), "final answer");
    assert_eq!(Decision::declared(), Some(&["search", "give_up", "final answer"][..]));
}

struct Decide;

#[node]
impl Decide {
    fn prep(&self, store: &SharedStore) -> Option<u32> {
        store.get("hits")
    }
    fn exec(&self, hits: &Option<u32>) -> Decision {
        match hits {
            Some(n) if *n >= 2 => Decision::Answer,
            Some(_) | None => Decision::Search,
        }
    }
    fn post(&self, _: &mut SharedStore, _: Option<u32>, d: Decision) -> Decision {
        d
    }
}

struct Search {
    calls: AtomicU32,
}

#[node(attempts = 3, wait_ms = 1)]
impl Search {
    fn prep(&self, store: &SharedStore, params: &Params) -> Result<String, BoxError> {
        let topic: String = params.get("topic")?;
        Ok(format!("{topic} #{}", store.get::<u32>("hits").unwrap_or(0)))
    }
    fn exec(&self, query: &String, ctx: &ExecContext) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if ctx.attempt() < 2 { Err("flaky".to_string()) } else { Ok(format!("result for {query}")) }
    }
    fn post(&self, store: &mut SharedStore, exec: String) -> Result<(), BoxError> {
        store.update_or_insert("hits", || 0_u32, |h| *h += 1)?;
        store.update_or_insert("results", Vec::new, |r: &mut Vec<String>| r.push(exec))?;
        Ok(())
    }
}

struct Answer;

#[node]
impl Answer {
    fn exec(&self) -> &'static str {
        "42"
    }
}

#[test]
fn macro_nodes_run_in_a_runtime_flow() {
    let mut flow = Flow::new("agent");
    let decide = flow.add("decide", Decide);
    let search = flow.add("search", Search { calls: AtomicU32::new(0) });
    let answer = flow.add("answer", Answer);
    flow.edge(decide.on(Decision::Search) >> search >> decide)
        .edge(decide.on(Decision::Answer) >> answer)
        .edge(decide.on(Decision::GiveUp) >> answer)
        .max_steps(10)
        .params(Params::new().with("topic", "rust"));
    assert!(flow.validate().is_empty(), "{:?}", flow.validate());
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<String>>("results").unwrap(), ["result for rust #0", "result for rust #1"]);
    assert_eq!(Search { calls: AtomicU32::new(0) }.retry().attempts, 3);
}

/// Counts its runs; has neither `prep` nor `post`.
struct Tick {
    runs: AtomicU32,
}

#[node]
impl Tick {
    fn exec(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// A node with only `exec` works with any store, and leaves it as it was.
#[test]
fn an_exec_only_node_fits_any_store() {
    let tick = Tick { runs: AtomicU32::new(0) };
    let mut n = 5_u8;
    Node::<u8>::run(&tick, &mut n).unwrap();
    let mut text = String::from("kept");
    Node::<String>::run(&tick, &mut text).unwrap();
    assert_eq!(tick.runs.load(Ordering::SeqCst), 2);
    assert_eq!((n, text.as_str()), (5, "kept"));
}

/// Counts the characters of each document, borrowing each as `&str`.
struct Lengths;

#[node(batch)]
impl Lengths {
    fn prep(&self, store: &SharedStore) -> Vec<String> {
        store.get("docs").unwrap_or_default()
    }
    fn exec(&self, doc: &str) -> usize {
        doc.chars().count()
    }
    fn post(&self, store: &mut SharedStore, _: Vec<String>, lengths: Vec<usize>) {
        store.set("lengths", lengths);
    }
}

/// Sums each list of numbers, borrowing each as a slice.
struct Sums;

#[node(parallel)]
impl Sums {
    fn prep(&self, store: &SharedStore) -> Vec<Vec<u32>> {
        store.get("lists").unwrap_or_default()
    }
    fn exec(&self, list: &[u32]) -> u32 {
        list.iter().sum()
    }
    fn post(&self, store: &mut SharedStore, _: Vec<Vec<u32>>, sums: Vec<u32>) {
        store.set("sums", sums);
    }
}

#[test]
fn batch_items_may_be_borrowed_as_str_and_slices() {
    let store = SharedStore::new();
    store.set("docs", vec!["héllo".to_string(), String::new(), "abc".to_string()]);
    store.set("lists", vec![vec![1_u32, 2, 3], vec![], vec![10]]);
    let mut flow = Flow::new("borrowed");
    let lengths = flow.add("lengths", Lengths);
    let sums = flow.add("sums", Sums);
    flow.edge(lengths >> sums);
    flow.run(&mut store.clone()).unwrap();
    assert_eq!(store.get::<Vec<usize>>("lengths").unwrap(), [5, 0, 3]);
    assert_eq!(store.get::<Vec<u32>>("sums").unwrap(), [6, 0, 10]);
}

struct Quick;

#[node(blocking = false)]
impl Quick {
    fn exec(&self) -> u32 {
        1
    }
}

#[test]
fn blocking_false_says_the_exec_is_quick_and_the_default_says_it_may_block() {
    assert!(!Node::<SharedStore>::exec_blocks(&Quick));
    assert!(Node::<SharedStore>::exec_blocks(&Answer));
}
