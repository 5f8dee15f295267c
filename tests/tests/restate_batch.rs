//! A batch node's items fanned out over two workers behind a round-robin
//! proxy, on a real Restate server: a thousand items land on both, one worker
//! is killed with `kill -9` half-way, and the run finishes on the other with
//! every output in its place and only the items in flight on the dead worker
//! run again.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use minllm_integration_tests::restate::{Proxy, RestateServer, Worker, free_port, http};

const WORKER: &str = env!("CARGO_BIN_EXE_restate_worker");
const ITEMS: usize = 1000;
/// Items one worker runs at once (`ITEM_THREADS`).
const AT_ONCE: usize = 8;

/// A scratch directory of this test process for `name`, empty.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minllm-restate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two workers logging to `dir` (killing themselves once, as `env` says),
/// behind a round-robin proxy registered with `server`.
fn two_workers(server: &RestateServer, dir: &Path, env: &[(&str, String)]) -> ([Worker; 2], Proxy) {
    let start = |port: u16| {
        let mut command = Command::new(WORKER);
        command.arg(port.to_string()).env("LOG", dir.join("calls.log")).env("KILL_ONCE", dir.join("killed"));
        for (key, value) in env {
            command.env(key, value);
        }
        Worker::start(command, port)
    };
    let workers = [start(free_port()), start(free_port())];
    let proxy = Proxy::start(workers.iter().map(|w| w.port).collect());
    server.register(proxy.port);
    (workers, proxy)
}

