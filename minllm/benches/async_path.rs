//! The async path against the sync one, and batches against bare rayon and
//! bare futures, each in the same run; results in BENCHMARKS.md.
//!
//! `cargo bench -p minllm --bench async_path`
//!
//! `MINLLM_ASYNC=<variant>:<n>` runs one variant once and exits, for counting
//! instructions under callgrind. Memory is measured by `async_memory`, whose
//! counting allocator would slow every allocation here.

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

mod common;

use std::hint::black_box;

use common::{Add, Counter, Go, current_thread, loop_flow};
use criterion::{Criterion, Throughput, criterion_group};
use minllm::{AsyncNode, BatchMode, BatchNode, ExecContext, Flow, Node, NodeId, NodeResult, Params, flow};
use rayon::prelude::*;

/// [`Add`] saying that its `exec` is quick: in async runs it runs in place.
struct QuickAdd(u64);

impl Node<Counter> for QuickAdd {
    type Prep = u64;
    type Exec = u64;
    type Action = Go;
    fn prep(&self, store: &Counter, params: &Params) -> NodeResult<u64> {
        Add(self.0).prep(store, params)
    }
    fn exec(&self, value: &u64, ctx: &ExecContext) -> NodeResult<u64> {
        Add(self.0).exec(value, ctx)
    }
    fn post(&self, store: &mut Counter, prep: u64, value: u64) -> NodeResult<Go> {
        Add(self.0).post(store, prep, value)
    }
    fn exec_blocks(&self) -> bool {
        false
    }
}

/// The same node with async hooks that complete at once.
struct AsyncAdd(u64);

impl AsyncNode<Counter> for AsyncAdd {
    type Prep = u64;
    type Exec = u64;
    type Action = Go;
    async fn prep(&self, store: &Counter, _: &Params) -> NodeResult<u64> {
        Ok(store.value)
    }
    async fn exec(&self, value: &u64, _: &ExecContext<'_>) -> NodeResult<u64> {
        Ok(black_box(*value).wrapping_add(self.0))
    }
    async fn post(&self, store: &mut Counter, _: u64, value: u64) -> NodeResult<Go> {
        store.value = value;
        store.left -= 1;
        Ok(if store.left == 0 { Go::Done } else { Go::Next })
    }
}

const TRANSITIONS: u64 = 100_000;

flow! {
    /// The sync loop, compiled by `flow!`.
    struct SyncLoop: Counter {
        node a: Add = Add(1);
        node b: Add = Add(2);
        node c: Add = Add(3);
        start a;
        max_steps u64::MAX;
        a - Go::Next >> b;
        a - Go::Done >> end;
        b - Go::Next >> c;
        b - Go::Done >> end;
        c - Go::Next >> a;
        c - Go::Done >> end;
    }
}

flow! {
    /// The same loop of async nodes, compiled by `flow!`.
    async struct AsyncLoop: Counter {
        node a: AsyncAdd = AsyncAdd(1);
        node b: AsyncAdd = AsyncAdd(2);
        node c: AsyncAdd = AsyncAdd(3);
        start a;
        max_steps u64::MAX;
        a - Go::Next >> b;
        a - Go::Done >> end;
        b - Go::Next >> c;
        b - Go::Done >> end;
        c - Go::Next >> a;
        c - Go::Done >> end;
    }
}

/// The loop of [`loop_flow`], left to run until a node says `Done`.
fn looping(add: impl Fn(&mut Flow<Counter>, &str, u64) -> NodeId) -> Flow<Counter> {
    let mut flow = loop_flow(add);
    flow.unbounded();
    flow
}

fn sync_nodes() -> Flow<Counter> {
    looping(|flow, name, step| flow.add(name, Add(step)))
}

fn quick_sync_nodes() -> Flow<Counter> {
    looping(|flow, name, step| flow.add(name, QuickAdd(step)))
}

fn async_nodes() -> Flow<Counter> {
    looping(|flow, name, step| flow.add(name, AsyncAdd(step)))
}

fn fresh(n: u64) -> Counter {
    Counter::with_budget(n)
}

