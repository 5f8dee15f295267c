//! Checkpointed runs in one process: resume after an error, pauses, history,
//! branches, stores that cannot be checkpointed, damaged databases. Crashes
//! (a killed child process) are in `durable_crash.rs`.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod durable_common;

use durable_common::{backends, finished, tempdir};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minllm::durable::{Checkpointer, MemoryCheckpointer, Outcome, SqliteCheckpointer, interrupt};
use minllm::{End, Error, ExecContext, Flow, Node, NodeResult, Params, SharedStore};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Ledger {
    count: u64,
    log: Vec<String>,
}

/// Counts its `exec` calls; fails in `post` while `fail_post` is above 0.
#[derive(Clone, Default)]
struct Calls {
    execs: Arc<AtomicUsize>,
    fail_post: Arc<AtomicUsize>,
}

/// Adds one line per visit, `n` times, then ends.
struct Work {
    n: u64,
    calls: Calls,
}

impl Node<Ledger> for Work {
    type Prep = u64;
    type Exec = String;
    type Action = &'static str;
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<u64> {
        Ok(ledger.count)
    }
    fn exec(&self, count: &u64, _: &ExecContext) -> NodeResult<String> {
        self.calls.execs.fetch_add(1, Ordering::SeqCst);
        Ok(format!("paid call {count}"))
    }
    fn post(&self, ledger: &mut Ledger, _: u64, line: String) -> NodeResult<&'static str> {
        ledger.log.push(line);
        // Half-way through post: the store is changed, then post fails.
        if self.calls.fail_post.load(Ordering::SeqCst) > 0 {
            self.calls.fail_post.fetch_sub(1, Ordering::SeqCst);
            return Err("the database went away".into());
        }
        ledger.count += 1;
        Ok(if ledger.count < self.n { "again" } else { "done" })
    }
}

fn work_flow(n: u64, calls: &Calls) -> Flow<Ledger> {
    let mut flow = Flow::new("ledger");
    let work = flow.add("work", Work { n, calls: calls.clone() });
    flow.edge(work.on("again") >> work).edge(work.on("done") >> End).max_steps(1000);
    flow
}

fn expected(n: u64) -> Ledger {
    Ledger { count: n, log: (0..n).map(|i| format!("paid call {i}")).collect() }
}

#[test]
fn a_checkpointed_run_gives_the_same_result_and_a_checkpoint_per_transition() {
    for (checkpointer, _dir) in backends() {
        let calls = Calls::default();
        let flow = work_flow(5, &calls);
        let mut ledger = Ledger::default();
        let run = flow.durable(&*checkpointer, "r1");
        assert_eq!(finished(run.run(&mut ledger).unwrap()), "done");
        assert_eq!(ledger, expected(5));
        assert_eq!(calls.execs.load(Ordering::SeqCst), 5);
        let history = run.history().unwrap();
        // One before each of the 5 transitions, and the end.
        assert_eq!(history.len(), 6);
        assert_eq!(history.iter().map(|c| c.step).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 5]);
        assert!(history.iter().all(|c| c.node == "work"));
        assert_eq!(history.last().unwrap().status, "finished");
        // Starting it again is refused; resuming a finished run gives its result and store.
        let again = run.run(&mut Ledger::default()).unwrap_err();
        assert!(again.to_string().contains("resume it, or start a new run id"), "{again}");
        let mut loaded = Ledger::default();
        assert_eq!(finished(run.resume(&mut loaded).unwrap()), "done");
        assert_eq!(loaded, expected(5));
        assert_eq!(calls.execs.load(Ordering::SeqCst), 5, "resuming a finished run runs nothing");
    }
}

