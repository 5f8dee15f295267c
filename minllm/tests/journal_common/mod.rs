//! A journal in memory that behaves as a durable-execution engine's does
//! (Restate's): each step runs once and is recorded; a replay after a crash
//! returns the records in order without running them, and checks that the
//! run asks for the same steps. And one that fans batch items out, as a
//! cluster does.

#![allow(dead_code)] // each test file uses a part

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use minllm::Flow;
use minllm::durable::{StepJournal, StepResult};

/// The journal of one run: its records, the next one to replay, and a step
/// at which the process "dies" (that step never runs, the run stops).
#[derive(Default)]
pub struct Journal {
    pub records: Mutex<Vec<(String, Vec<u8>)>>,
    pub cursor: AtomicUsize,
    pub crash_at: Mutex<Option<usize>>,
    /// Answers given to the run's questions, not journaled yet.
    pub answers: Mutex<Vec<Vec<u8>>>,
}

impl Journal {
    /// A new attempt of the run, as the engine makes after a crash: replay from the start.
    pub fn restart(&self) {
        self.cursor.store(0, Ordering::SeqCst);
        *self.crash_at.lock().unwrap() = None;
    }
    pub fn names(&self) -> Vec<String> {
        self.records.lock().unwrap().iter().map(|(n, _)| n.clone()).collect()
    }
}

impl StepJournal for Journal {
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>> {
        Box::pin(async move {
            let at = self.cursor.fetch_add(1, Ordering::SeqCst);
            if let Some((recorded, bytes)) = self.records.lock().unwrap().get(at).cloned() {
                if recorded != name {
                    return Err(format!("replay asked for step {name} where the journal has {recorded}"));
                }
                return Ok(bytes);
            }
            if *self.crash_at.lock().unwrap() == Some(at) {
                return Err("the process died".to_owned());
            }
            let bytes = step.await;
            self.records.lock().unwrap().push((name, bytes.clone()));
            Ok(bytes)
        })
    }

    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let at = self.cursor.fetch_add(1, Ordering::SeqCst);
            if let Some((recorded, bytes)) = self.records.lock().unwrap().get(at).cloned() {
                assert_eq!(recorded, name, "the replay asks where the journal has {recorded}");
                return Ok(bytes);
            }
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() {
                // The engine suspends the run here; nothing waits in memory.
                return Err(format!("waiting for an answer to {}", String::from_utf8_lossy(&question)));
            }
            let answer = answers.remove(0);
            self.records.lock().unwrap().push((name, answer.clone()));
            Ok(answer)
        })
    }
}

/// A journal that fans out as a cluster does: each batch item goes to a
/// "worker" ([`Flow::run_batch_item`], all at once, each on a task of its
/// own), and the items' results are journaled as one record.
pub struct Fanning<'f> {
    pub journal: Journal,
    pub flow: &'f Flow,
    pub sent: Mutex<Vec<String>>,
}

impl StepJournal for Fanning<'_> {
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>> {
        self.journal.step(name, step)
    }

    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        self.journal.ask(name, question)
    }

    fn fans_out(&self) -> bool {
        true
    }

    fn fan_out<'a>(
        &'a self,
        node: String,
        name: String,
        items: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<Vec<StepResult>, String>> {
        Box::pin(async move {
            self.sent.lock().unwrap().push(node.clone());
            let mut steps = Vec::new();
            for (i, item) in items.iter().enumerate() {
                steps.push(self.flow.run_batch_item(&node, i, item)?);
            }
            // The items run only if the record is not there already.
            let all = Box::pin(async move {
                let tasks: Vec<_> = steps.into_iter().map(tokio::spawn).collect();
                let mut results = Vec::new();
                for task in tasks {
                    results.push(task.await.map_err(|e| e.to_string()).unwrap_or_default());
                }
                serde_json::to_vec(&results).unwrap()
            });
            let record = self.journal.step(format!("{name} items"), all).await?;
            serde_json::from_slice(&record).map_err(|e| e.to_string())
        })
    }
}

/// A multi-thread runtime of two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
