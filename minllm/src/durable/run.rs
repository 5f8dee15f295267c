//! Checkpointed runs, whatever runs them: [`DurableRun`] over a runtime
//! `Flow` or a flow made by `flow!`, through the hidden [`Drive`] trait that
//! both implement.

use std::future::Future;

use futures_util::FutureExt as _;
use serde::Serialize;

use super::steps::StoreCodec;
use super::{Checkpoint, CheckpointInfo, Checkpointer, DurableStore, Journal, Outcome, Status, StepJournal};
use crate::action::Label;
use crate::error::{CheckpointError, Error};
use crate::events::{AsyncEvents, Events, Sink};
use crate::params::Params;

/// A store's fields for a checkpoint: [`DurableStore::save_fields`] of its type.
#[doc(hidden)]
pub type SaveFields<S> = fn(&S) -> Result<Vec<(String, Vec<u8>)>, String>;

/// Whether a driven run calls each node's sync `run` or awaits its async one.
#[doc(hidden)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Sync,
    Async,
}

/// What a driven run does besides running its nodes: write checkpoints (a
/// journal, and how to save the store), send events.
#[doc(hidden)]
pub struct Plan<'a, S> {
    pub(crate) journal: Option<(Journal<'a>, SaveFields<S>)>,
    /// A durable-execution engine's journal that each `exec` runs through.
    pub(crate) steps: Option<&'a dyn StepJournal>,
    pub(crate) events: Option<&'a Sink>,
    /// The run id, for errors.
    pub(crate) run: &'a str,
    pub(crate) mode: Mode,
    /// How the store travels to the workers of a journal that fans out (for
    /// a parallel batch flow's items).
    pub(crate) codec: Option<&'a StoreCodec<S>>,
    /// The params of the flow's run, when not its own (an item's run on a worker).
    pub(crate) params: Option<&'a Params>,
}

impl<S> Plan<'_, S> {
    /// How the run is driven.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// What can be run node by node with checkpoints and events: a runtime
/// `Flow` and the flows `flow!` makes. Not for users to implement.
#[doc(hidden)]
pub trait Drive<S>: Sync {
    /// The flow's name, for errors.
    fn flow_name(&self) -> &str;
    /// Runs the flow on `store` from checkpoint `from` (with `answers` for
    /// its node's interrupts) or from the start, as `plan` says.
    fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send + 'a;
}

/// Runs `flow` on `store` while `consume` gets its events (no checkpoints):
/// what `stream` of a runtime flow and of a `flow!` flow call.
#[doc(hidden)]
pub fn stream_flow<S: Send, F: Drive<S>>(
    flow: &F,
    store: &mut S,
    consume: impl FnOnce(Events),
) -> Result<Label, Error> {
    unpaused(flow, streamed(consume, |sink| ready(drive_events(flow, store, sink, Mode::Sync))))
}

/// [`stream_flow`] on the current tokio runtime.
#[doc(hidden)]
pub async fn stream_flow_async<S: Send, F: Drive<S>>(
    flow: &F,
    store: &mut S,
    consume: impl AsyncFnOnce(AsyncEvents),
) -> Result<Label, Error> {
    unpaused(flow, streamed_async(consume, |sink| drive_events(flow, store, sink, Mode::Async)).await)
}

async fn drive_events<S, F: Drive<S>>(flow: &F, store: &mut S, sink: Sink, mode: Mode) -> Result<Outcome, Error> {
    let plan = Plan { journal: None, steps: None, events: Some(&sink), run: "", mode, codec: None, params: None };
    flow.drive(store, plan, None, Vec::new()).await
}

/// The label a run without checkpoints ended with (it cannot pause).
fn unpaused<S, F: Drive<S>>(flow: &F, outcome: Result<Outcome, Error>) -> Result<Label, Error> {
    match outcome? {
        Outcome::Finished(label) => Ok(label),
        Outcome::Paused(pause) => Err(Error::Resume {
            flow: flow.flow_name().to_owned(),
            run: pause.run,
            reason: "a run without checkpoints cannot pause".to_owned(),
        }),
    }
}

/// Runs a sync drive, whose future never waits, to its end.
pub(crate) fn ready<T>(drive: impl Future<Output = T>) -> T {
    drive.now_or_never().expect("a sync run calls no async code, so its drive never waits")
}

/// A flow bound to a checkpointer and a run id: what
/// [`Flow::durable`](crate::Flow::durable) and the `durable` method of a
/// `flow!` flow return. Each way to run it comes sync and async (`run` /
/// `run_async`, ...).
#[must_use]
pub struct DurableRun<'f, F, S> {
    flow: F,
    checkpointer: &'f dyn Checkpointer,
    id: String,
    store: std::marker::PhantomData<fn(&mut S)>,
}

