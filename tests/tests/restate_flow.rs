//! A runtime flow served on a real Restate server (started on loopback by the
//! test): a worker killed with `kill -9` in the middle of an `exec` is
//! restarted, Restate replays the run, and it finishes with the right store
//! and no finished `exec` run again.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use minllm_integration_tests::restate::{RestateServer, free_port, http};

const WORKER: &str = env!("CARGO_BIN_EXE_restate_worker");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("minllm-restate-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn counts(&self) -> HashMap<String, usize> {
        let text = std::fs::read_to_string(self.0.join("calls.log")).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            let call = line.rsplit_once(" pid=").map_or(line, |(c, _)| c);
            *counts.entry(call.to_owned()).or_default() += 1;
        }
        counts
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A worker process, killed when dropped (a failing test leaves none behind).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(port: u16, scratch: &Scratch, env: &[(&str, &str)]) -> Worker {
    let mut command = Command::new(WORKER);
    command.arg(port.to_string()).env("LOG", scratch.0.join("calls.log")).env("KILL_ONCE", scratch.0.join("killed"));
    for (k, v) in env {
        command.env(k, v);
    }
    Worker(command.spawn().unwrap())
}

/// Waits until something answers on `port`.
fn listening(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the worker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until run `run` is paused on its question, then answers it.
fn answer_when_paused(server: &RestateServer, run: &str, answer: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let status = http(&server.ingress, "POST", &format!("/research/{run}/status"), None);
        if let Some((200, body)) = &status {
            let status: serde_json::Value = serde_json::from_str(body).unwrap();
            if status["status"] == "paused" {
                let (code, body) = server.post(&server.ingress, &format!("/research/{run}/answer"), answer).unwrap();
                assert_eq!(code, 200, "{body}");
                return status;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "run {run} never paused: {status:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_worker_killed_mid_exec_is_replaced_and_the_run_finishes_without_paying_twice() {
    let server = RestateServer::start();
    let scratch = Scratch::new("kill");
    let port = free_port();
    let env = [("KILL_AT", "exec:2"), ("SLOW_MS", "100")];
    let mut first = worker(port, &scratch, &env);
    listening(port);
    let (status, body) =
        server.post(&server.admin, "/deployments", &format!("{{\"uri\":\"http://127.0.0.1:{port}\"}}")).unwrap();
    assert!(status == 201 || status == 200, "registration: {status} {body}");
    let store = r#"{"count": 0, "log": [], "summary": ""}"#;
    let (status, body) = server.post(&server.ingress, "/research/run-1/run/send", store).unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");
    // The worker kills itself in the third paid call; a new one takes its place.
    let started = Instant::now();
    let died = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let status = http(&server.ingress, "POST", "/research/run-1/status", None);
            panic!("the worker never reached the kill point: {status:?}\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(died.signal(), Some(9), "{died:?}");
    let second = worker(port, &scratch, &env);
    listening(port);
    answer_when_paused(&server, "run-1", "\"yes\"");
    let output = http(&server.ingress, "GET", "/restate/workflow/research/run-1/attach", None);
    let (status, body) = output.expect("the run's output");
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let store: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(store["count"], 5);
    assert_eq!(
        store["log"],
        serde_json::json!(["paid call 0", "paid call 1", "paid call 2", "paid call 3", "paid call 4"])
    );
    assert_eq!(store["summary"], "5 calls");
    assert_eq!(store["approved"], "yes");
    let counts = scratch.counts();
    for k in 0..5 {
        assert_eq!(counts.get(&format!("exec-end {k}")), Some(&1), "exec {k}: {counts:?}");
    }
    assert_eq!(counts.get("exec-start 2"), Some(&2), "only the call in flight ran again: {counts:?}");
    assert_eq!(counts.get("exec-start 0"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("exec-start summary"), Some(&1), "{counts:?}");
    let (_, status) = http(&server.ingress, "POST", "/research/run-1/status", None).unwrap();
    assert_eq!(status, r#"{"status":"finished"}"#);
    drop(second);
}

#[test]
fn a_paused_run_survives_its_worker_and_the_answer_resumes_it_on_another() {
    let server = RestateServer::start();
    let scratch = Scratch::new("pause");
    let port = free_port();
    let first = worker(port, &scratch, &[]);
    listening(port);
    let registered = server.post(&server.admin, "/deployments", &format!("{{\"uri\":\"http://127.0.0.1:{port}\"}}"));
    assert!(registered.as_ref().is_some_and(|(s, _)| *s == 201 || *s == 200), "{registered:?}");
    let (status, body) = server.post(&server.ingress, "/research/run-2/run/send", "{}").unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");
    // Paused: nothing waits in memory, so the worker may go away.
    let started = Instant::now();
    let paused = loop {
        if let Some((200, body)) = http(&server.ingress, "POST", "/research/run-2/status", None) {
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            if status["status"] == "paused" {
                break status;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run never paused");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(paused["question"], "publish 5 calls?");
    drop(first);
    let second = worker(port, &scratch, &[]);
    listening(port);
    let (code, body) = server.post(&server.ingress, "/research/run-2/answer", "\"ship it\"").unwrap();
    assert_eq!(code, 200, "{body}");
    let (status, body) = http(&server.ingress, "GET", "/restate/workflow/research/run-2/attach", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let store: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(store["approved"], "ship it");
    let counts = scratch.counts();
    for k in 0..5 {
        assert_eq!(counts.get(&format!("exec-start {k}")), Some(&1), "nothing before the pause ran again: {counts:?}");
    }
    assert_eq!(counts.get("exec-start approve"), Some(&2), "asked once, answered once: {counts:?}");
    drop(second);
}
