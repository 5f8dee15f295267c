//! The flow the Restate benchmark runs everywhere (`src/bin/restate_bench.rs`):
//! one node that counts to the store's `target`, a transition per count, its
//! `exec` trivial, so that what is measured is what each transition costs.

use minllm::{ExecContext, Flow, Node, NodeResult, Params};
use serde::{Deserialize, Serialize};

/// The benchmark's store.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Count {
    /// How many transitions to make.
    pub target: u64,
    /// How many were made.
    pub count: u64,
}

struct Tick;

impl Node<Count> for Tick {
    type Prep = u64;
    type Exec = u64;
    type Action = &'static str;
    fn prep(&self, count: &Count, _: &Params) -> NodeResult<u64> {
        Ok(count.count)
    }
    fn exec(&self, n: &u64, _: &ExecContext) -> NodeResult<u64> {
        Ok(n + 1)
    }
    fn post(&self, count: &mut Count, _: u64, next: u64) -> NodeResult<&'static str> {
        count.count = next;
        Ok(if next < count.target { "again" } else { "done" })
    }
    /// Quick, unless `BENCH_BLOCKS` is set (then as an `exec` that calls a model).
    fn exec_blocks(&self) -> bool {
        std::env::var_os("BENCH_BLOCKS").is_some()
    }
}

/// The flow `bench`.
pub fn flow() -> Flow<Count> {
    let mut flow = Flow::new("bench");
    let tick = flow.add("tick", Tick);
    flow.edge(tick.on("again") >> tick).edge(tick.on("done") >> minllm::End).max_steps(10_000_000);
    flow
}
