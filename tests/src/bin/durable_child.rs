//! A process for the crash tests (`tests/durable_crash.rs`): runs or resumes a
//! checkpointed flow, and kills itself with `kill -9` where it is told to.
//!
//! `durable_child <database> <run id> run|resume|answer:<text>`, with
//! `KILL_AT=<prep|exec|between|post|item>:<k>` (once: while the file `KILL_ONCE`
//! does not exist), `LOG=<file>` (one line per hook call), `SLOW_MS=<ms>` (each
//! `exec` sleeps), `PAD=<bytes>` (a store field rewritten at every step),
//! `ASYNC` (the async engine), `BATCH_FLOW` (the batch of squares as a batch
//! flow instead of a batch node), `PARALLEL` (that batch in parallel).
//! Exit codes: 0 finished (prints the store but its padding, as JSON), 3 paused (prints the
//! question), 4 the run is busy, 1 any other error.

use std::io::Write as _;
use std::time::Duration;

use minllm::durable::{Outcome, SqliteCheckpointer, interrupt};
use minllm::{BatchFlow, BatchMode, BatchNode, End, Error, ExecContext, Flow, Node, NodeResult, Params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    count: u64,
    log: Vec<String>,
    pad: String,
    squares: u64,
    approved: Option<String>,
}

/// Appends a line to the log file, if any.
fn log(line: String) {
    if let Ok(path) = std::env::var("LOG") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file");
        writeln!(file, "{line}").expect("log line");
    }
}