/// Runs one variant over `n` transitions (or items).
fn run_variant(variant: &str, n: u64) {
    let rt = current_thread();
    let mut store = fresh(n);
    match variant {
        "flow_macro_sync" => SyncLoop::new().run(&mut store).unwrap(),
        "flow_macro_async" => rt.block_on(AsyncLoop::new().run(&mut store)).unwrap(),
        "runtime_sync" => drop(sync_nodes().run(&mut store).unwrap()),
        "runtime_async" => drop(rt.block_on(async_nodes().run_async(&mut store)).unwrap()),
        "runtime_async_sync_nodes" => drop(rt.block_on(sync_nodes().run_async(&mut store)).unwrap()),
        "runtime_async_quick_sync_nodes" => drop(rt.block_on(quick_sync_nodes().run_async(&mut store)).unwrap()),
        "hand_sync" => hand_sync(&mut store),
        "hand_async" => rt.block_on(hand_async(&mut store)),
        "hand_async_guarded" => rt.block_on(hand_async_guarded(&mut store)),
        "rayon_tiny" => drop(black_box(rayon_tiny(n as usize))),
        "batch_tiny" => drop(black_box(batch_tiny(n as usize))),
        other => panic!("unknown variant {other}"),
    }
    black_box(store.value);
}

/// The floor of a sync transition: the loop of [`SyncLoop`] written by hand,
/// each node's three hooks called in turn, no flow around them.
fn hand_sync(store: &mut Counter) {
    let nodes = [Add(1), Add(2), Add(3)];
    let (params, mut at) = (Params::new(), 0);
    let ctx = ExecContext::new("hand", 1, 1, None);
    loop {
        let node = &nodes[at];
        let prep = node.prep(store, &params).unwrap();
        let exec = node.exec(&prep, &ctx).unwrap();
        match node.post(store, prep, exec).unwrap() {
            Go::Next => at = (at + 1) % 3,
            Go::Done => return,
        }
    }
}

/// The floor of an async transition: the loop of [`AsyncLoop`] written by
/// hand, each node's three async hooks awaited in turn, no flow around them.
async fn hand_async(store: &mut Counter) {
    let nodes = [AsyncAdd(1), AsyncAdd(2), AsyncAdd(3)];
    let (params, mut at) = (Params::new(), 0);
    let ctx = ExecContext::new("hand", 1, 1, None);
    loop {
        let node = &nodes[at];
        let prep = node.prep(store, &params).await.unwrap();
        let exec = node.exec(&prep, &ctx).await.unwrap();
        match node.post(store, prep, exec).await.unwrap() {
            Go::Next => at = (at + 1) % 3,
            Go::Done => return,
        }
    }
}

/// [`hand_async`] with what any runner of user hooks needs: each hook's panic
/// caught (as `catch_unwind` around each poll), and the `exec` context made from
/// the node's retry policy. The floor of a guarded async transition.
async fn hand_async_guarded(store: &mut Counter) {
    use futures_util::FutureExt as _;
    use std::panic::AssertUnwindSafe;
    let nodes = [AsyncAdd(1), AsyncAdd(2), AsyncAdd(3)];
    let (params, mut at) = (Params::new(), 0);
    loop {
        let node = &nodes[at];
        let prep = match AssertUnwindSafe(node.prep(store, &params)).catch_unwind().await {
            Ok(Ok(p)) => p,
            _ => unreachable!("the bench's prep does not fail"),
        };
        let ctx = ExecContext::new("hand", 1, node.retry().attempts.max(1), None);
        let exec = match AssertUnwindSafe(node.exec(&prep, &ctx)).catch_unwind().await {
            Ok(Ok(p)) => p,
            _ => unreachable!("the bench's exec does not fail"),
        };
        match AssertUnwindSafe(node.post(store, prep, exec)).catch_unwind().await {
            Ok(Ok(Go::Next)) => at = (at + 1) % 3,
            Ok(Ok(Go::Done)) => return,
            _ => unreachable!("the bench's post does not fail"),
        }
    }
}

