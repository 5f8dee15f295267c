//! Deep nesting: flows nested a hundred thousand levels deep run, validate,
//! draw and drop on a small thread stack; nesting that must recurse (batch
//! flows inside batch flows) ends with an error before the stack runs out.
#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use common::{mark, trace};
use minllm::{BatchFlow, Error, Flow, Params, SharedStore};

/// The stack of a thread spawned with Rust's defaults.
const SMALL_STACK: usize = 2 * 1024 * 1024;

/// A flow holding a flow holding ... `depth` levels, with one node at the bottom.
fn nested(depth: usize) -> Flow {
    let mut flow = Flow::new("bottom");
    flow.add("leaf", mark("leaf"));
    for _ in 0..depth {
        let mut outer = Flow::new("level");
        outer.add("inner", flow);
        flow = outer;
    }
    flow
}

/// Runs `test` on a thread with a 2 MiB stack; a stack overflow would abort
/// the whole test binary, so reaching the assertion after `join` is the proof.
fn on_small_stack<R: Send + 'static>(test: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new().stack_size(SMALL_STACK).spawn(test).unwrap().join().unwrap()
}

#[test]
fn a_flow_nested_100k_levels_runs_validates_draws_and_drops_on_a_small_stack() {
    let (action, trace, problems, lines) = on_small_stack(|| {
        let flow = nested(100_000);
        let mut store = SharedStore::new();
        let action = flow.run(&mut store).unwrap();
        let problems = flow.validate();
        let lines = flow.to_mermaid().lines().count();
        drop(flow);
        (action, trace(&store), problems, lines)
    });
    assert_eq!(action, "default");
    assert_eq!(trace, ["leaf"]);
    assert!(problems.is_empty(), "{problems:?}");
    // The header, then per level `subgraph`, `end` and a start edge, and the leaf.
    assert_eq!(lines, 1 + 3 * 100_000 + 2);
}

#[test]
fn a_flow_nested_100k_levels_runs_async_on_a_small_stack() {
    let trace = on_small_stack(|| {
        let flow = nested(100_000);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut store = SharedStore::new();
        runtime.block_on(flow.run_async(&mut store)).unwrap();
        trace(&store)
    });
    assert_eq!(trace, ["leaf"]);
}

#[test]
fn errors_deep_inside_name_the_whole_path() {
    let mut flow = Flow::new("bottom");
    let a = flow.add("a", Failing);
    flow.start(a);
    for level in 0..3 {
        let mut outer = Flow::new(format!("level{level}"));
        outer.add(format!("in{level}"), flow);
        flow = outer;
    }
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    assert_eq!(err.flow(), "level2 > in2 > in1 > in0");
}

/// A node whose `prep` fails.
struct Failing;

impl minllm::Node for Failing {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> minllm::NodeResult<()> {
        Err("no".into())
    }
    fn exec(&self, _: &(), _: &minllm::ExecContext) -> minllm::NodeResult<()> {
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> minllm::NodeResult<()> {
        Ok(())
    }
}

/// Batch flows inside batch flows, `depth` levels: each level recurses natively.
fn nested_batches(depth: usize) -> Flow {
    let mut flow = Flow::new("bottom");
    flow.add("leaf", mark("leaf"));
    for _ in 0..depth {
        let batch = BatchFlow::new(flow, |_: &SharedStore, _: &Params| Ok(vec![Params::new()]));
        let mut outer = Flow::new("level");
        outer.add("batch", batch);
        flow = outer;
    }
    flow
}

#[test]
fn batch_flows_nested_too_deeply_for_the_stack_end_with_an_error() {
    let (shallow, deep, problems) = on_small_stack(|| {
        let mut store = SharedStore::new();
        nested_batches(20).run(&mut store).unwrap();
        let shallow = trace(&store);
        let flow = nested_batches(20_000);
        let deep = flow.run(&mut SharedStore::new()).unwrap_err();
        let problems = flow.validate();
        (shallow, deep, problems)
    });
    assert_eq!(shallow, ["leaf"]);
    match &deep {
        Error::TooDeep { flow, left } => {
            assert!(flow.starts_with("level > batch[0] > batch[0] > batch[0]"), "{}", &flow[..80]);
            assert!(*left < 128 * 1024);
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    assert!(deep.to_string().contains("is nested too deeply for the thread's stack"));
    assert!(problems.is_empty());
}

#[test]
fn batch_flows_nested_too_deeply_end_with_an_error_in_async_runs_too() {
    let deep = on_small_stack(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let flow = nested_batches(20_000);
        runtime.block_on(flow.run_async(&mut SharedStore::new())).unwrap_err()
    });
    assert!(matches!(deep, Error::TooDeep { .. }), "{deep:?}");
}
