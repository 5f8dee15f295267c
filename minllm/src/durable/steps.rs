//! Runs whose side effects a durable-execution engine journals (Restate):
//! the engine hands each `exec` (with its retries and fallback) to a
//! [`StepJournal`] as one step, and the journal runs it once, records what it
//! returned, and on a replay after a crash returns the record without running
//! it. The store and the position need no checkpoints there: the whole run is
//! replayed, deterministic code included, with the journaled results.

use futures_util::future::BoxFuture;

use super::{
    Checkpoint, CheckpointError, CheckpointInfo, Checkpointer, Drive, Mode, Outcome as RunOutcome, Plan, RunLock,
};
use crate::action::Label;
use crate::error::{Error, Failure};
use crate::events::Sink;
use crate::params::Params;

/// What a step returns, as the journal keeps it: bytes the engine made (the
/// `exec` result as plain data, or the error it failed with after its retries
/// and fallback) and reads back on a replay.
pub type StepResult = Vec<u8>;

/// A journal of steps: a durable-execution engine's (see the module docs).
///
/// The contract: `step` runs `step` at most once per journaled position and
/// returns its result; when the engine replays a run that already got past
/// this step, it returns the journaled result without running `step`. Steps
/// are asked for in the same order on every replay (the engine runs a flow's
/// nodes one after the other); `name` says which node it is, for the engine's
/// logs and UI. An error of the journal itself (not of the step) ends the run.
pub trait StepJournal: Send + Sync {
    /// Runs `step` as one journaled step, or returns its journaled result;
    /// an `Err` is the journal's own failure.
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>>;

    /// Waits, durably, for the answer to `question` (JSON), which a node's
    /// [`interrupt`](super::interrupt) asked: nothing needs to wait in memory,
    /// and the run goes on wherever the engine replays it once the answer is
    /// given. `name` names the pause (the node's place and the question's
    /// number); on a replay past the answer, the journaled answer (JSON).
    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>>;

    /// Whether the futures of this journal may be awaited on a thread of
    /// their own, blocked on, rather than by the task that runs the flow: a
    /// sync `flow!` flow inside a runtime flow does so. `true` unless
    /// overridden; Restate's may not (its futures move only when the
    /// invocation's own task polls them).
    fn blocks_anywhere(&self) -> bool {
        true
    }

    /// Whether this journal sends the items of batch nodes elsewhere
    /// ([`fan_out`](StepJournal::fan_out)); `false` unless overridden, and
    /// the items run as steps of the run, one after the other.
    fn fans_out(&self) -> bool {
        false
    }

    /// Runs the items of a batch node whose items run at the same time
    /// (`BatchMode::Parallel`, `AsyncBatchMode::Concurrent`) each as a step of
    /// its own, all at once, wherever the engine puts them (on the workers of
    /// a cluster); their results in the items' order. Only asked of a journal
    /// that [`fans_out`](StepJournal::fans_out).
    ///
    /// `node` is the node's key in the flow (the names of the flows around it
    /// within the run's flow, then its own, joined by ` > `), `name` its
    /// step's place in the run, `items` each item as JSON bytes. The worker
    /// that gets item `i` runs it with
    /// [`Flow::run_batch_item(node, i, item)`](crate::Flow::run_batch_item)
    /// and sends back what that returns. On a replay, the journaled results.
    ///
    /// (The Restate backend, which ships stores, also sends the item runs of
    /// parallel batch flows this way: `{"params": .., "store": ..}` each, the
    /// store after the item's run back. [`Flow::run_journaled`](crate::Flow::run_journaled) never does.)
    fn fan_out<'a>(
        &'a self,
        node: String,
        name: String,
        items: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<Vec<StepResult>, String>> {
        let _ = (name, items);
        Box::pin(async move { Err(format!("this journal does not send the items of batch node `{node}` elsewhere")) })
    }
}

/// Runs `flow` (a runtime flow or a `flow!` flow) on `store` as run `run_id`
/// journaled by `steps`: what [`Flow::run_journaled`](crate::Flow::run_journaled)
/// and a `flow!` flow's `run_journaled` call.
#[doc(hidden)]
pub async fn run_journaled<S: Send, F: Drive<S>>(
    flow: &F,
    store: &mut S,
    steps: &dyn StepJournal,
    run_id: &str,
) -> Result<Label, Error> {
    let how = Journaled { steps, run_id, events: None, codec: None, params: None };
    run_journaled_with(flow, store, how).await
}

