//! Checkpointed and streamed runs of a runtime [`Flow`] (see
//! [`crate::durable`] and [`crate::events`]); the loop is in `drive.rs`.

use std::future::Future;

use serde::Serialize;

use super::Flow;
use super::drive::{Mode, Plan, drive, ready};
use crate::action::Label;
use crate::durable::{
    Checkpoint, CheckpointError, CheckpointInfo, Checkpointer, DurableStore, Field, Journal, Outcome, Status,
};
use crate::error::Error;
use crate::events::{AsyncEvents, Events, Sink};

/// A flow bound to a checkpointer and a run id: [`Flow::durable`]. Each way
/// to run it comes sync and async (`run` / `run_async`, ...).
#[must_use]
pub struct DurableRun<'f, S: 'static> {
    flow: &'f Flow<S>,
    checkpointer: &'f dyn Checkpointer,
    run: String,
}

impl<S: 'static> std::fmt::Debug for DurableRun<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableRun").field("flow", &self.flow.name).field("run", &self.run).finish()
    }
}

impl<S: Send + Sync + 'static> Flow<S> {
    /// This flow's run `run_id`, checkpointed in `checkpointer`: start it with
    /// [`run`](DurableRun::run), and after a crash, a pause or an error,
    /// finish it with [`resume`](DurableRun::resume) in any process. See
    /// [`crate::durable`].
    pub fn durable<'f>(&'f self, checkpointer: &'f dyn Checkpointer, run_id: impl Into<String>) -> DurableRun<'f, S> {
        DurableRun { flow: self, checkpointer, run: run_id.into() }
    }

    /// Runs the flow on `store` while `consume` gets its [`Events`] as they
    /// happen: each node's start and end, and what its hooks
    /// [`emit`](crate::events::emit). The flow runs on a thread of its own,
    /// `consume` on the caller's; the run's result comes back once both are
    /// done (a `consume` that stops early lets the run finish unheard).
    ///
    /// ```
    /// use minllm::events::{EventKind, emit};
    /// use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
    ///
    /// struct Answer;
    /// impl Node for Answer {
    ///     type Prep = ();
    ///     type Exec = String;
    ///     type Action = ();
    ///     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
    ///     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
    ///         let mut answer = String::new();
    ///         for token in ["Hello", ", ", "world"] {
    ///             emit(token); // each token reaches the caller as it comes
    ///             answer.push_str(token);
    ///         }
    ///         Ok(answer)
    ///     }
    ///     fn post(&self, store: &mut SharedStore, _: (), answer: String) -> NodeResult<()> {
    ///         store.set("answer", answer);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut flow = Flow::new("chat");
    /// flow.add("answer", Answer);
    /// let mut printed = String::new();
    /// flow.stream(&mut SharedStore::new(), |events| {
    ///     for event in events {
    ///         if let EventKind::Custom(token) = &event.kind {
    ///             printed.push_str(token.as_str().unwrap_or_default());
    ///         }
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(printed, "Hello, world");
    /// ```
    pub fn stream(&self, store: &mut S, consume: impl FnOnce(Events)) -> Result<Label, Error> {
        let outcome = streamed(consume, |sink| ready(self.drive_events(store, sink, Mode::Sync)));
        self.unpaused(outcome)
    }

    /// [`stream`](Flow::stream) on the current tokio runtime: `consume` (an
    /// async closure) gets the events as an async
    /// [`Stream`](futures_util::Stream) and runs alongside the flow; the
    /// result comes back once both are done.
    ///
    /// ```
    /// # use minllm::{Flow, SharedStore};
    /// # async fn demo(flow: Flow<SharedStore>) -> Result<(), minllm::Error> {
    /// let mut store = SharedStore::new();
    /// flow.stream_async(&mut store, async |mut events| {
    ///     while let Some(event) = events.next().await {
    ///         println!("{} {}", event.kind.name(), event.node);
    ///     }
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stream_async(&self, store: &mut S, consume: impl AsyncFnOnce(AsyncEvents)) -> Result<Label, Error> {
        let outcome = streamed_async(consume, |sink| self.drive_events(store, sink, Mode::Async)).await;
        self.unpaused(outcome)
    }

    async fn drive_events(&self, store: &mut S, sink: Sink, mode: Mode) -> Result<Outcome, Error> {
        drive(self, store, Plan { journal: None, events: Some(&sink), run: "", mode }, None, Vec::new()).await
    }

    fn unpaused(&self, outcome: Result<Outcome, Error>) -> Result<Label, Error> {
        match outcome? {
            Outcome::Finished(label) => Ok(label),
            // Without a journal an interrupt is a node error, never a pause.
            Outcome::Paused(pause) => Err(Error::Resume {
                flow: self.name.clone(),
                run: pause.run,
                reason: "a run without checkpoints cannot pause".to_owned(),
            }),
        }
    }
}

