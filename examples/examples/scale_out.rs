//! Scale-out on Restate: one flow run by two worker processes behind a
//! load balancer, a batch of documents spread over both, and a worker killed
//! with `kill -9` half-way without losing the run.
//!
//! `cargo run -p minllm-examples --example scale_out` runs the whole story on
//! this machine, offline: it starts the pinned `restate-server` (installed
//! from the npm registry by `scripts/restate-server` the first time), two
//! workers (this program, `worker <port>`), a small round-robin proxy in
//! front of them (`proxy <port> <worker port>...`), registers the proxy with
//! Restate, starts a run of 200 documents, kills one worker mid-run and
//! prints what each worker did. The pieces run on their own too, as the
//! README's "Scale-out on Restate" section shows.
//!
//! The flow `summaries`: `summarize`, a parallel batch node (4 documents at
//! once per worker), whose items Restate sends to the workers one invocation
//! each; then `report`, which counts the summaries per worker. Offline, a
//! summary is the document's keywords after a 40 ms pause that stands for a
//! model call; with `MINLLM_LLM_URL` set, a real model writes it.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use minllm::restate::RestateFlow;
use minllm::{BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params};
use minllm_examples::client::{Reply, Request};
use minllm_examples::llm;
use minllm_examples::local_restate::{Proxy, RestateServer, Worker, free_port, http, serve_worker};
use minllm_examples::model::Model;
use serde::{Deserialize, Serialize};

/// The flow's store, as JSON in and out of Restate.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Library {
    /// How many documents to summarise.
    docs: usize,
    /// One line per document, in order: its summary and the worker that wrote it.
    summaries: Vec<String>,
    /// How many summaries each worker wrote (`pid 123: 97`).
    by_worker: Vec<String>,
}

/// Summarises every document, on whichever worker Restate picks for it.
struct Summarize {
    model: Model,
}

impl BatchNode<Library> for Summarize {
    type Item = String;
    type Output = String;
    type Action = ();
    fn prep(&self, library: &Library, _: &Params) -> NodeResult<Vec<String>> {
        // Deterministic (it runs again on every replay): the documents are made up.
        Ok((0..library.docs).map(document).collect())
    }
    fn exec(&self, doc: &String, ctx: &ExecContext) -> NodeResult<String> {
        if self.model.is_scripted() {
            std::thread::sleep(Duration::from_millis(40));
        }
        let summary = self.model.chat(&Request::prompt(format!("Summarize in a few words:\n\n{doc}")))?.content;
        Ok(format!("doc {}: {summary} [pid {}]", ctx.item().unwrap_or_default(), std::process::id()))
    }
    fn post(&self, library: &mut Library, _: Vec<String>, summaries: Vec<String>) -> NodeResult<()> {
        library.summaries = summaries;
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: Some(4) }
    }
}

/// Counts the summaries per worker.
struct Report;

impl Node<Library> for Report {
    type Prep = Vec<String>;
    type Exec = Vec<String>;
    type Action = ();
    fn prep(&self, library: &Library, _: &Params) -> NodeResult<Vec<String>> {
        Ok(library.summaries.clone())
    }
    fn exec(&self, summaries: &Vec<String>, _: &ExecContext) -> NodeResult<Vec<String>> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for line in summaries {
            let worker = line.rsplit_once("[").map_or("?", |(_, w)| w.trim_end_matches(']')).to_owned();
            match counts.iter_mut().find(|(w, _)| *w == worker) {
                Some((_, n)) => *n += 1,
                None => counts.push((worker, 1)),
            }
        }
        Ok(counts.into_iter().map(|(worker, n)| format!("{worker}: {n}")).collect())
    }
    fn post(&self, library: &mut Library, _: Vec<String>, by_worker: Vec<String>) -> NodeResult<()> {
        library.by_worker = by_worker;
        Ok(())
    }
}

/// Document `i`: a few sentences of made-up text.
fn document(i: usize) -> String {
    let topics = ["rivers", "engines", "markets", "forests", "satellites", "harbours", "glaciers"];
    let topic = topics[i % topics.len()];
    format!("Document {i} is about {topic}. It explains how {topic} change over time and why {topic} matter.")
}

/// The offline model: the document's keywords.
fn script(request: &Request) -> Reply {
    let text = request.last_user().split_once("\n\n").map_or("", |(_, t)| t);
    Reply::text(llm::keywords(text, 3).join(", "))
}

fn summaries(model: Model) -> Flow<Library> {
    let mut flow = Flow::new("summaries");
    let summarize = flow.add("summarize", Summarize { model });
    let report = flow.add("report", Report);
    flow.edge(summarize >> report);
    flow
}

