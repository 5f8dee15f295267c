//! Benchmarks of the runtime; results and how to read them are in BENCHMARKS.md.
//!
//! `cargo bench -p minllm --bench runtime`

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use minllm::{
    Action, AsyncBatchMode, AsyncBatchNode, BatchMode, BatchNode, End, ExecContext, Flow, Node, NodeResult, Params,
    flow,
};

/// The store of the loop benchmark: a counter and a budget of transitions.
#[derive(Default)]
struct Counter {
    value: u64,
    left: u64,
}

#[derive(Clone, Copy, Action)]
enum Go {
    Next,
    Done,
}

/// One of the loop's three nodes: adds `step` to the counter.
struct Add(u64);

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

const TRANSITIONS: u64 = 100_000;

/// The baseline: the same node bodies called from a hand-written `loop { match }`.
fn hand_written(nodes: &[Add; 3], store: &mut Counter) {
    enum State {
        A,
        B,
        C,
    }
    let params = Params::new();
    let ctx = ExecContext::new("n", 1, 1, None);
    let step = |node: &Add, store: &mut Counter| {
        let prep = node.prep(store, &params).unwrap();
        let exec = node.exec(&prep, &ctx).unwrap();
        node.post(store, prep, exec).unwrap()
    };
    let mut state = State::A;
    loop {
        state = match state {
            State::A => match step(&nodes[0], store) {
                Go::Next => State::B,
                Go::Done => break,
            },
            State::B => match step(&nodes[1], store) {
                Go::Next => State::C,
                Go::Done => break,
            },
            State::C => match step(&nodes[2], store) {
                Go::Next => State::A,
                Go::Done => break,
            },
        };
    }
}

fn loop_flow() -> Flow<Counter> {
    let mut flow = Flow::new("loop");
    let a = flow.add("a", Add(1));
    let b = flow.add("b", Add(2));
    let c = flow.add("c", Add(3));
    flow.edge(a.on(Go::Next) >> b.on(Go::Next) >> c.on(Go::Next) >> a)
        .edge(a.on(Go::Done) >> End)
        .edge(b.on(Go::Done) >> End)
        .edge(c.on(Go::Done) >> End)
        .max_steps(TRANSITIONS + 1);
    flow
}

flow! {
    /// The same loop, compiled by `flow!`.
    struct Loop: Counter {
        node a: Add = Add(1);
        node b: Add = Add(2);
        node c: Add = Add(3);
        start a;
        max_steps TRANSITIONS + 1;
        a - Go::Next >> b;
        a - Go::Done >> end;
        b - Go::Next >> c;
        b - Go::Done >> end;
        c - Go::Next >> a;
        c - Go::Done >> end;
    }
}

fn transitions(c: &mut Criterion) {
    let mut group = c.benchmark_group("loop_100k_transitions");
    group.throughput(Throughput::Elements(TRANSITIONS));
    let nodes = [Add(1), Add(2), Add(3)];
    group.bench_function("hand_written_loop_match", |b| {
        b.iter(|| {
            let mut store = Counter { value: 0, left: TRANSITIONS };
            hand_written(&nodes, &mut store);
            black_box(store.value)
        })
    });
    let typed = Loop::new();
    group.bench_function("flow_macro", |b| {
        b.iter(|| {
            let mut store = Counter { value: 0, left: TRANSITIONS };
            typed.run(&mut store).unwrap();
            black_box(store.value)
        })
    });
    let flow = loop_flow();
    group.bench_function("runtime_flow", |b| {
        b.iter(|| {
            let mut store = Counter { value: 0, left: TRANSITIONS };
            flow.run(&mut store).unwrap();
            black_box(store.value)
        })
    });
    group.finish();
}

/// CPU-bound work per item: a few hundred microseconds of integer mixing, its
/// items run as the mode says.
struct Crunch(BatchMode);