/// What each tiny item does.
#[inline(always)]
fn tiny(x: u64) -> u64 {
    black_box(x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// The baseline of a parallel batch: make the items, then rayon's `par_iter`
/// over them, collected in order.
fn rayon_tiny(n: usize) -> Vec<u64> {
    let items: Vec<u64> = (0..n as u64).collect();
    items.par_iter().map(|x| tiny(*x)).collect()
}

/// A parallel batch node over tiny items: `prep` makes them, `post` keeps the
/// outputs. The store is the number of items and the outputs.
struct Tiny;

impl BatchNode<(usize, Vec<u64>)> for Tiny {
    type Item = u64;
    type Output = u64;
    type Action = ();
    fn prep(&self, store: &(usize, Vec<u64>), _: &Params) -> NodeResult<Vec<u64>> {
        Ok((0..store.0 as u64).collect())
    }
    fn exec(&self, x: &u64, _: &ExecContext) -> NodeResult<u64> {
        Ok(tiny(*x))
    }
    fn post(&self, store: &mut (usize, Vec<u64>), _: Vec<u64>, out: Vec<u64>) -> NodeResult<()> {
        store.1 = out;
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: None }
    }
}

fn batch_tiny(n: usize) -> Vec<u64> {
    let mut store = (n, Vec::new());
    Tiny.run(&mut store).unwrap();
    store.1
}

fn async_transitions(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_vs_sync_100k_transitions");
    group.throughput(Throughput::Elements(TRANSITIONS));
    let rt = current_thread();
    let sync_macro = SyncLoop::new();
    group.bench_function("flow_macro_sync", |b| {
        b.iter(|| sync_macro.run(&mut fresh(TRANSITIONS)).unwrap());
    });
    let async_macro = AsyncLoop::new();
    group.bench_function("flow_macro_async", |b| {
        b.iter(|| rt.block_on(async_macro.run(&mut fresh(TRANSITIONS))).unwrap());
    });
    let sync_flow = sync_nodes();
    group.bench_function("runtime_sync", |b| {
        b.iter(|| sync_flow.run(&mut fresh(TRANSITIONS)).unwrap());
    });
    let async_flow = async_nodes();
    group.bench_function("runtime_async", |b| {
        b.iter(|| rt.block_on(async_flow.run_async(&mut fresh(TRANSITIONS))).unwrap());
    });
    // Sync nodes whose exec is quick (`exec_blocks` false) run in place...
    let quick_flow = quick_sync_nodes();
    group.bench_function("runtime_async_quick_sync_nodes", |b| {
        b.iter(|| rt.block_on(quick_flow.run_async(&mut fresh(TRANSITIONS))).unwrap());
    });
    // The floors: the same hooks called by hand, with no flow around them.
    group.bench_function("hand_sync", |b| b.iter(|| hand_sync(&mut fresh(TRANSITIONS))));
    group.bench_function("hand_async", |b| b.iter(|| rt.block_on(hand_async(&mut fresh(TRANSITIONS)))));
    group.bench_function("hand_async_guarded", |b| {
        b.iter(|| rt.block_on(hand_async_guarded(&mut fresh(TRANSITIONS))));
    });
    group.finish();

    // ... the others go to the blocking pool (a thread hand-off per exec:
    // fewer transitions).
    let mut group = c.benchmark_group("async_10k_sync_node_transitions_current_thread");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("runtime_async_sync_nodes", |b| {
        b.iter(|| rt.block_on(sync_flow.run_async(&mut fresh(10_000))).unwrap());
    });
    group.finish();
}

fn tiny_items(c: &mut Criterion) {
    let mut group = c.benchmark_group("parallel_1m_tiny_items");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("rayon_par_iter", |b| b.iter(|| black_box(rayon_tiny(1_000_000))));
    group.bench_function("batch_parallel", |b| b.iter(|| black_box(batch_tiny(1_000_000))));
    group.finish();
}

criterion_group!(benches, async_transitions, tiny_items);

fn main() {
    if let Ok(spec) = std::env::var("MINLLM_ASYNC") {
        let (variant, n) = spec.split_once(':').expect("MINLLM_ASYNC=<variant>:<n>");
        let n: u64 = n.parse().expect("a number");
        run_variant(variant, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
