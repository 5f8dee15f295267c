//! Benchmarks of the runtime; results and how to read them are in BENCHMARKS.md.
//!
//! `cargo bench -p minllm --bench runtime`

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Add, Counter, Go, Sleepers, loop_flow};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use minllm::{AsyncBatchNode, BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params, flow};

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

fn runtime_loop() -> Flow<Counter> {
    let mut flow = loop_flow(|flow, name, step| flow.add(name, Add(step)));
    flow.max_steps(TRANSITIONS + 1);
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
    let flow = runtime_loop();
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

fn concurrent_async(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_10k_execs_sleeping_50ms");
    group.sample_size(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Each item sleeps 50 ms, as a slow LLM call would; all 10,000 in flight
    // at once (the default keeps 1024).
    let batch = Sleepers { wait: Duration::from_millis(50), limit: 10_000 };
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
        let mut store = Counter::with_budget(n);
        match variant {
            "hand_written" => hand_written(&[Add(1), Add(2), Add(3)], &mut store),
            "flow_macro" => {
                Loop::new().run(&mut store).unwrap();
            }
            "runtime_flow" => {
                runtime_loop().run(&mut store).unwrap();
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
