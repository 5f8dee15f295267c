//! Crashes: a child process (`src/bin/durable_child.rs`) runs a checkpointed
//! flow and is killed with `kill -9` (by itself at a chosen point, or by this
//! test at a random moment); a new process resumes the run. The result must be
//! the uninterrupted one, and no `exec` whose result was recorded may run again.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use minllm::durable::{Checkpointer, SqliteCheckpointer};

const CHILD: &str = env!("CARGO_BIN_EXE_durable_child");

/// A scratch directory for one scenario.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("minllm-crash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("runs.db")
    }
    fn log(&self) -> PathBuf {
        self.0.join("calls.log")
    }
    /// How many times each line was logged.
    fn counts(&self) -> HashMap<String, usize> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
        counts
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn child(scratch: &Scratch, mode: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(CHILD);
    command
        .args([scratch.db().to_str().unwrap(), "run-1", mode])
        .env("LOG", scratch.log())
        .env("KILL_ONCE", scratch.0.join("killed"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

fn run_child(scratch: &Scratch, mode: &str, env: &[(&str, String)]) -> Output {
    child(scratch, mode, env).output().unwrap()
}

fn killed(output: &Output) -> bool {
    output.status.signal() == Some(9)
}

/// The store of a finished run, as the child printed it.
fn ledger(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "the run did not finish: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn expected_log(n: u64) -> serde_json::Value {
    (0..n).map(|k| format!("paid call {k}")).collect()
}

#[test]
fn a_run_killed_at_any_point_of_a_node_resumes_in_a_new_process_without_paying_twice() {
    killed_at_any_point(false);
}

#[test]
fn an_async_run_killed_at_any_point_of_a_node_resumes_in_a_new_process_without_paying_twice() {
    killed_at_any_point(true);
}

fn killed_at_any_point(is_async: bool) {
    // point, and what the resumed run must have called for step 2 in all
    for (point, starts, posts) in [("prep", 1, 1), ("exec", 2, 1), ("between", 1, 1), ("post", 1, 2)] {
        let scratch = Scratch::new(&format!("{point}-{is_async}"));
        let mut env = vec![("KILL_AT", format!("{point}:2"))];
        if is_async {
            env.push(("ASYNC", "1".to_owned()));
        }
        let first = run_child(&scratch, "run", &env);
        assert!(killed(&first), "{point}: the child should have died: {:?}", first.status);
        let second = run_child(&scratch, "resume", &env);
        let store = ledger(&second);
        assert_eq!(store["log"], expected_log(5), "{point}");
        assert_eq!(store["count"], 5);
        let counts = scratch.counts();
        for k in 0..5 {
            let end = counts.get(&format!("exec-end {k}")).copied().unwrap_or(0);
            assert_eq!(end, 1, "{point}: exec {k} finished {end} times: {counts:?}");
        }
        assert_eq!(counts[&"exec-start 2".to_owned()], starts, "{point}: {counts:?}");
        assert_eq!(counts[&"post 2".to_owned()], posts, "{point}: {counts:?}");
    }
}

#[test]
fn a_batch_killed_at_an_item_redoes_that_item_only() {
    for (flow, parallel) in [(false, false), (false, true), (true, false), (true, true)] {
        let name = format!(
            "batch-{}-{}",
            if flow { "flow" } else { "node" },
            if parallel { "parallel" } else { "one-by-one" }
        );
        let scratch = Scratch::new(&name);
        let mut env = vec![("KILL_AT", "item:20".to_owned())];
        if parallel {
            env.push(("PARALLEL", "1".to_owned()));
        }
        if flow {
            env.push(("BATCH_FLOW", "1".to_owned()));
        }
        let first = run_child(&scratch, "run", &env);
        assert!(killed(&first), "{name}: {:?}", first.status);
        let store = ledger(&run_child(&scratch, "resume", &env));
        assert_eq!(store["squares"], (0..30u64).map(|i| i * i).sum::<u64>(), "{name}");
        let counts = scratch.counts();
        let starts: usize = (0..30).map(|i| counts.get(&format!("item-start {i}")).copied().unwrap_or(0)).sum();
        assert_eq!(counts[&"item-start 20".to_owned()], 2, "{name}: {counts:?}");
        if parallel {
            // The items in flight on the batch's 4 threads may run again.
            assert!(starts <= 30 + 4, "{name}: {starts} item calls for 30 items");
        } else {
            assert_eq!(starts, 31, "{name}: only item 20 ran twice: {counts:?}");
        }
    }
}

#[test]
fn a_run_killed_at_random_moments_finishes_with_the_uninterrupted_result() {
    let scratch = Scratch::new("random");
    let steps = 40_u64;
    // Each exec takes 2 ms and each checkpoint rewrites a 64 KB field, so
    // kills land in execs and in checkpoint writes alike.
    let env = [("STEPS", steps.to_string()), ("SLOW_MS", "2".to_owned()), ("PAD", (64 * 1024).to_string())];
    let mut kills = 0;
    let mut mode = "run";
    let started = Instant::now();
    let store = loop {
        assert!(started.elapsed() < Duration::from_secs(120), "the run never finished");
        let mut process = child(&scratch, mode, &env).spawn().unwrap();
        // Kill after a varying delay, 20 to 200 ms (a process needs some of
        // it to start and resume before it gets anywhere).
        let delay = Duration::from_millis(20 + (kills as u64 * 37) % 180);
        std::thread::sleep(delay);
        let done = process.try_wait().unwrap().is_some();
        if !done {
            process.kill().unwrap();
            kills += 1;
        }
        let output = process.wait_with_output().unwrap();
        mode = "resume";
        if output.status.success() {
            break ledger(&output);
        }
        assert!(killed(&output), "the child failed: {}", String::from_utf8_lossy(&output.stderr));
    };
    assert!(kills >= 3, "the test should kill the run several times, did {kills}");
    assert_eq!(store["log"], expected_log(steps));
    let counts = scratch.counts();
    let starts: usize = (0..steps).map(|k| counts.get(&format!("exec-start {k}")).copied().unwrap_or(0)).sum();
    // Only the exec in flight at each kill may run again.
    assert!(starts <= steps as usize + kills, "{starts} exec calls for {steps} steps and {kills} kills");
    let sqlite = SqliteCheckpointer::open(scratch.db()).unwrap();
    assert_eq!(sqlite.history("run-1").unwrap().last().unwrap().status, "finished");
}

#[test]
fn a_paused_run_is_answered_from_another_process() {
    let scratch = Scratch::new("pause");
    let env = [("ASK", "1".to_owned())];
    let first = run_child(&scratch, "run", &env);
    assert_eq!(first.status.code(), Some(3), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "\"publish?\"");
    // Nothing waits in memory: the first process is gone. A new one answers.
    let second = run_child(&scratch, "answer:yes", &env);
    let store = ledger(&second);
    assert_eq!(store["approved"], "yes");
    assert_eq!(store["log"], expected_log(5));
    let counts = scratch.counts();
    assert_eq!(counts[&"exec-end 4".to_owned()], 1, "the work before the pause was not done again");
}

#[test]
fn a_second_process_resuming_the_same_run_is_refused_at_once() {
    let scratch = Scratch::new("busy");
    let first = run_child(&scratch, "run", &[("ASK", "1".to_owned())]);
    assert_eq!(first.status.code(), Some(3));
    let sqlite = SqliteCheckpointer::open(scratch.db()).unwrap();
    let held = sqlite.lock("run-1").unwrap();
    let started = Instant::now();
    let second = run_child(&scratch, "answer:yes", &[("ASK", "1".to_owned())]);
    assert_eq!(second.status.code(), Some(4), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stderr).contains("is being run by another process"));
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after a wait");
    drop(held);
    let third = run_child(&scratch, "answer:yes", &[("ASK", "1".to_owned())]);
    assert_eq!(ledger(&third)["approved"], "yes");
}

#[test]
fn a_crash_leaves_no_lock_behind() {
    let scratch = Scratch::new("lock");
    let first = run_child(&scratch, "run", &[("KILL_AT", "exec:1".to_owned())]);
    assert!(killed(&first));
    // The dead process held the run's lock; the OS released it with the process.
    let sqlite = SqliteCheckpointer::open(scratch.db()).unwrap();
    drop(sqlite.lock("run-1").unwrap());
    assert!(Path::new(&scratch.db()).exists());
}