/// Waits until one of `workers` ends (at `point`, where it kills itself): its
/// index and how it ended.
fn first_to_end(workers: &mut [Worker; 2], server: &RestateServer, point: &str) -> (usize, ExitStatus) {
    let started = Instant::now();
    loop {
        for (k, worker) in workers.iter_mut().enumerate() {
            if let Some(status) = worker.child.try_wait().unwrap() {
                return (k, status);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no worker reached {point}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_items_land_on_both_workers_and_survive_one_killed_half_way() {
    let server = RestateServer::start();
    let dir = scratch("batch");
    let env =
        [("KILL_AT", format!("item:{}", ITEMS / 2)), ("ITEM_MS", "20".into()), ("ITEM_THREADS", AT_ONCE.to_string())];
    let (mut workers, proxy) = two_workers(&server, &dir, &env);
    let (status, body) =
        server.post(&server.ingress, "/spread/batch-1/run/send", &format!("{{\"n\": {ITEMS}}}")).unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");

    // Whichever worker gets the item half-way kills itself; the other stays.
    let (died, status) = first_to_end(&mut workers, &server, &format!("item {}", ITEMS / 2));
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let (killed, survivor) = (workers[died].pid(), workers[1 - died].pid());

    let (status, body) = http(&server.ingress, "GET", "/restate/workflow/spread/batch-1/attach", None).unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let store: serde_json::Value = serde_json::from_str(&body).unwrap();
    let lines: Vec<&str> = store["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(lines.len(), ITEMS);
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let pid = line.strip_prefix(&format!("doc-{i} read by ")).unwrap_or_else(|| panic!("line {i}: {line}"));
        *per_worker.entry(pid.parse().unwrap()).or_default() += 1;
    }
    // Both workers made outputs: the killed one before it died, the other the rest.
    assert!(per_worker.get(&killed).is_some_and(|&n| n > 0), "{per_worker:?}");
    assert!(per_worker.get(&survivor).is_some_and(|&n| n > 0), "{per_worker:?}");
    assert_eq!(per_worker.values().sum::<usize>(), ITEMS);

    // Every item ran to its end; only those in flight on the dead worker started
    // twice: those running (AT_ONCE at most) and those whose result was on its
    // way to Restate when the worker died.
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    let mut starts: HashMap<usize, Vec<u32>> = HashMap::new();
    let mut ends: HashMap<usize, usize> = HashMap::new();
    for line in log.lines() {
        let (call, pid) = line.rsplit_once(" pid=").unwrap();
        let pid: u32 = pid.parse().unwrap();
        if let Some(i) = call.strip_prefix("item-start ") {
            starts.entry(i.parse().unwrap()).or_default().push(pid);
        } else if let Some(i) = call.strip_prefix("item-end ") {
            *ends.entry(i.parse().unwrap()).or_default() += 1;
        }
    }
    for i in 0..ITEMS {
        assert!(ends.get(&i).is_some_and(|&n| n >= 1), "item {i} never finished");
    }
    let again: Vec<(&usize, &Vec<u32>)> = starts.iter().filter(|(_, pids)| pids.len() > 1).collect();
    assert!(again.len() <= 2 * AT_ONCE, "more items ran again than were in flight: {again:?}");
    for (i, pids) in &again {
        assert_eq!(pids[0], killed, "item {i} ran again though its first worker lived: {pids:?}");
    }
    let connections = proxy.connections();
    assert!(connections.iter().all(|&n| n > 0), "the proxy sent connections to both: {connections:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_backoff_and_inactivity_reach_restate_when_the_flow_is_registered() {
    let server = RestateServer::start();
    let port = free_port();
    let mut command = Command::new(WORKER);
    command.arg(port.to_string());
    let _worker = Worker::start(command, port);
    server.register(port);
    for service in ["spread", "spread-items"] {
        let (status, body) = server.get(&server.admin, &format!("/services/{service}")).unwrap();
        assert_eq!(status, 200, "{body}");
        let config: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(config["journal_retention"], "1h", "{service}: {body}");
        assert_eq!(config["inactivity_timeout"], "5m", "{service}: {body}");
        assert_eq!(config["retry_policy"]["initial_interval"], "50ms", "{service}: {body}");
        assert_eq!(config["retry_policy"]["max_interval"], "1s", "{service}: {body}");
    }
    let (_, body) = server.get(&server.admin, "/services/spread").unwrap();
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["workflow_completion_retention"], "1h", "{body}");
    // An untuned flow keeps the server's defaults.
    let (_, body) = server.get(&server.admin, "/services/research").unwrap();
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["workflow_completion_retention"], "1d", "{body}");
}

#[test]
fn a_parallel_batch_flow_runs_its_items_on_both_workers_and_merges_what_they_wrote() {
    const CHAPTERS: usize = 60;
    let server = RestateServer::start();
    let dir = scratch("chapters");
    let env = [("KILL_AT", format!("chapter:{}", CHAPTERS / 2)), ("ITEM_MS", "20".into())];
    let (mut workers, _proxy) = two_workers(&server, &dir, &env);
    let body = format!("{{\"n\": {CHAPTERS}}}");
    let (status, body) = server.post(&server.ingress, "/chapters/book-1/run/send", &body).unwrap();
    assert!(status == 200 || status == 202, "start: {status} {body}");
    let (died, _) = first_to_end(&mut workers, &server, "the kill point");
    let killed = workers[died].pid();
    let (status, body) = http(&server.ingress, "GET", "/restate/workflow/chapters/book-1/attach", None).unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let book: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Every item's run appended its chapter and added its length: merged in the items' order.
    let chapters: Vec<&str> = book["chapters"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(chapters.len(), CHAPTERS, "{chapters:?}");
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for (i, chapter) in chapters.iter().enumerate() {
        let pid = chapter.strip_prefix(&format!("chapter {i} by ")).unwrap_or_else(|| panic!("chapter {i}: {chapter}"));
        *per_worker.entry(pid.to_owned()).or_default() += 1;
    }
    assert_eq!(per_worker.len(), 2, "both workers wrote chapters: {per_worker:?}");
    assert!(per_worker.contains_key(&killed.to_string()), "{per_worker:?}");
    assert_eq!(book["lengths"].as_object().unwrap().len(), CHAPTERS);
    let _ = std::fs::remove_dir_all(&dir);
}
