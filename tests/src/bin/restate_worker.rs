//! A worker for the Restate tests (`tests/restate_flow.rs`): serves the flow
//! `research` (five paid calls in a loop, then a summary) as a Restate
//! workflow on `127.0.0.1:<port>`, the flow `spread` (a parallel batch node
//! whose items fan out over the workers), `chapters` (a parallel batch flow
//! whose items' runs fan out), the `flow!` flows `Tally` and
//! `AsyncTally` (the paid calls of `research`) and the benchmark's flow `bench`,
//! and kills itself with `kill -9` where told.
//!
//! `restate_worker <port>`, with `LOG=<file>` (one line per `exec` start and
//! end, with the process id), `KILL_AT=exec:<k>` (once: while the file
//! `KILL_ONCE` does not exist; `item:<i>` for an item of `spread`, `chapter:<i>`
//! for one of `chapters`, `typed:<k>`
//! for a call of `Tally`),
//! `SLOW_MS=<ms>` (each `exec` sleeps). The
//! flow ends by asking for approval (`interrupt`), which the test answers.

use std::io::Write as _;
use std::time::Duration;

use minllm::restate::{RestateFlow, serve};
use minllm::{Action, BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params, flow, node};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Ledger {
    count: u64,
    log: Vec<String>,
    summary: String,
    approved: Option<String>,
}

fn log(line: &str) {
    if let Ok(path) = std::env::var("LOG") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file");
        // One write per line, so that lines from several threads never mix.
        file.write_all(format!("{line} pid={}\n", std::process::id()).as_bytes()).expect("log line");
    }
}

fn maybe_die(point: &str) {
    let (Ok(at), Ok(once)) = (std::env::var("KILL_AT"), std::env::var("KILL_ONCE")) else { return };
    if at != point || std::path::Path::new(&once).exists() {
        return;
    }
    std::fs::write(&once, b"killed").expect("marker");
    let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

struct Work;

impl Node<Ledger> for Work {
    type Prep = u64;
    type Exec = String;
    type Action = &'static str;
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<u64> {
        Ok(ledger.count)
    }
    fn exec(&self, k: &u64, _: &ExecContext) -> NodeResult<String> {
        log(&format!("exec-start {k}"));
        minllm::events::emit(format!("paying {k}"));
        if let Some(ms) = std::env::var("SLOW_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        maybe_die(&format!("exec:{k}"));
        log(&format!("exec-end {k}"));
        Ok(format!("paid call {k}"))
    }
    fn post(&self, ledger: &mut Ledger, _: u64, line: String) -> NodeResult<&'static str> {
        ledger.log.push(line);
        ledger.count += 1;
        Ok(if ledger.count < 5 { "again" } else { "done" })
    }
}

struct Summarize;

impl Node<Ledger> for Summarize {
    type Prep = Vec<String>;
    type Exec = String;
    type Action = ();
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<Vec<String>> {
        Ok(ledger.log.clone())
    }
    fn exec(&self, lines: &Vec<String>, _: &ExecContext) -> NodeResult<String> {
        log("exec-start summary");
        Ok(format!("{} calls", lines.len()))
    }
    fn post(&self, ledger: &mut Ledger, _: Vec<String>, summary: String) -> NodeResult<()> {
        ledger.summary = summary;
        Ok(())
    }
}

/// Asks a person to approve the summary (a durable pause on Restate).
struct Approve;

impl Node<Ledger> for Approve {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<String> {
        Ok(ledger.summary.clone())
    }
    fn exec(&self, summary: &String, _: &ExecContext) -> NodeResult<String> {
        log("exec-start approve");
        minllm::durable::interrupt(format!("publish {summary}?"))
    }
    fn post(&self, ledger: &mut Ledger, _: String, answer: String) -> NodeResult<()> {
        ledger.approved = Some(answer);
        Ok(())
    }
}

/// The store of the flow `spread`: `n` documents in, one line per document out.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Docs {
    n: usize,
    lines: Vec<String>,
}

/// Reads every document on whichever worker gets it: `ITEM_MS` each (20 by
/// default), `ITEM_THREADS` at once on one worker (8 by default). Its output
/// names the worker that made it.
struct ReadAll;

impl BatchNode<Docs> for ReadAll {
    type Item = String;
    type Output = String;
    type Action = ();
    fn prep(&self, docs: &Docs, _: &Params) -> NodeResult<Vec<String>> {
        Ok((0..docs.n).map(|i| format!("doc-{i}")).collect())
    }
    fn exec(&self, doc: &String, ctx: &ExecContext) -> NodeResult<String> {
        let i = ctx.item().unwrap_or_default();
        log(&format!("item-start {i}"));
        maybe_die(&format!("item:{i}"));
        std::thread::sleep(Duration::from_millis(env_or("ITEM_MS", 20)));
        log(&format!("item-end {i}"));
        Ok(format!("{doc} read by {}", std::process::id()))
    }
    fn post(&self, docs: &mut Docs, _: Vec<String>, lines: Vec<String>) -> NodeResult<()> {
        docs.lines = lines;
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: Some(env_or("ITEM_THREADS", 8)) }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The store of the flow `chapters`: a parallel batch flow writes `n`
/// chapters, each item's run on whichever worker gets it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Book {
    n: usize,
    chapters: Vec<String>,
    lengths: std::collections::BTreeMap<String, usize>,
}