/// What a journaled run takes besides its flow and store.
pub(crate) struct Journaled<'a, S> {
    pub(crate) steps: &'a dyn StepJournal,
    pub(crate) run_id: &'a str,
    /// Where its events go: the nodes' starts and ends, and the values their
    /// steps emitted (kept in the steps' results, so that a replay sends the
    /// same ones).
    pub(crate) events: Option<&'a Sink>,
    /// How its store travels to the workers that run the items of its
    /// parallel batch flows (only where the journal fans out).
    pub(crate) codec: Option<&'a StoreCodec<S>>,
    /// Its params, when not the flow's own (an item's run on a worker).
    pub(crate) params: Option<&'a Params>,
}

/// [`run_journaled`], as `how` says.
pub(crate) async fn run_journaled_with<S: Send, F: Drive<S>>(
    flow: &F,
    store: &mut S,
    how: Journaled<'_, S>,
) -> Result<Label, Error> {
    let Journaled { steps, run_id, events, codec, params } = how;
    let plan = Plan { journal: None, steps: Some(steps), events, run: run_id, mode: Mode::Async, codec, params };
    match flow.drive(store, plan, None, Vec::new()).await? {
        RunOutcome::Finished(label) => Ok(label),
        // An interrupt waits on the journal; a pause never comes back here.
        RunOutcome::Paused(pause) => Err(Error::Resume {
            flow: flow.flow_name().to_owned(),
            run: pause.run,
            reason: "a journaled run paused outside its journal".to_owned(),
        }),
    }
}

/// A store as JSON and back: how a journaled run's store goes to the workers
/// that run a parallel batch flow's items, and how what they made comes back
/// (the Restate backend makes it from the store's serde impls).
pub(crate) struct StoreCodec<S> {
    pub(crate) save: fn(&S) -> Result<serde_json::Value, String>,
    pub(crate) load: fn(serde_json::Value) -> Result<S, String>,
}

/// How a step ended, as the engine reads its bytes back.
pub(crate) enum Outcome {
    /// `exec` returned this (its bytes).
    Done(Vec<u8>),
    /// `exec` failed after its retries and fallback.
    Failed(Failure),
    /// `exec` called `interrupt` with this question (JSON).
    Asked(Vec<u8>),
}

/// The checkpointer of a visit in a journaled run: it has no checkpoints (the
/// journal replays the run) and records nothing.
pub(crate) struct NoCheckpoints;

impl Checkpointer for NoCheckpoints {
    fn lock(&self, _: &str) -> Result<RunLock, CheckpointError> {
        Ok(RunLock::new(()))
    }
    fn put(&self, _: &str, _: &Checkpoint) -> Result<(), CheckpointError> {
        Ok(())
    }
    fn put_exec(&self, _: &str, _: u64, _: &str, _: &[u8]) -> Result<(), CheckpointError> {
        Ok(())
    }
    fn get_exec(&self, _: &str, _: u64, _: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        Ok(None)
    }
    fn get(&self, _: &str, _: u64) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(None)
    }
    fn latest(&self, _: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(None)
    }
    fn history(&self, _: &str) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        Ok(Vec::new())
    }
}

/// A step's outcome as bytes: `{"ok": <exec result>}`, `{"failed": {...}}`
/// or `{"asked": <question>}`.
pub(crate) fn outcome_bytes(outcome: Outcome) -> Vec<u8> {
    let json = |bytes: &[u8]| serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null);
    let value = match outcome {
        Outcome::Done(bytes) => serde_json::json!({ "ok": json(&bytes) }),
        Outcome::Asked(question) => serde_json::json!({ "asked": json(&question) }),
        Outcome::Failed(failure) => {
            let (message, attempts, panicked) = match failure {
                Failure::Returned { source, attempts } => (source.to_string(), attempts, false),
                Failure::Panicked { message, attempts } => (message, attempts, true),
            };
            serde_json::json!({ "failed": { "message": message, "attempts": attempts, "panicked": panicked } })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The bytes of a step that failed with `message` outside its node's own
/// hooks (the step could not run, or its input did not arrive whole),
/// counted as `attempts` attempts.
pub(crate) fn failed_step(message: String, attempts: u32) -> StepResult {
    outcome_bytes(Outcome::Failed(Failure::Returned { source: message.into(), attempts }))
}

/// A step's outcome from the bytes [`outcome_bytes`] made; `None` for bytes
/// it did not make.
pub(crate) fn read_outcome(bytes: &[u8]) -> Option<Outcome> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(ok) = value.get("ok") {
        return serde_json::to_vec(ok).ok().map(Outcome::Done);
    }
    if let Some(asked) = value.get("asked") {
        return serde_json::to_vec(asked).ok().map(Outcome::Asked);
    }
    let failed = value.get("failed")?;
    let message = failed.get("message")?.as_str()?.to_owned();
    let attempts = u32::try_from(failed.get("attempts")?.as_u64()?).ok()?;
    Some(Outcome::Failed(if failed.get("panicked")?.as_bool()? {
        Failure::Panicked { message, attempts }
    } else {
        Failure::Returned { source: message.into(), attempts }
    }))
}