impl<F, S> std::fmt::Debug for DurableRun<'_, F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableRun").field("run", &self.id).finish_non_exhaustive()
    }
}

impl<'f, F, S> DurableRun<'f, F, S> {
    #[doc(hidden)]
    pub fn new(flow: F, checkpointer: &'f dyn Checkpointer, run_id: impl Into<String>) -> Self {
        DurableRun { flow, checkpointer, id: run_id.into(), store: std::marker::PhantomData }
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.id
    }
}

/// Runs `run` on a scoped thread with a sink whose events `consume` gets on
/// this thread.
pub(crate) fn streamed<R: Send>(consume: impl FnOnce(Events), run: impl FnOnce(Sink) -> R + Send) -> R {
    let (sink, rx) = Sink::new();
    std::thread::scope(|scope| {
        let running = scope.spawn(move || run(sink));
        consume(Events { rx });
        match running.join() {
            Ok(result) => result,
            // The engine catches every hook's panic; one of its own goes on.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

/// Runs `run` and `consume` side by side, `consume` getting the events.
pub(crate) async fn streamed_async<R, G: Future<Output = R>>(
    consume: impl AsyncFnOnce(AsyncEvents),
    run: impl FnOnce(Sink) -> G,
) -> R {
    let (sink, rx) = Sink::new_async();
    // The sink goes with the run, so the stream ends when the run does.
    let (result, ()) = futures_util::future::join(run(sink), consume(AsyncEvents { rx })).await;
    result
}

impl<S: Send + Sync + 'static, F: Drive<S>> DurableRun<'_, F, S> {
    /// Starts the run on `store`, checkpointing before every node; an error if
    /// the run id has checkpoints already (resume it instead).
    pub fn run(&self, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        ready(self.start(store, None, Mode::Sync))
    }

    /// [`run`](DurableRun::run) on the current tokio runtime.
    pub async fn run_async(&self, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        self.start(store, None, Mode::Async).await
    }

    /// [`run`](DurableRun::run) while `consume` gets the run's events as they
    /// happen (see [`Flow::stream`](crate::Flow::stream)).
    pub fn stream(&self, store: &mut S, consume: impl FnOnce(Events)) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        streamed(consume, |sink| ready(self.start(store, Some(&sink), Mode::Sync)))
    }

    /// [`run_async`](DurableRun::run_async) while `consume` gets the run's
    /// events (see [`Flow::stream_async`](crate::Flow::stream_async)).
    pub async fn stream_async(&self, store: &mut S, consume: impl AsyncFnOnce(AsyncEvents)) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        streamed_async(consume, |sink| async move { self.start(store, Some(&sink), Mode::Async).await }).await
    }

    /// Finishes the run from its newest checkpoint, with the store it had then
    /// (written into `store`). Work that finished before is not done again: the
    /// node that was running is entered again, and its `exec` result, when it
    /// was recorded, is used instead of a new call. A finished run returns its
    /// result again; a paused one asks again.
    pub fn resume(&self, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        ready(self.resume_inner(store, None, Mode::Sync))
    }

    /// [`resume`](DurableRun::resume) on the current tokio runtime.
    pub async fn resume_async(&self, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        self.resume_inner(store, None, Mode::Async).await
    }

    /// Resumes a paused run with the answer to its [`interrupt`](crate::durable::interrupt).
    pub fn resume_with<A: Serialize>(&self, store: &mut S, answer: A) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        let answer = self.answer(answer)?;
        ready(self.resume_inner(store, Some(answer), Mode::Sync))
    }

    /// [`resume_with`](DurableRun::resume_with) on the current tokio runtime.
    pub async fn resume_with_async<A: Serialize>(&self, store: &mut S, answer: A) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        let answer = self.answer(answer)?;
        self.resume_inner(store, Some(answer), Mode::Async).await
    }

    /// Runs on from checkpoint `seq` as a new branch, with `store` as it is
    /// (load the checkpoint's store with [`load`](DurableRun::load) and change
    /// what should be different): to retry from a point with a changed store or
    /// a fixed prompt. The new checkpoints follow `seq`; the old ones stay.
    pub fn resume_from(&self, seq: u64, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        ready(self.resume_from_inner(seq, store, Mode::Sync))
    }

    /// [`resume_from`](DurableRun::resume_from) on the current tokio runtime.
    pub async fn resume_from_async(&self, seq: u64, store: &mut S) -> Result<Outcome, Error>
    where
        S: DurableStore,
    {
        self.resume_from_inner(seq, store, Mode::Async).await
    }

    /// Writes the store of checkpoint `seq` (the newest when `None`) into
    /// `store` and returns the checkpoint.
    pub fn load(&self, seq: Option<u64>, store: &mut S) -> Result<Checkpoint, Error>
    where
        S: DurableStore,
    {
        let checkpoint = match seq {
            Some(seq) => self.get(seq)?,
            None => self.latest()?.ok_or_else(|| self.refuse("it has no checkpoints".to_owned()))?,
        };
        self.load_store(&checkpoint, store)?;
        Ok(checkpoint)
    }

    /// The run's checkpoints, oldest first.
    pub fn history(&self) -> Result<Vec<CheckpointInfo>, Error> {
        self.checkpointer.history(&self.id).map_err(|e| self.checkpoint_error(e))
    }

    fn latest(&self) -> Result<Option<Checkpoint>, Error> {
        self.checkpointer.latest(&self.id).map_err(|e| self.checkpoint_error(e))
    }

    fn get(&self, seq: u64) -> Result<Checkpoint, Error> {
        self.checkpointer
            .get(&self.id, seq)
            .map_err(|e| self.checkpoint_error(e))?
            .ok_or_else(|| self.refuse(format!("it has no checkpoint {seq}")))
    }

    fn checkpoint_error(&self, source: CheckpointError) -> Error {
        Error::Checkpoint { flow: self.flow.flow_name().to_owned(), run: self.id.clone(), source }
    }

    fn refuse(&self, reason: String) -> Error {
        Error::Resume { flow: self.flow.flow_name().to_owned(), run: self.id.clone(), reason }
    }
}

