//! `flow!` flows, sync and async, in journaled runs (`run_journaled`), on a
//! journal in memory.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod journal_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use journal_common::{Journal, runtime};
use minllm::{Action, BatchNode, ExecContext, Flow, NodeResult, Params, flow, node};

static CALLS: AtomicUsize = AtomicUsize::new(0);
/// The tests share the call counter.
static TURN: Mutex<()> = Mutex::new(());

/// The store of the tests' flows.
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