#[test]
fn a_run_that_failed_resumes_from_its_last_checkpoint_without_paying_again() {
    for (checkpointer, _dir) in backends() {
        let calls = Calls::default();
        let flow = work_flow(3, &calls);
        let run = flow.durable(&*checkpointer, "r1");
        calls.fail_post.store(1, Ordering::SeqCst);
        let mut ledger = Ledger::default();
        let error = run.run(&mut ledger).unwrap_err();
        assert!(matches!(error, Error::Node { .. }), "{error}");
        assert_eq!(calls.execs.load(Ordering::SeqCst), 1);
        // The half-written store is not in the checkpoint: it comes back clean.
        let mut ledger = Ledger { count: 99, log: vec!["junk".into()] };
        assert_eq!(finished(run.resume(&mut ledger).unwrap()), "done");
        assert_eq!(ledger, expected(3));
        assert_eq!(calls.execs.load(Ordering::SeqCst), 3, "the recorded exec of the failed visit was not paid again");
    }
}

/// Asks for approval in `exec` and, for a second opinion, in `post`.
struct Approve;

impl Node<Ledger> for Approve {
    type Prep = usize;
    type Exec = String;
    type Action = ();
    fn prep(&self, ledger: &Ledger, _: &Params) -> NodeResult<usize> {
        Ok(ledger.log.len())
    }
    fn exec(&self, lines: &usize, _: &ExecContext) -> NodeResult<String> {
        interrupt(format!("publish {lines} lines?"))
    }
    fn post(&self, ledger: &mut Ledger, _: usize, first: String) -> NodeResult<()> {
        let second: String = interrupt(serde_json::json!({ "ask": "sure?", "first": first }))?;
        ledger.log.push(format!("{first}/{second}"));
        Ok(())
    }
}

#[test]
fn interrupts_pause_the_run_and_answers_resume_it_in_order() {
    for (checkpointer, _dir) in backends() {
        let calls = Calls::default();
        let mut flow = Flow::new("publish");
        let work = flow.add("work", Work { n: 2, calls: calls.clone() });
        let approve = flow.add("approve", Approve);
        flow.edge(work.on("again") >> work).edge(work.on("done") >> approve).max_steps(100);
        let run = flow.durable(&*checkpointer, "p1");
        let mut ledger = Ledger::default();
        let Outcome::Paused(pause) = run.run(&mut ledger).unwrap() else { panic!("asks first") };
        assert_eq!(pause.node(), "approve");
        assert_eq!(pause.run_id(), "p1");
        assert_eq!(pause.question::<String>().unwrap(), "publish 2 lines?");
        // A new store, as a new process would have: the checkpoint gives it back.
        let mut ledger = Ledger::default();
        let Outcome::Paused(pause) = run.resume_with(&mut ledger, "yes").unwrap() else { panic!("asks twice") };
        assert_eq!(pause.question_json(), serde_json::json!({ "ask": "sure?", "first": "yes" }));
        // Resuming without an answer asks the same again.
        let Outcome::Paused(same) = run.resume(&mut Ledger::default()).unwrap() else { panic!("still paused") };
        assert_eq!(same.question_json(), pause.question_json());
        let mut ledger = Ledger::default();
        assert_eq!(finished(run.resume_with(&mut ledger, "very").unwrap()), "default");
        assert_eq!(ledger.log.last().unwrap(), "yes/very");
        assert_eq!(calls.execs.load(Ordering::SeqCst), 2, "work ran once per step in all");
        let answered = run.resume_with(&mut Ledger::default(), "again").unwrap_err();
        assert!(answered.to_string().contains("not paused"), "{answered}");
        let statuses: Vec<_> = run.history().unwrap().iter().map(|c| c.status).collect();
        assert_eq!(statuses, ["running", "running", "running", "paused", "paused", "paused", "finished"]);
    }
}

#[test]
fn interrupt_outside_a_checkpointed_run_is_an_error_that_says_so() {
    let mut flow = Flow::new("publish");
    flow.add("approve", Approve);
    let error = flow.run(&mut Ledger::default()).unwrap_err();
    assert!(error.to_string().contains("interrupt() needs a checkpointed run"), "{error}");
}