fn crunch(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

impl BatchNode<Vec<u64>> for Crunch {
    fn mode(&self) -> BatchMode {
        self.0
    }
    type Item = u64;
    type Output = u64;
    type Action = ();
    fn prep(&self, store: &Vec<u64>, _: &Params) -> NodeResult<Vec<u64>> {
        Ok(store.clone())
    }
    fn exec(&self, seed: &u64, _: &ExecContext) -> NodeResult<u64> {
        Ok(crunch(black_box(*seed)))
    }
    fn post(&self, store: &mut Vec<u64>, _: Vec<u64>, out: Vec<u64>) -> NodeResult<()> {
        *store = out;
        Ok(())
    }
}

fn parallel_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_batch_64_items");
    group.sample_size(10);
    let seeds: Vec<u64> = (1..=64).collect();
    for (name, batch) in
        [("sequential", Crunch(BatchMode::Sequential)), ("parallel", Crunch(BatchMode::Parallel { threads: None }))]
    {
        group.bench_function(BenchmarkId::new(name, rayon::current_num_threads()), |b| {
            b.iter(|| {
                let mut store = seeds.clone();
                batch.run(&mut store).unwrap();
                black_box(store)
            })
        });
    }
    group.finish();
}

/// Sleeps 50 ms per item, as a slow LLM call would.
struct Sleep50;

impl AsyncBatchNode<usize> for Sleep50 {
    fn mode(&self) -> AsyncBatchMode {
        // All 10,000 in flight at once (the default keeps 1024).
        AsyncBatchMode::Concurrent { limit: Some(10_000) }
    }
    type Item = usize;
    type Output = usize;
    type Action = ();
    async fn prep(&self, n: &usize, _: &Params) -> NodeResult<Vec<usize>> {
        Ok((0..*n).collect())
    }
    async fn exec(&self, i: &usize, _: &ExecContext<'_>) -> NodeResult<usize> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(*i)
    }
    async fn post(&self, n: &mut usize, _: Vec<usize>, out: Vec<usize>) -> NodeResult<()> {
        *n = out.len();
        Ok(())
    }
}

fn concurrent_async(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_10k_execs_sleeping_50ms");
    group.sample_size(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let batch = Sleep50;
    group.bench_function("concurrent_batch_wall_time", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut n = 10_000;
                batch.run_async(&mut n).await.unwrap();
                assert_eq!(n, 10_000);
            })
        })
    });
    group.finish();
}

/// Building a flow of `n` nodes in a chain: linear in `n` (the baseline is the
/// same build at a tenth of the size, times ten).
fn build_flow(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_flow_chain");
    group.sample_size(10);
    for n in [10_000_u64, 100_000] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(|| black_box(chain(n))));
    }
    group.finish();
}

/// A flow of `n` nodes in a chain, wired one edge at a time.
fn chain(n: u64) -> Flow<Counter> {
    let mut flow = Flow::<Counter>::new("chain");
    let mut previous = flow.add("n0", Add(0));
    for i in 1..n {
        let node = flow.add(format!("n{i}"), Add(i));
        flow.edge(previous.on(Go::Next) >> node);
        previous = node;
    }
    flow
}

criterion_group!(benches, transitions, parallel_batch, concurrent_async, build_flow);

/// `MINLLM_LOOP=<variant>:<transitions>` runs one loop variant once and exits
/// (`build:<n>` builds a flow of `n` nodes instead),
/// for counting instructions under `valgrind --tool=callgrind` (see BENCHMARKS.md).
fn main() {
    if let Ok(spec) = std::env::var("MINLLM_LOOP") {
        let (variant, n) = spec.split_once(':').expect("MINLLM_LOOP=<variant>:<transitions>");
        let n: u64 = n.parse().expect("a number of transitions");
        let mut store = Counter { value: 0, left: n.max(1) };
        match variant {
            "hand_written" => hand_written(&[Add(1), Add(2), Add(3)], &mut store),
            "flow_macro" => {
                Loop::new().run(&mut store).unwrap();
            }
            "runtime_flow" => {
                loop_flow().run(&mut store).unwrap();
            }
            // Builds (and drops) a chain of `n` nodes.
            "build" => drop(black_box(chain(n))),
            other => panic!("unknown variant {other}"),
        }
        black_box(store.value);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
