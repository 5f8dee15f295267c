//! Retries, waits, fallback and panics.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::sync::Mutex;
use std::time::{Duration, Instant};

use minllm::{BoxError, Error, ExecContext, Flow, Node, NodeResult, Params, Retry, SharedStore, Stage};

/// Fails its first `failures` attempts; records each attempt number it saw,
/// and when each attempt began and ended.
struct Flaky {
    failures: u32,
    retry: Retry,
    seen: Mutex<Vec<u32>>,
    times: Mutex<Vec<(Instant, Instant)>>,
    fallback: Option<&'static str>,
}

impl Flaky {
    fn new(failures: u32, retry: Retry) -> Self {
        Flaky { failures, retry, seen: Mutex::new(Vec::new()), times: Mutex::new(Vec::new()), fallback: None }
    }
}

impl Node for Flaky {
    type Prep = ();
    type Exec = String;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), ctx: &ExecContext) -> NodeResult<String> {
        let began = Instant::now();
        self.seen.lock().unwrap().push(ctx.attempt());
        assert_eq!(ctx.max_attempts(), self.retry.attempts.max(1));
        let outcome = if ctx.attempt() <= self.failures {
            Err(format!("attempt {} failed", ctx.attempt()).into())
        } else {
            Ok(format!("ok on attempt {}", ctx.attempt()))
        };
        self.times.lock().unwrap().push((began, Instant::now()));
        outcome
    }
    fn exec_fallback(&self, _: &(), error: BoxError, ctx: &ExecContext) -> NodeResult<String> {
        assert!(ctx.is_last_attempt());
        match self.fallback {
            Some(answer) => Ok(format!("{answer} after: {error}")),
            None => Err(error),
        }
    }
    fn post(&self, store: &mut SharedStore, _: (), out: String) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn retry(&self) -> Retry {
        self.retry
    }
}

#[test]
fn retries_until_success() {
    let node = Flaky::new(2, Retry::attempts(3));
    let mut store = SharedStore::new();
    node.run(&mut store).unwrap();
    assert_eq!(*node.seen.lock().unwrap(), [1, 2, 3]);
    assert_eq!(store.get::<String>("out").unwrap(), "ok on attempt 3");
}

#[test]
fn gives_up_after_max_retries_and_reports_the_attempts() {
    let mut flow = Flow::new("f");
    flow.add("flaky", Flaky::new(5, Retry::attempts(3)));
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    match &err {
        Error::Node { node, stage, attempts, item, .. } => {
            assert_eq!((node.as_str(), *stage, *attempts, *item), ("flaky", Stage::Exec, 3, None));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "exec of node `flaky` in flow `f` failed after 3 attempts: attempt 3 failed");
}

#[test]
fn one_attempt_by_default_and_zero_counts_as_one() {
    for retry in [Retry::default(), Retry::attempts(0)] {
        let node = Flaky::new(1, retry);
        assert!(node.run(&mut SharedStore::new()).is_err());
        assert_eq!(*node.seen.lock().unwrap(), [1]);
    }
}

#[test]
fn waits_before_each_retry() {
    let wait = Duration::from_millis(40);
    let node = Flaky::new(2, Retry::attempts(3).wait(wait));
    node.run(&mut SharedStore::new()).unwrap();
    let times = node.times.lock().unwrap();
    assert_eq!(times.len(), 3);
    for (attempt, pair) in times.windows(2).enumerate() {
        let (ended, next_began) = (pair[0].1, pair[1].0);
        let gap = next_began - ended;
        assert!(gap >= wait, "attempt {} began {gap:?} after attempt {} failed", attempt + 2, attempt + 1);
    }
}

#[test]
fn the_fallback_runs_after_the_last_attempt_and_can_recover() {
    let mut node = Flaky::new(9, Retry::attempts(2));
    node.fallback = Some("cached answer");
    let mut store = SharedStore::new();
    node.run(&mut store).unwrap();
    assert_eq!(*node.seen.lock().unwrap(), [1, 2]);
    assert_eq!(store.get::<String>("out").unwrap(), "cached answer after: attempt 2 failed");
}

/// Panics in the hook named by `stage`.
struct Panicky(Stage);

impl Node for Panicky {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<()> {
        store.set("prep ran", true);
        if self.0 == Stage::Prep {
            panic!("prep exploded");
        }
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        if self.0 == Stage::Exec {
            let v: Vec<u8> = Vec::new();
            let _ = v[3];
        }
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        if self.0 == Stage::Post {
            panic!("post exploded at {}", 42);
        }
        store.set("post ran", true);
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(3)
    }
}

#[test]
fn a_panic_becomes_an_error_and_the_store_stays_usable() {
    let cases = [
        (Stage::Prep, "prep of node `boom` in flow `f` panicked: prep exploded"),
        // A panicking attempt is retried; the error says how many were made.
        (
            Stage::Exec,
            "exec of node `boom` in flow `f` panicked after 3 attempts: index out of bounds: the len is 0 but the index is 3",
        ),
        (Stage::Post, "post of node `boom` in flow `f` panicked: post exploded at 42"),
    ];
    for (stage, message) in cases {
        let mut flow = Flow::new("f");
        flow.add("boom", Panicky(stage));
        let mut store = SharedStore::new();
        let err = flow.run(&mut store).unwrap_err();
        let attempts = if stage == Stage::Exec { 3 } else { 1 };
        assert!(matches!(err, Error::Panic { stage: s, attempts: a, .. } if s == stage && a == attempts), "{err:?}");
        assert_eq!(err.to_string(), message);
        // The store still works after the panic.
        assert_eq!(store.get::<bool>("prep ran"), Some(true));
        store.set("after", 1_u8);
        assert_eq!(store.get::<u8>("after"), Some(1));
    }
}

/// Panics on its first two attempts, like a client that unwraps a bad reply.
struct PanicsTwice {
    calls: std::sync::atomic::AtomicU32,
    recover: bool,
}

impl Node for PanicsTwice {
    type Prep = ();
    type Exec = String;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), ctx: &ExecContext) -> NodeResult<String> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if ctx.attempt() <= 2 {
            panic!("bad reply on attempt {}", ctx.attempt());
        }
        Ok("fine".into())
    }
    fn exec_fallback(&self, _: &(), error: BoxError, _: &ExecContext) -> NodeResult<String> {
        let panicked = error.downcast_ref::<minllm::Panicked>().map(|p| p.0.clone());
        match (self.recover, panicked) {
            (true, Some(message)) => Ok(format!("recovered from: {message}")),
            _ => Err(error),
        }
    }
    fn post(&self, store: &mut SharedStore, _: (), out: String) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn retry(&self) -> Retry {
        Retry::attempts(if self.recover { 2 } else { 3 })
    }
}

#[test]
fn a_panicking_attempt_is_retried_and_reaches_the_fallback() {
    let node = PanicsTwice { calls: Default::default(), recover: false };
    let mut store = SharedStore::new();
    node.run(&mut store).unwrap();
    assert_eq!(store.get::<String>("out").unwrap(), "fine", "the third attempt succeeded");
    assert_eq!(node.calls.load(std::sync::atomic::Ordering::SeqCst), 3);

    let node = PanicsTwice { calls: Default::default(), recover: true };
    node.run(&mut store).unwrap();
    assert_eq!(store.get::<String>("out").unwrap(), "recovered from: bad reply on attempt 2");
    assert_eq!(node.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