#[test]
fn a_run_branches_from_an_earlier_checkpoint_with_a_changed_store() {
    for (checkpointer, _dir) in backends() {
        let calls = Calls::default();
        let flow = work_flow(4, &calls);
        let run = flow.durable(&*checkpointer, "b1");
        finished(run.run(&mut Ledger::default()).unwrap());
        let history = run.history().unwrap();
        let third = history.iter().find(|c| c.step == 3).unwrap().seq;
        let mut ledger = Ledger::default();
        let checkpoint = run.load(Some(third), &mut ledger).unwrap();
        assert_eq!(checkpoint.node(), "work");
        assert_eq!(ledger.count, 2);
        ledger.log[1] = "a fixed line".into();
        assert_eq!(finished(run.resume_from(third, &mut ledger).unwrap()), "done");
        assert_eq!(ledger.log, ["paid call 0", "a fixed line", "paid call 2", "paid call 3"]);
        let history = run.history().unwrap();
        let branch: Vec<_> = history.iter().filter(|c| c.parent == Some(third) || c.seq == third).collect();
        assert!(branch.len() >= 2, "the branch follows checkpoint {third}: {history:?}");
        assert!(history.iter().all(|c| c.seq > 0) && history.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}

#[test]
fn a_shared_store_is_checkpointed_key_by_key_and_unregistered_types_are_named() {
    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    struct Ticket {
        id: u32,
    }
    struct Put;
    impl Node for Put {
        type Prep = ();
        type Exec = u32;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<u32> {
            Ok(7)
        }
        fn post(&self, store: &mut SharedStore, _: (), id: u32) -> NodeResult<()> {
            store.set("ticket", Ticket { id });
            Ok(())
        }
    }
    struct Read;
    impl Node for Read {
        type Prep = ();
        type Exec = ();
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
            Ok(())
        }
        fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
            Ok(())
        }
    }
    let mut flow = Flow::new("tickets");
    let put = flow.add("put", Put);
    let read = flow.add("read", Read);
    flow.edge(put >> read);
    let checkpoints = MemoryCheckpointer::new();
    let store = SharedStore::new();
    store.set("question", "why?".to_string());
    let error = flow.durable(&checkpoints, "t1").run(&mut store.clone()).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::NotCheckpointable { .. }), "{text}");
    assert!(text.contains("store key `ticket`") && text.contains("Ticket") && text.contains("register"), "{text}");
    // Registered, the same run goes on from its last checkpoint.
    minllm::durable::register::<Ticket>();
    let mut resumed = SharedStore::new();
    assert_eq!(finished(flow.durable(&checkpoints, "t1").resume(&mut resumed).unwrap()), "default");
    assert_eq!(resumed.get::<Ticket>("ticket"), Some(Ticket { id: 7 }));
    assert_eq!(resumed.get::<String>("question").as_deref(), Some("why?"));
}

#[test]
fn a_node_gone_from_the_flow_is_named_when_resuming() {
    let checkpoints = MemoryCheckpointer::new();
    let mut flow = Flow::new("publish");
    flow.add("approve", Approve);
    let Outcome::Paused(_) = flow.durable(&checkpoints, "g1").run(&mut Ledger::default()).unwrap() else {
        panic!("asks")
    };
    let mut renamed = Flow::new("publish");
    renamed.add("sign_off", Approve);
    let error = renamed.durable(&checkpoints, "g1").resume_with(&mut Ledger::default(), "yes").unwrap_err();
    assert!(matches!(error, Error::Resume { .. }), "{error}");
    assert!(error.to_string().contains("node `approve`, which flow `publish` no longer has"), "{error}");
}

#[test]
fn sqlite_can_wait_for_the_disk_on_every_write() {
    let dir = tempdir::Dir::new();
    let sqlite = SqliteCheckpointer::open(dir.path().join("runs.db")).unwrap().sync_every_write().unwrap();
    let flow = work_flow(2, &Calls::default());
    assert_eq!(finished(flow.durable(&sqlite, "s").run(&mut Ledger::default()).unwrap()), "done");
    assert_eq!(sqlite.history("s").unwrap().len(), 3);
    assert!(sqlite.path().ends_with("runs.db"));
}