/// `worker <port>`: serves the flow on 127.0.0.1:<port> until killed.
fn worker(port: &str) -> ExitCode {
    serve_worker(port, || {
        let model = Model::from_env(script).map_err(|e| e.to_string())?;
        // A worker that comes back is tried again within two seconds (the
        // server's default waits up to a minute); finished runs are kept a day.
        RestateFlow::new(summaries(model))
            .retry_backoff(Duration::from_millis(50), Duration::from_secs(2))
            .retention(Duration::from_secs(24 * 3600))
            .definitions()
    })
}

/// `proxy <port> <worker port>...`: a round-robin proxy until killed.
fn proxy(args: &[String]) -> ExitCode {
    let ports: Result<Vec<u16>, _> = args.iter().map(|p| p.parse::<u16>()).collect();
    let Ok(ports) = ports else {
        eprintln!("usage: scale_out proxy <port> <worker port>...");
        return ExitCode::from(2);
    };
    let Some((&listen, backends)) = ports.split_first().filter(|(_, b)| !b.is_empty()) else {
        eprintln!("usage: scale_out proxy <port> <worker port>...");
        return ExitCode::from(2);
    };
    match Proxy::start_on(listen, backends.to_vec()) {
        Ok(_proxy) => {
            eprintln!("proxy on 127.0.0.1:{listen} in front of {backends:?}");
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole story, on this machine.
fn demo() -> ExitCode {
    const DOCS: usize = 200;
    println!("starting restate-server (installed from the npm registry the first time)...");
    let server = RestateServer::start();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("where is this program? {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = |port: u16| {
        let mut command = Command::new(&exe);
        command.args(["worker", &port.to_string()]);
        Worker::start(command, port)
    };
    let mut workers = [start(free_port()), start(free_port())];
    let proxy = Proxy::start(workers.iter().map(|w| w.port).collect());
    server.register(proxy.port);
    println!(
        "two workers (pids {} and {}) behind a proxy on port {}, registered with Restate",
        workers[0].pid(),
        workers[1].pid(),
        proxy.port
    );
    let body = format!("{{\"docs\": {DOCS}}}");
    match server.post(&server.ingress, "/summaries/library-1/run/send", &body) {
        Some((200 | 202, _)) => println!("run `library-1` started: {DOCS} documents"),
        other => {
            eprintln!("the run did not start: {other:?}");
            return ExitCode::FAILURE;
        }
    }
    // Half-way through (40 ms a document, 4 at once on each of two workers).
    std::thread::sleep(Duration::from_millis((DOCS as u64 * 40 / 8) / 2));
    let killed = workers[0].pid();
    let _ = workers[0].child.kill();
    let _ = workers[0].child.wait();
    println!("killed worker {killed} (SIGKILL) half-way through the batch");
    let started = Instant::now();
    let Some((200, output)) = http(&server.ingress, "GET", "/restate/workflow/summaries/library-1/attach", None) else {
        eprintln!("the run did not finish:\n{}", server.log());
        return ExitCode::FAILURE;
    };
    let library: Library = match serde_json::from_str(&output) {
        Ok(library) => library,
        Err(e) => {
            eprintln!("not the flow's store: {e}: {output}");
            return ExitCode::FAILURE;
        }
    };
    println!("run finished {:.1?} after the kill, on the worker that was left", started.elapsed());
    println!("{} of {DOCS} documents summarised, in order; summaries per worker:", library.summaries.len());
    for line in &library.by_worker {
        let note = if line.starts_with(&format!("pid {killed}:")) { " (before it was killed)" } else { "" };
        println!("  {line}{note}");
    }
    if let Some(first) = library.summaries.first() {
        println!("first summary: {first}");
    }
    drop(workers);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") if args.len() == 2 => worker(&args[1]),
        Some("proxy") => proxy(&args[1..]),
        None | Some("demo") => demo(),
        Some(_) => {
            eprintln!("usage: scale_out [demo] | worker <port> | proxy <port> <worker port>...");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_summarised_in_order_and_counted_per_worker() {
        let flow = summaries(Model::scripted(script));
        let mut library = Library { docs: 9, ..Library::default() };
        flow.run(&mut library).unwrap();
        assert_eq!(library.summaries.len(), 9);
        for (i, line) in library.summaries.iter().enumerate() {
            assert!(line.starts_with(&format!("doc {i}: ")), "{line}");
        }
        assert!(library.summaries[0].contains("rivers"), "{}", library.summaries[0]);
        assert_eq!(library.by_worker, [format!("pid {}: 9", std::process::id())]);
    }
}