impl<S: DurableStore + Send + Sync + 'static, F: Drive<S>> DurableRun<'_, F, S> {
    /// Starts the run, unless the run id has checkpoints already.
    async fn start(&self, store: &mut S, events: Option<&Sink>, mode: Mode) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.id).map_err(|e| self.checkpoint_error(e))?;
        if let Some(latest) = self.latest()? {
            return Err(
                self.refuse(format!("it has {} checkpoints already: resume it, or start a new run id", latest.seq))
            );
        }
        self.drive(store, None, Vec::new(), 1, events, mode).await
    }

    async fn resume_inner(&self, store: &mut S, answer: Option<Vec<u8>>, mode: Mode) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.id).map_err(|e| self.checkpoint_error(e))?;
        let latest = self.latest()?.ok_or_else(|| self.refuse("it has no checkpoints".to_owned()))?;
        self.load_store(&latest, store)?;
        let mut answers = latest.answers.clone();
        match (&latest.status, answer) {
            (Status::Finished { action }, None) => return Ok(Outcome::Finished(Label::from(action.clone()))),
            (Status::Paused { .. }, Some(answer)) => answers.push(answer),
            (_, Some(_)) => return Err(self.refuse("it is not paused, so there is nothing to answer".to_owned())),
            (_, None) => {}
        }
        self.drive(store, Some(&latest), answers, latest.seq + 1, None, mode).await
    }

    async fn resume_from_inner(&self, seq: u64, store: &mut S, mode: Mode) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.id).map_err(|e| self.checkpoint_error(e))?;
        let from = self.get(seq)?;
        let next = self.latest()?.map_or(1, |c| c.seq + 1);
        if let Status::Finished { action } = &from.status {
            return Ok(Outcome::Finished(Label::from(action.clone())));
        }
        self.drive(store, Some(&from), from.answers.clone(), next, None, mode).await
    }

    /// Drives the run with a journal that numbers its checkpoints from `next`.
    async fn drive(
        &self,
        store: &mut S,
        from: Option<&Checkpoint>,
        answers: Vec<Vec<u8>>,
        next: u64,
        events: Option<&Sink>,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        let journal = Journal::new(self.checkpointer, &self.id, self.flow.flow_name(), next);
        let journal = Some((journal, S::save_fields as SaveFields<S>));
        let plan = Plan { journal, steps: None, events, run: &self.id, mode, codec: None, params: None };
        self.flow.drive(store, plan, from, answers).await
    }

    fn answer<A: Serialize>(&self, answer: A) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&answer).map_err(|e| Error::NotCheckpointable {
            flow: self.flow.flow_name().to_owned(),
            run: self.id.clone(),
            what: "the answer".to_owned(),
            reason: e.to_string(),
        })
    }

    fn load_store(&self, checkpoint: &Checkpoint, store: &mut S) -> Result<(), Error> {
        store.load_fields(checkpoint.values()).map_err(|reason| Error::NotCheckpointable {
            flow: self.flow.flow_name().to_owned(),
            run: self.id.clone(),
            what: format!("the store of checkpoint {}", checkpoint.seq),
            reason,
        })
    }
}
