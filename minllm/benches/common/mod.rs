//! What the benchmark binaries share: the loop's store, action and node, the
//! loop as a runtime flow, a node of sleeping items, a current-thread runtime.
#![allow(dead_code)] // each binary uses a part

use std::hint::black_box;
use std::time::Duration;

use minllm::{Action, AsyncBatchMode, AsyncBatchNode, End, ExecContext, Flow, Node, NodeId, NodeResult, Params};

/// The store of the loops: a counter and a budget of transitions.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    pub value: u64,
    pub left: u64,
}

impl Counter {
    /// A counter that allows `n` transitions (at least one).
    pub fn with_budget(n: u64) -> Counter {
        Counter { value: 0, left: n.max(1) }
    }
}

#[derive(Clone, Copy, Action)]
pub enum Go {
    Next,
    Done,
}

/// One of the loop's nodes: adds its step to the counter.
pub struct Add(pub u64);

impl Node<Counter> for Add {
    type Prep = u64;
    type Exec = u64;
    type Action = Go;
    fn prep(&self, store: &Counter, _: &Params) -> NodeResult<u64> {
        Ok(store.value)
    }
    fn exec(&self, value: &u64, _: &ExecContext) -> NodeResult<u64> {
        Ok(black_box(*value).wrapping_add(self.0))
    }
    fn post(&self, store: &mut Counter, _: u64, value: u64) -> NodeResult<Go> {
        store.value = value;
        store.left -= 1;
        Ok(if store.left == 0 { Go::Done } else { Go::Next })
    }
}

/// A runtime flow of three nodes that `add` adds (with steps 1, 2, 3), in a
/// loop that ends when a node says `Done`; the caller bounds it.
pub fn loop_flow(add: impl Fn(&mut Flow<Counter>, &str, u64) -> NodeId) -> Flow<Counter> {
    let mut flow = Flow::new("loop");
    let a = add(&mut flow, "a", 1);
    let b = add(&mut flow, "b", 2);
    let c = add(&mut flow, "c", 3);
    flow.edge(a.on(Go::Next) >> b.on(Go::Next) >> c.on(Go::Next) >> a)
        .edge(a.on(Go::Done) >> End)
        .edge(b.on(Go::Done) >> End)
        .edge(c.on(Go::Done) >> End);
    flow
}

/// An async batch node whose items each sleep `wait`, as slow LLM calls
/// would, at most `limit` in flight. The store is the number of items, then
/// the number of outputs.
pub struct Sleepers {
    pub wait: Duration,
    pub limit: usize,
}

impl AsyncBatchNode<usize> for Sleepers {
    type Item = usize;
    type Output = usize;
    type Action = ();
    async fn prep(&self, n: &usize, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..*n).collect())
    }
    async fn exec(&self, i: &usize, _: &ExecContext<'_>) -> NodeResult<usize> {
        tokio::time::sleep(self.wait).await;
        Ok(*i)
    }
    async fn post(&self, n: &mut usize, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        *n = out.len();
        Ok(())
    }
    fn mode(&self) -> AsyncBatchMode {
        AsyncBatchMode::Concurrent { limit: Some(self.limit) }
    }
}

pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
