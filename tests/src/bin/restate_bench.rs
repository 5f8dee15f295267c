//! What runs cost on Restate, in one run (BENCHMARKS.md "Runs on Restate"):
//!
//! `cargo run --release -p minllm-integration-tests --bin restate_bench -- [transitions] [items]`
//!
//! 1. What a transition costs: the flow `bench` (one trivial node, one
//!    transition per count) with no checkpointer, with the SQLite
//!    checkpointer, and served on Restate.
//! 2. What a second worker brings: the flow `spread` (a parallel batch node
//!    whose items each take 50 ms, 16 at once per worker) on one worker, then
//!    on two behind a round-robin proxy; its items fan out over the workers.
//!
//! It starts the pinned `restate-server` and the workers (`restate_worker`,
//! built beside this binary) on loopback.

use std::process::Command;
use std::time::{Duration, Instant};

use minllm::durable::{Outcome, SqliteCheckpointer};
use minllm_integration_tests::bench_flow::{Count, flow};
use minllm_integration_tests::restate::{Proxy, RestateServer, Worker, free_port, http};

/// How long each item of the batch takes, and how many one worker runs at once.
const ITEM_MS: &str = "50";
const ITEM_THREADS: &str = "16";

fn per_transition(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n as f64
}

/// A worker (`restate_worker`, beside this binary) on a port of its own.
fn worker() -> Worker {
    let port = free_port();
    let exe = std::env::current_exe().expect("this binary's path");
    let mut command = Command::new(exe.with_file_name("restate_worker"));
    command.arg(port.to_string()).env("ITEM_MS", ITEM_MS).env("ITEM_THREADS", ITEM_THREADS);
    Worker::start(command, port)
}

/// Seconds a batch of `items` takes on `workers` workers behind a proxy (a
/// fresh server each time), after a warm-up batch; how many items each
/// worker ran, most first.
fn batch(workers: usize, items: usize) -> (f64, Vec<usize>) {
    let server = RestateServer::start();
    let running: Vec<Worker> = (0..workers).map(|_| worker()).collect();
    let proxy = Proxy::start(running.iter().map(|w| w.port).collect());
    server.register(proxy.port);
    let body = |n: usize| format!("{{\"n\": {n}}}");
    let _ = http(&server.ingress, "POST", "/spread/warm-up/run", Some(&body(64)));
    let started = Instant::now();
    let (status, output) = http(&server.ingress, "POST", "/spread/measured/run", Some(&body(items))).expect("the run");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{output}");
    let store: serde_json::Value = serde_json::from_str(&output).expect("the store");
    let lines = store["lines"].as_array().expect("the lines");
    assert_eq!(lines.len(), items, "every item came back");
    let mut split: Vec<usize> = running
        .iter()
        .map(|w| lines.iter().filter(|l| l.as_str().is_some_and(|l| l.ends_with(&format!(" {}", w.pid())))).count())
        .collect();
    split.sort_unstable_by(|a, b| b.cmp(a));
    (elapsed, split)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let items: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let flow = flow();

    // No checkpointer.
    let started = Instant::now();
    let mut count = Count { target: n, count: 0 };
    flow.run(&mut count).expect("a plain run");
    let plain = per_transition(started.elapsed(), n);

    // The SQLite checkpointer.
    let dir = std::env::temp_dir().join(format!("minllm-restate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let sqlite = SqliteCheckpointer::open(dir.join("runs.db")).expect("a database");
    let started = Instant::now();
    let mut count = Count { target: n, count: 0 };
    let outcome = flow.durable(&sqlite, "bench").run(&mut count).expect("a checkpointed run");
    assert!(matches!(outcome, Outcome::Finished(_)));
    let checkpointed = per_transition(started.elapsed(), n);
    let _ = std::fs::remove_dir_all(&dir);

    // Restate: a worker process, registered; one run through the ingress.
    let on_restate = {
        let server = RestateServer::start();
        let worker = worker();
        server.register(worker.port);
        // A warm-up run, then the measured one.
        let body = |target: u64| format!("{{\"target\": {target}}}");
        let _ = http(&server.ingress, "POST", "/bench/warm-up/run", Some(&body(10)));
        let started = Instant::now();
        let (status, output) = http(&server.ingress, "POST", "/bench/measured/run", Some(&body(n))).expect("the run");
        let elapsed = per_transition(started.elapsed(), n);
        assert_eq!(status, 200, "{output}");
        assert!(output.contains(&format!("\"count\":{n}")), "{output}");
        elapsed
    };

    println!("{n} transitions of one trivial node, per transition:");
    println!("  no checkpointer      {plain:>9.2} µs   1×");
    println!("  SQLite checkpointer  {checkpointed:>9.2} µs   {:.0}× the plain run", checkpointed / plain);
    println!(
        "  Restate              {on_restate:>9.2} µs   {:.0}× the plain run, {:.1}× the SQLite run",
        on_restate / plain,
        on_restate / checkpointed
    );

    let (one, _) = batch(1, items);
    let (two, split) = batch(2, items);
    let ideal =
        items as f64 * ITEM_MS.parse::<f64>().unwrap_or(50.0) / 1000.0 / ITEM_THREADS.parse::<f64>().unwrap_or(16.0);
    println!(
        "{items} batch items of {ITEM_MS} ms, {ITEM_THREADS} at once per worker (ideal one worker: {ideal:.2} s):"
    );
    println!("  one worker   {one:>6.2} s");
    println!("  two workers  {two:>6.2} s   {:.2}× faster (items per worker: {split:?})", one / two);
}