#[test]
fn one_holder_per_run_id() {
    for (checkpointer, _dir) in backends() {
        let held = checkpointer.lock("busy").unwrap();
        let flow = work_flow(1, &Calls::default());
        let error = flow.durable(&*checkpointer, "busy").run(&mut Ledger::default()).unwrap_err();
        assert!(error.to_string().contains("is being run by another process"), "{error}");
        drop(held);
        assert_eq!(finished(flow.durable(&*checkpointer, "busy").run(&mut Ledger::default()).unwrap()), "done");
    }
}

#[test]
fn damaged_and_foreign_databases_are_refused_and_left_alone() {
    let dir = tempdir::Dir::new();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let error = SqliteCheckpointer::open(&garbage).unwrap_err().to_string();
    assert!(error.contains("cannot be used") && error.contains("garbage.db"), "{error}");
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a; 8192], "the file is left as it was");

    let foreign = dir.path().join("foreign.db");
    {
        let sqlite = SqliteCheckpointer::open(dir.path().join("scratch.db")).unwrap();
        drop(sqlite);
    }
    std::fs::copy(dir.path().join("scratch.db"), &foreign).unwrap();
    // Make it another program's: its own table, no minllm format row.
    let other = rusqlite_free_foreign(&foreign);
    let error = SqliteCheckpointer::open(&other).unwrap_err().to_string();
    assert!(error.contains("not minllm checkpoints"), "{error}");
}

/// A SQLite file of another program, made without SQL: a copy of an empty
/// checkpoint database whose `meta` format row says something else.
fn rusqlite_free_foreign(base: &std::path::Path) -> std::path::PathBuf {
    let bytes = std::fs::read(base).unwrap();
    let needle = b"minllm checkpoints";
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the format row is in the file");
    let mut changed = bytes.clone();
    changed[at..at + needle.len()].copy_from_slice(b"someone else's app");
    let path = base.with_extension("other.db");
    std::fs::write(&path, changed).unwrap();
    path
}

#[test]
fn a_large_value_that_never_changes_is_stored_once() {
    // 100 steps here (a test build serializes the megabyte slowly); the
    // benchmark `durable` measures 1000.
    const STEPS: u64 = 100;
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
            Ok(if big.steps < STEPS { "again" } else { "done" })
        }
    }
    let dir = tempdir::Dir::new();
    let path = dir.path().join("big.db");
    let mut flow = Flow::new("big");
    let tick = flow.add("tick", Tick);
    flow.edge(tick.on("again") >> tick).edge(tick.on("done") >> End).max_steps(2000);
    {
        let sqlite = SqliteCheckpointer::open(&path).unwrap();
        let mut big = Big { document: "x".repeat(1 << 20), steps: 0 };
        finished(flow.durable(&sqlite, "big").run(&mut big).unwrap());
        assert_eq!(sqlite.history("big").unwrap().len(), STEPS as usize + 1);
    }
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(size < 2 << 20, "{STEPS} checkpoints of a 1 MB store took {size} bytes");
}

#[test]
fn an_interrupt_in_a_nested_flow_pauses_the_outer_run_and_resumes_there() {
    for (checkpointer, _dir) in backends() {
        let calls = Calls::default();
        let mut inner = Flow::new("review");
        inner.add("approve", Approve);
        let mut outer = Flow::new("publish");
        let work = outer.add("work", Work { n: 1, calls: calls.clone() });
        let nested = outer.add("review", inner);
        outer.edge(work.on("done") >> nested);
        let run = outer.durable(&*checkpointer, "n");
        let Outcome::Paused(pause) = run.run(&mut Ledger::default()).unwrap() else { panic!("asks") };
        assert_eq!(pause.node(), "review > approve");
        let Outcome::Paused(_) = run.resume_with(&mut Ledger::default(), "yes").unwrap() else { panic!("asks twice") };
        let mut ledger = Ledger::default();
        finished(run.resume_with(&mut ledger, "sure").unwrap());
        assert_eq!(ledger.log, ["paid call 0", "yes/sure"]);
        assert_eq!(calls.execs.load(Ordering::SeqCst), 1, "the work before the nested flow ran once");
    }
}
