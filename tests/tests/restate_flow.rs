//! A runtime flow served on a real Restate server (started on loopback by the
//! test) by two workers behind a round-robin proxy: a worker killed with
//! `kill -9` in the middle of an `exec` is restarted, Restate replays the run,
//! and it finishes with the right store and no finished `exec` run again; a
//! paused run outlives both workers and is answered once they are back.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use minllm_integration_tests::restate::{Proxy, RestateServer, Worker, free_port, http};

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

/// A worker on `port` (`restate_worker`), logging to the scratch directory.
fn worker(port: u16, scratch: &Scratch, env: &[(&str, &str)]) -> Worker {
    let mut command = Command::new(WORKER);
    command.arg(port.to_string()).env("LOG", scratch.0.join("calls.log")).env("KILL_ONCE", scratch.0.join("killed"));
    for (k, v) in env {
        command.env(k, v);
    }
    Worker::start(command, port)
}

/// Two workers behind a round-robin proxy, registered as one deployment.
fn two_workers(server: &RestateServer, scratch: &Scratch, env: &[(&str, &str)]) -> ([Worker; 2], Proxy) {
    let workers = [worker(free_port(), scratch, env), worker(free_port(), scratch, env)];
    let proxy = Proxy::start(workers.iter().map(|w| w.port).collect());
    server.register(proxy.port);
    (workers, proxy)
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
    let env = [("KILL_AT", "exec:2"), ("SLOW_MS", "100")];
    let (mut workers, _proxy) = two_workers(&server, &scratch, &env);
    let store = r#"{"count": 0, "log": [], "summary": ""}"#;
    let (status, body) = server.post(&server.ingress, "/research/run-1/run/send", store).unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");
    // The worker that runs the third paid call kills itself; it is restarted
    // on its port while the other goes on.
    let started = Instant::now();
    let (died, status) = loop {
        if let Some(k) = (0..2).find(|&k| workers[k].child.try_wait().unwrap().is_some()) {
            break (k, workers[k].child.wait().unwrap());
        }
        if started.elapsed() > Duration::from_secs(60) {
            let status = http(&server.ingress, "POST", "/research/run-1/status", None);
            panic!("no worker reached the kill point: {status:?}\n{}", server.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let port = workers[died].port;
    workers[died] = worker(port, &scratch, &env);
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
    // The run's events, the same as one run without a crash would have.
    let events = events(&server, "run-1", 0);
    assert_eq!(events["status"], "finished");
    let list = events["events"].as_array().unwrap();
    let described: Vec<String> = list.iter().map(describe).collect();
    let mut expected = Vec::new();
    for k in 0..5 {
        let action = if k < 4 { "again" } else { "done" };
        expected.extend([
            "node_started research work".to_owned(),
            format!("custom research work \"paying {k}\""),
            format!("node_finished research work {action}"),
        ]);
    }
    assert_eq!(described[..15], expected[..], "{described:#?}");
    assert_eq!(events["next"], list.len());
    // Asked from a later place, only the rest.
    let rest = self::events(&server, "run-1", 14);
    assert_eq!(rest["events"].as_array().unwrap().len(), list.len() - 14);
}

/// The events of run `run` of `research` from number `from`.
fn events(server: &RestateServer, run: &str, from: usize) -> serde_json::Value {
    let body = format!("{{\"from\": {from}}}");
    let (status, body) = server.post(&server.ingress, &format!("/research/{run}/events"), &body).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// An event in one line: its kind, flow, node, then its action or value.
fn describe(event: &serde_json::Value) -> String {
    let mut line = format!(
        "{} {} {}",
        event["kind"].as_str().unwrap(),
        event["flow"].as_str().unwrap(),
        event["node"].as_str().unwrap()
    );
    if let Some(action) = event.get("action") {
        line.push_str(&format!(" {}", action.as_str().unwrap()));
    }
    if let Some(value) = event.get("value") {
        line.push_str(&format!(" {value}"));
    }
    line
}

#[test]
fn a_paused_run_survives_its_worker_and_the_answer_resumes_it_on_another() {
    let server = RestateServer::start();
    let scratch = Scratch::new("pause");
    let (mut workers, _proxy) = two_workers(&server, &scratch, &[]);
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
    // The caller sees the events so far while the run waits.
    let so_far = events(&server, "run-2", 0);
    assert_eq!(so_far["status"], "paused");
    let last = so_far["events"].as_array().unwrap().last().map(describe);
    assert_eq!(last.as_deref(), Some("node_started research approve"), "{so_far}");
    // Both workers go away and come back: the answer finds the run anyway.
    for slot in &mut workers {
        let port = slot.port;
        slot.child.kill().unwrap();
        slot.child.wait().unwrap();
        *slot = worker(port, &scratch, &[]);
    }
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
}

#[test]
fn a_flow_macro_flow_is_served_the_same_way_and_survives_a_kill_mid_exec() {
    let server = RestateServer::start();
    let scratch = Scratch::new("typed");
    let env = [("KILL_AT", "typed:2"), ("SLOW_MS", "100")];
    let (mut workers, _proxy) = two_workers(&server, &scratch, &env);
    let (status, body) = server.post(&server.ingress, "/Tally/t-1/run/send", r#"{"count": 0}"#).unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");
    let started = Instant::now();
    let died = loop {
        if let Some(k) = (0..2).find(|&k| workers[k].child.try_wait().unwrap().is_some()) {
            break k;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no worker reached the kill point\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let port = workers[died].port;
    workers[died] = worker(port, &scratch, &env);
    let (status, body) = http(&server.ingress, "GET", "/restate/workflow/Tally/t-1/attach", None).unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let store: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(store["count"], 5);
    assert_eq!(store["log"][4], "paid call 4");
    let counts = scratch.counts();
    for k in 0..5 {
        assert_eq!(counts.get(&format!("typed-end {k}")), Some(&1), "call {k}: {counts:?}");
    }
    assert_eq!(counts.get("typed-start 2"), Some(&2), "only the call in flight ran again: {counts:?}");
    // The same flow as an `async struct`, served alike.
    let (status, body) = http(&server.ingress, "POST", "/AsyncTally/a-1/run", Some(r#"{"count": 0}"#)).unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let store: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((store["count"].as_u64(), store["log"][4].as_str()), (Some(5), Some("paid call 4")));
}

#[test]
fn a_sync_flow_macro_flow_inside_a_runtime_flow_is_refused_with_how_to_fix_it() {
    let server = RestateServer::start();
    let scratch = Scratch::new("around");
    let (_workers, _proxy) = two_workers(&server, &scratch, &[]);
    let (status, body) = http(&server.ingress, "POST", "/around/a-1/run", Some(r#"{"count": 0}"#)).unwrap();
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("node `work`") && body.contains("an `async struct`"), "{body}");
    let (_, status) = http(&server.ingress, "POST", "/around/a-1/status", None).unwrap();
    assert!(status.contains("failed: ") && status.contains("sync `flow!` flow"), "{status}");
    assert!(scratch.counts().is_empty(), "nothing was paid for");
}