/// Kills this process with SIGKILL when `KILL_AT` names this point and step.
fn maybe_die(point: &str, k: u64) {
    let Ok(at) = std::env::var("KILL_AT") else { return };
    if at != format!("{point}:{k}") {
        return;
    }
    let once = std::env::var("KILL_ONCE").expect("KILL_ONCE with KILL_AT");
    if std::path::Path::new(&once).exists() {
        return;
    }
    std::fs::write(&once, b"killed").expect("marker");
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The paid call: `n` steps of it in the inner flow.
struct Work {
    n: u64,
}

impl Node<Ledger> for Work {
    type Prep = u64;
    type Exec = String;
    type Action = &'static str;
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<u64> {
        maybe_die("prep", ledger.count);
        Ok(ledger.count)
    }
    fn exec(&self, k: &u64, _: &ExecContext) -> NodeResult<String> {
        log(format!("exec-start {k}"));
        if let Some(ms) = std::env::var("SLOW_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        maybe_die("exec", *k);
        log(format!("exec-end {k}"));
        Ok(format!("paid call {k}"))
    }
    fn post(&self, ledger: &mut Ledger, k: u64, line: String) -> NodeResult<&'static str> {
        maybe_die("between", k);
        log(format!("post {k}"));
        ledger.log.push(line);
        let pad: usize = std::env::var("PAD").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        ledger.pad = ((k as u8 % 26 + b'a') as char).to_string().repeat(pad);
        maybe_die("post", k);
        ledger.count += 1;
        Ok(if ledger.count < self.n { "again" } else { "done" })
    }
}

/// A batch of 30 items after the paid calls (`parallel` when `PARALLEL` is set).
struct Items;

impl BatchNode<Ledger> for Items {
    type Item = u64;
    type Output = u64;
    type Action = ();
    fn prep(&self, _: &Ledger, _: &Params) -> NodeResult<Vec<u64>> {
        Ok((0..30).collect())
    }
    fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<u64> {
        log(format!("item-start {i}"));
        maybe_die("item", *i);
        Ok(i * i)
    }
    fn post(&self, ledger: &mut Ledger, _: Vec<u64>, squares: Vec<u64>) -> NodeResult<()> {
        ledger.squares = squares.iter().sum();
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        if std::env::var("PARALLEL").is_ok() { BatchMode::Parallel { threads: Some(4) } } else { BatchMode::Sequential }
    }
}

/// One item of the batch flow that replaces `Items` when `BATCH_FLOW` is set:
/// the same squares, each item a run of an inner flow.
struct Square;

impl Node<Ledger> for Square {
    type Prep = u64;
    type Exec = u64;
    type Action = ();
    fn prep(&self, _: &Ledger, params: &Params) -> NodeResult<u64> {
        Ok(params.get("i")?)
    }
    fn exec(&self, i: &u64, _: &ExecContext) -> NodeResult<u64> {
        log(format!("item-start {i}"));
        maybe_die("item", *i);
        Ok(i * i)
    }
    fn post(&self, ledger: &mut Ledger, _: u64, square: u64) -> NodeResult<()> {
        ledger.squares += square;
        Ok(())
    }
}

fn squares_flow() -> BatchFlow<Ledger> {
    let mut inner = Flow::new("square");
    inner.add("square", Square);
    let batch =
        BatchFlow::new(inner, |_: &Ledger, _: &Params| Ok((0..30u64).map(|i| Params::new().with("i", i)).collect()));
    if std::env::var("PARALLEL").is_ok() { batch.limit(4) } else { batch }
}

/// Asks for approval when `ASK` is set.
struct Approve;

impl Node<Ledger> for Approve {
    type Prep = ();
    type Exec = Option<String>;
    type Action = ();
    fn prep(&self, _: &Ledger, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<Option<String>> {
        if std::env::var("ASK").is_err() {
            return Ok(None);
        }
        log("ask".to_owned());
        Ok(Some(interrupt("publish?")?))
    }
    fn post(&self, ledger: &mut Ledger, _: (), answer: Option<String>) -> NodeResult<()> {
        ledger.approved = answer;
        Ok(())
    }
}

fn flow(n: u64) -> Flow<Ledger> {
    let mut inner = Flow::new("inner");
    let work = inner.add("work", Work { n });
    inner.edge(work.on("again") >> work).edge(work.on("done") >> End).max_steps(10_000);
    let mut outer = Flow::new("outer");
    let nested = outer.add("inner", inner);
    let items = if std::env::var("BATCH_FLOW").is_ok() {
        outer.add("items", squares_flow())
    } else {
        outer.add("items", Items)
    };
    let approve = outer.add("approve", Approve);
    outer.edge(nested.on("done") >> items >> approve);
    outer
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, run, mode] = &args[..] else {
        eprintln!("usage: durable_child <database> <run id> run|resume|answer:<text>");
        std::process::exit(2);
    };
    let n = std::env::var("STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let checkpoints = match SqliteCheckpointer::open(db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let flow = flow(n);
    let durable = flow.durable(&checkpoints, run.as_str());
    let mut ledger = Ledger::default();
    // `ASYNC` runs the same flow through the async engine (its `exec`s on
    // tokio's blocking pool).
    let runtime = std::env::var("ASYNC")
        .is_ok()
        .then(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime"));
    let outcome = match (mode.as_str(), &runtime) {
        ("run", None) => durable.run(&mut ledger),
        ("run", Some(rt)) => rt.block_on(durable.run_async(&mut ledger)),
        ("resume", None) => durable.resume(&mut ledger),
        ("resume", Some(rt)) => rt.block_on(durable.resume_async(&mut ledger)),
        (other, rt) => match (other.strip_prefix("answer:"), rt) {
            (Some(answer), None) => durable.resume_with(&mut ledger, answer),
            (Some(answer), Some(rt)) => rt.block_on(durable.resume_with_async(&mut ledger, answer)),
            (None, _) => {
                eprintln!("unknown mode {other}");
                std::process::exit(2);
            }
        },
    };
    match outcome {
        Ok(Outcome::Finished(_)) => {
            // Without the padding: a parent that reads only after a kill must
            // not find the child blocked on a full pipe.
            let Ledger { count, log, approved, squares, .. } = ledger;
            println!("{}", serde_json::json!({ "count": count, "log": log, "approved": approved, "squares": squares }));
        }
        Ok(Outcome::Paused(pause)) => {
            println!("{}", pause.question_json());
            std::process::exit(3);
        }
        Err(e @ Error::Checkpoint { source: minllm::durable::CheckpointError::Busy { .. }, .. }) => {
            eprintln!("{e}");
            std::process::exit(4);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
