//! What a transition costs on Restate, beside the same flow with the SQLite
//! checkpointer and with none, in one run (BENCHMARKS.md "Restate"):
//!
//! `cargo run --release -p minllm-integration-tests --bin restate_bench -- [transitions]`
//!
//! It starts the pinned `restate-server` and a worker (`restate_worker`, built
//! beside this binary) on loopback, and times the flow `bench` (one trivial
//! node, one transition per count) three ways.

use std::process::Command;
use std::time::{Duration, Instant};

use minllm::durable::{Outcome, SqliteCheckpointer};
use minllm_integration_tests::bench_flow::{Count, flow};
use minllm_integration_tests::restate::{RestateServer, free_port, http};

fn per_transition(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
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
    let server = RestateServer::start();
    let port = free_port();
    let exe = std::env::current_exe().expect("this binary's path");
    let mut worker =
        Command::new(exe.with_file_name("restate_worker")).arg(port.to_string()).spawn().expect("the worker");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let registered = server.post(&server.admin, "/deployments", &format!("{{\"uri\":\"http://127.0.0.1:{port}\"}}"));
    assert!(registered.as_ref().is_some_and(|(s, _)| *s == 200 || *s == 201), "{registered:?}");
    // A warm-up run, then the measured one.
    let body = |target: u64| format!("{{\"target\": {target}}}");
    let _ = http(&server.ingress, "POST", "/bench/warm-up/run", Some(&body(10)));
    let started = Instant::now();
    let (status, output) = http(&server.ingress, "POST", "/bench/measured/run", Some(&body(n))).expect("the run");
    let on_restate = per_transition(started.elapsed(), n);
    assert_eq!(status, 200, "{output}");
    assert!(output.contains(&format!("\"count\":{n}")), "{output}");
    let _ = worker.kill();
    let _ = worker.wait();

    println!("{n} transitions of one trivial node, per transition:");
    println!("  no checkpointer      {plain:>9.2} µs   1×");
    println!("  SQLite checkpointer  {checkpointed:>9.2} µs   {:.0}× the plain run", checkpointed / plain);
    println!(
        "  Restate              {on_restate:>9.2} µs   {:.0}× the plain run, {:.1}× the SQLite run",
        on_restate / plain,
        on_restate / checkpointed
    );
}
