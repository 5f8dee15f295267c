//! What checkpoints cost: per transition (SQLite and in memory, against the
//! same loop run without a checkpointer), storage growth with a large field
//! that never changes, and reading a run's history; results in BENCHMARKS.md.
//!
//! `cargo bench -p minllm --bench durable` (`-- <transitions>` for another count).

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Add, Counter, loop_flow};
use minllm::durable::{Checkpointer, MemoryCheckpointer, SqliteCheckpointer};
use minllm::{End, ExecContext, Flow, Node, NodeResult, Params};
use serde::{Deserialize, Serialize};

fn counting_loop() -> Flow<Counter> {
    let mut flow = loop_flow(|flow, name, step| flow.add(name, Add(step)));
    flow.unbounded();
    flow
}

/// A fresh directory for the databases of one measurement.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minllm-bench-durable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The best of `runs` timings of `f`.
fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap()
}

fn per_transition(n: u64) {
    let flow = counting_loop();
    let plain = best(5, || {
        let started = Instant::now();
        flow.run(&mut Counter::with_budget(n)).unwrap();
        started.elapsed()
    });
    let memory = best(5, || {
        let checkpoints = MemoryCheckpointer::new();
        let started = Instant::now();
        let _ = flow.durable(&checkpoints, "bench").run(&mut Counter::with_budget(n)).unwrap();
        started.elapsed()
    });
    let sqlite = best(5, || {
        let dir = scratch("loop");
        let checkpoints = SqliteCheckpointer::open(dir.join("runs.db")).unwrap();
        let started = Instant::now();
        let _ = flow.durable(&checkpoints, "bench").run(&mut Counter::with_budget(n)).unwrap();
        let took = started.elapsed();
        drop(checkpoints);
        let _ = std::fs::remove_dir_all(dir);
        took
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{n} transitions of the 3-node loop (a store of two integers), best of 5:");
    println!("  no checkpointer      {:>9.3} µs per transition", us(plain));
    println!("  MemoryCheckpointer   {:>9.3} µs per transition (+{:.3})", us(memory), us(memory) - us(plain));
    println!("  SqliteCheckpointer   {:>9.3} µs per transition (+{:.3})", us(sqlite), us(sqlite) - us(plain));
}

#[derive(Default, Serialize, Deserialize)]
struct Big {
    document: String,
    steps: u64,
}

struct Tick;

impl Node<Big> for Tick {
    type Prep = ();
    type Exec = ();
    type Action = &'static str;
    fn prep(&self, _: &Big, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, big: &mut Big, _: (), _: ()) -> NodeResult<&'static str> {
        big.steps += 1;
        Ok(if big.steps < 1000 { "again" } else { "done" })
    }
}

fn storage_growth() {
    let mut flow = Flow::new("big");
    let tick = flow.add("tick", Tick);
    flow.edge(tick.on("again") >> tick).edge(tick.on("done") >> End).max_steps(2000);
    let dir = scratch("big");
    let started = Instant::now();
    {
        let checkpoints = SqliteCheckpointer::open(dir.join("runs.db")).unwrap();
        let mut big = Big { document: "x".repeat(1 << 20), steps: 0 };
        let _ = flow.durable(&checkpoints, "big").run(&mut big).unwrap();
    }
    let took = started.elapsed();
    let size = dir_size(&dir);
    println!(
        "1000 steps with a 1 MB field that never changes: {:.2} MB on disk (database and WAL), {:.1} ms per step",
        size as f64 / 1e6,
        took.as_secs_f64() * 1e3 / 1000.0
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn history_reads() {
    let flow = counting_loop();
    println!("reading a run's history (SQLite):");
    for n in [1_000_u64, 4_000, 16_000] {
        let dir = scratch("history");
        let checkpoints = SqliteCheckpointer::open(dir.join("runs.db")).unwrap();
        let _ = flow.durable(&checkpoints, "h").run(&mut Counter::with_budget(n)).unwrap();
        let took = best(5, || {
            let started = Instant::now();
            let history = checkpoints.history("h").unwrap();
            assert_eq!(history.len() as u64, n + 1);
            started.elapsed()
        });
        println!(
            "  {:>6} checkpoints: {:>8.2} ms ({:.2} µs each)",
            n + 1,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / (n + 1) as f64
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a number is a transition count.
    let n = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5_000);
    if std::env::var("PROBE").is_ok() {
        probe();
        return;
    }
    per_transition(n);
    storage_growth();
    history_reads();
}

#[allow(dead_code)]
fn probe() {
    let dir = scratch("probe");
    let cp = SqliteCheckpointer::open(dir.join("runs.db")).unwrap();
    let n = 5000;
    let started = Instant::now();
    for i in 0..n {
        cp.put_exec("r", i, "", b"12345678").unwrap();
    }
    println!("put_exec: {:.1} µs", started.elapsed().as_secs_f64() * 1e6 / n as f64);
}