/// Runs `run` on a scoped thread with a sink whose events `consume` gets on
/// this thread.
fn streamed<R: Send>(consume: impl FnOnce(Events), run: impl FnOnce(Sink) -> R + Send) -> R {
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
async fn streamed_async<R, G: Future<Output = R>>(
    consume: impl AsyncFnOnce(AsyncEvents),
    run: impl FnOnce(Sink) -> G,
) -> R {
    let (sink, rx) = Sink::new_async();
    // The sink goes with the run, so the stream ends when the run does.
    let (result, ()) = futures_util::future::join(run(sink), consume(AsyncEvents { rx })).await;
    result
}

impl<S: DurableStore + Send + Sync + 'static> DurableRun<'_, S> {
    /// Starts the run on `store`, checkpointing before every node; an error if
    /// the run id has checkpoints already (resume it instead).
    pub fn run(&self, store: &mut S) -> Result<Outcome, Error> {
        ready(self.start(store, None, Mode::Sync))
    }

    /// [`run`](DurableRun::run) on the current tokio runtime.
    pub async fn run_async(&self, store: &mut S) -> Result<Outcome, Error> {
        self.start(store, None, Mode::Async).await
    }

    /// [`run`](DurableRun::run) while `consume` gets the run's events as they
    /// happen (see [`Flow::stream`]).
    pub fn stream(&self, store: &mut S, consume: impl FnOnce(Events)) -> Result<Outcome, Error> {
        streamed(consume, |sink| ready(self.start(store, Some(&sink), Mode::Sync)))
    }

    /// [`run_async`](DurableRun::run_async) while `consume` gets the run's
    /// events (see [`Flow::stream_async`]).
    pub async fn stream_async(&self, store: &mut S, consume: impl AsyncFnOnce(AsyncEvents)) -> Result<Outcome, Error> {
        streamed_async(consume, |sink| async move { self.start(store, Some(&sink), Mode::Async).await }).await
    }

    /// Finishes the run from its newest checkpoint, with the store it had then
    /// (written into `store`). Work that finished before is not done again: the
    /// node that was running is entered again, and its `exec` result, when it
    /// was recorded, is used instead of a new call. A finished run returns its
    /// result again; a paused one asks again.
    pub fn resume(&self, store: &mut S) -> Result<Outcome, Error> {
        ready(self.resume_inner(store, None, Mode::Sync))
    }

    /// [`resume`](DurableRun::resume) on the current tokio runtime.
    pub async fn resume_async(&self, store: &mut S) -> Result<Outcome, Error> {
        self.resume_inner(store, None, Mode::Async).await
    }

    /// Resumes a paused run with the answer to its [`interrupt`](crate::durable::interrupt).
    pub fn resume_with<A: Serialize>(&self, store: &mut S, answer: A) -> Result<Outcome, Error> {
        let answer = self.answer(answer)?;
        ready(self.resume_inner(store, Some(answer), Mode::Sync))
    }

    /// [`resume_with`](DurableRun::resume_with) on the current tokio runtime.
    pub async fn resume_with_async<A: Serialize>(&self, store: &mut S, answer: A) -> Result<Outcome, Error> {
        let answer = self.answer(answer)?;
        self.resume_inner(store, Some(answer), Mode::Async).await
    }

    /// Runs on from checkpoint `seq` as a new branch, with `store` as it is
    /// (load the checkpoint's store with [`load`](DurableRun::load) and change
    /// what should be different): to retry from a point with a changed store or
    /// a fixed prompt. The new checkpoints follow `seq`; the old ones stay.
    pub fn resume_from(&self, seq: u64, store: &mut S) -> Result<Outcome, Error> {
        ready(self.resume_from_inner(seq, store, Mode::Sync))
    }

    /// [`resume_from`](DurableRun::resume_from) on the current tokio runtime.
    pub async fn resume_from_async(&self, seq: u64, store: &mut S) -> Result<Outcome, Error> {
        self.resume_from_inner(seq, store, Mode::Async).await
    }

    /// Writes the store of checkpoint `seq` (the newest when `None`) into
    /// `store` and returns the checkpoint.
    pub fn load(&self, seq: Option<u64>, store: &mut S) -> Result<Checkpoint, Error> {
        let checkpoint = match seq {
            Some(seq) => self.get(seq)?,
            None => self.latest()?.ok_or_else(|| self.refuse("it has no checkpoints".to_owned()))?,
        };
        self.load_store(&checkpoint, store)?;
        Ok(checkpoint)
    }

    /// The run's checkpoints, oldest first.
    pub fn history(&self) -> Result<Vec<CheckpointInfo>, Error> {
        self.checkpointer.history(&self.run).map_err(|e| self.checkpoint_error(e))
    }

    /// Starts the run, unless the run id has checkpoints already.
    async fn start(&self, store: &mut S, events: Option<&Sink>, mode: Mode) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
        if let Some(latest) = self.latest()? {
            return Err(
                self.refuse(format!("it has {} checkpoints already: resume it, or start a new run id", latest.seq))
            );
        }
        self.drive(store, None, Vec::new(), 1, events, mode).await
    }

    async fn resume_inner(&self, store: &mut S, answer: Option<Vec<u8>>, mode: Mode) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
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
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
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
        let journal = Journal::new(self.checkpointer, &self.run, self.flow.name(), next);
        let plan = Plan { journal: Some((journal, S::save_fields)), events, run: &self.run, mode };
        drive(self.flow, store, plan, from, answers).await
    }

    fn answer<A: Serialize>(&self, answer: A) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&answer).map_err(|e| Error::NotCheckpointable {
            flow: self.flow.name().to_owned(),
            run: self.run.clone(),
            what: "the answer".to_owned(),
            reason: e.to_string(),
        })
    }

    fn latest(&self) -> Result<Option<Checkpoint>, Error> {
        self.checkpointer.latest(&self.run).map_err(|e| self.checkpoint_error(e))
    }

    fn get(&self, seq: u64) -> Result<Checkpoint, Error> {
        self.checkpointer
            .get(&self.run, seq)
            .map_err(|e| self.checkpoint_error(e))?
            .ok_or_else(|| self.refuse(format!("it has no checkpoint {seq}")))
    }

    fn load_store(&self, checkpoint: &Checkpoint, store: &mut S) -> Result<(), Error> {
        let fields = checkpoint
            .fields
            .iter()
            .filter_map(|(n, f)| match f {
                Field::Value(v) => Some((n.clone(), v.clone())),
                Field::Unchanged => None,
            })
            .collect();
        store.load_fields(fields).map_err(|reason| Error::NotCheckpointable {
            flow: self.flow.name().to_owned(),
            run: self.run.clone(),
            what: format!("the store of checkpoint {}", checkpoint.seq),
            reason,
        })
    }

    fn checkpoint_error(&self, source: CheckpointError) -> Error {
        Error::Checkpoint { flow: self.flow.name().to_owned(), run: self.run.clone(), source }
    }

    fn refuse(&self, reason: String) -> Error {
        Error::Resume { flow: self.flow.name().to_owned(), run: self.run.clone(), reason }
    }
}