/// Writes chapter `i` (a param of its item's run).
struct Write;

impl Node<Book> for Write {
    type Prep = u64;
    type Exec = String;
    type Action = ();
    fn prep(&self, _: &Book, params: &Params) -> NodeResult<u64> {
        Ok(params.get("i")?)
    }
    fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<String> {
        log(&format!("chapter-start {i}"));
        maybe_die(&format!("chapter:{i}"));
        std::thread::sleep(Duration::from_millis(env_or("ITEM_MS", 20)));
        log(&format!("chapter-end {i}"));
        Ok(format!("chapter {i} by {}", std::process::id()))
    }
    fn post(&self, book: &mut Book, i: u64, chapter: String) -> NodeResult<()> {
        book.lengths.insert(format!("ch-{i:03}"), chapter.len());
        book.chapters.push(chapter);
        Ok(())
    }
}

fn chapters() -> Flow<Book> {
    let mut inner = Flow::new("chapter");
    inner.add("write", Write);
    let mut flow = Flow::new("chapters");
    let items = |book: &Book, _: &Params| Ok((0..book.n).map(|i| Params::new().with("i", i)).collect());
    flow.add("write_all", minllm::BatchFlow::new(inner, items).parallel().limit(4));
    flow
}

fn spread() -> Flow<Docs> {
    let mut flow = Flow::new("spread");
    flow.add("read", ReadAll);
    flow
}

#[derive(Debug, Clone, Copy, PartialEq, Action)]
enum Step {
    Again,
    Done,
}

/// The paid calls of `research` in a `flow!` flow.
struct TypedWork;

#[node]
impl TypedWork {
    fn prep(&self, ledger: &Ledger) -> u64 {
        ledger.count
    }
    fn exec(&self, k: &u64) -> String {
        log(&format!("typed-start {k}"));
        if let Some(ms) = std::env::var("SLOW_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        maybe_die(&format!("typed:{k}"));
        log(&format!("typed-end {k}"));
        format!("paid call {k}")
    }
    fn post(&self, ledger: &mut Ledger, _: u64, line: String) -> Step {
        ledger.log.push(line);
        ledger.count += 1;
        if ledger.count < 5 { Step::Again } else { Step::Done }
    }
}

flow! {
    /// Five paid calls, as a `flow!` flow: served on Restate as `Tally`.
    struct Tally: Ledger {
        node work: TypedWork = TypedWork;
        start work;
        max_steps 20;
        work - Step::Again >> work;
        work - Step::Done >> end;
    }
}

flow! {
    /// `Tally` as an `async struct`.
    async struct AsyncTally: Ledger {
        node work: TypedWork = TypedWork;
        start work;
        max_steps 20;
        work - Step::Again >> work;
        work - Step::Done >> end;
    }
}

fn flow() -> Flow<Ledger> {
    let mut flow = Flow::new("research");
    let work = flow.add("work", Work);
    let summarize = flow.add("summarize", Summarize);
    let approve = flow.add("approve", Approve);
    flow.edge(work.on("again") >> work).edge(work.on("done") >> summarize >> approve).max_steps(100);
    flow
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: restate_worker <port>");
    let mut services = RestateFlow::new(flow()).definitions().expect("a valid service name");
    // Tuned: a worker that comes back is tried again within a second.
    let spread = RestateFlow::new(spread())
        .retry_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .retention(Duration::from_secs(3600))
        .inactivity_timeout(Duration::from_secs(300));
    services.extend(spread.definitions().expect("a valid service name"));
    services.extend(RestateFlow::new(Tally::new()).definitions().expect("a valid service name"));
    services.extend(RestateFlow::new(AsyncTally::new()).definitions().expect("a valid service name"));
    let chapters = RestateFlow::new(chapters()).retry_backoff(Duration::from_millis(50), Duration::from_secs(1));
    services.extend(chapters.definitions().expect("a valid service name"));
    // A sync `flow!` flow inside a runtime flow, which Restate refuses.
    let mut around = Flow::new("around");
    around.add("tally", Tally::new());
    services.extend(RestateFlow::new(around).definitions().expect("a valid service name"));
    services.extend(
        RestateFlow::new(minllm_integration_tests::bench_flow::flow()).definitions().expect("a valid service name"),
    );
    serve(([127, 0, 0, 1], port).into(), services).await.expect("a port to serve on");
}
