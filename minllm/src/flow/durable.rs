//! Checkpointed runs of a runtime [`Flow`]: the engine's frames, one node at a
//! time, with a checkpoint before each node (see [`crate::durable`]).

use std::time::Instant;

use serde::Serialize;

use super::Flow;
use super::run::{Exit, Frames};
use crate::access::StoreRef;
use crate::action::Label;
use crate::context::{FlowPath, NodeCx, Seg, no_span};
use crate::durable::{
    Checkpoint, CheckpointInfo, Checkpointer, DurableStore, Field, Journal, Outcome, Pause, Status, is_interrupt,
};
use crate::error::Error;
use crate::events::{EventKind, Events, Sink};

/// A flow bound to a checkpointer and a run id: [`Flow::durable`].
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
        let outcome = streamed(consume, |sink| {
            drive(self, store, Plan { journal: None, events: Some(sink), run: "" }, None, Vec::new())
        })?;
        match outcome {
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
fn streamed<R: Send>(consume: impl FnOnce(Events), run: impl FnOnce(&Sink) -> R + Send) -> R {
    let (sink, rx) = Sink::new();
    std::thread::scope(|scope| {
        let running = scope.spawn(move || run(&sink));
        consume(Events { rx });
        match running.join() {
            Ok(result) => result,
            // The engine catches every hook's panic; one of its own goes on.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

impl<S: DurableStore + Send + Sync + 'static> DurableRun<'_, S> {
    /// Starts the run on `store`, checkpointing before every node; an error if
    /// the run id has checkpoints already (resume it instead).
    pub fn run(&self, store: &mut S) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
        if let Some(latest) = self.latest()? {
            return Err(
                self.refuse(format!("it has {} checkpoints already: resume it, or start a new run id", latest.seq))
            );
        }
        self.drive(store, None, Vec::new(), 1, None)
    }

    /// [`run`](DurableRun::run) while `consume` gets the run's events as they
    /// happen (see [`Flow::stream`]).
    pub fn stream(&self, store: &mut S, consume: impl FnOnce(Events)) -> Result<Outcome, Error> {
        streamed(consume, |sink| self.start(store, Some(sink)))
    }

    /// Starts the run, unless the run id has checkpoints already.
    fn start(&self, store: &mut S, events: Option<&Sink>) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
        if let Some(latest) = self.latest()? {
            return Err(
                self.refuse(format!("it has {} checkpoints already: resume it, or start a new run id", latest.seq))
            );
        }
        self.drive(store, None, Vec::new(), 1, events)
    }

    /// Finishes the run from its newest checkpoint, with the store it had then
    /// (written into `store`). Work that finished before is not done again: the
    /// node that was running is entered again, and its `exec` result, when it
    /// was recorded, is used instead of a new call. A finished run returns its
    /// result again; a paused one asks again.
    pub fn resume(&self, store: &mut S) -> Result<Outcome, Error> {
        self.resume_inner(store, None)
    }

    /// Resumes a paused run with the answer to its [`interrupt`](crate::durable::interrupt).
    pub fn resume_with<A: Serialize>(&self, store: &mut S, answer: A) -> Result<Outcome, Error> {
        let answer = serde_json::to_vec(&answer).map_err(|e| Error::NotCheckpointable {
            flow: self.flow.name().to_owned(),
            run: self.run.clone(),
            what: "the answer".to_owned(),
            reason: e.to_string(),
        })?;
        self.resume_inner(store, Some(answer))
    }

    /// Runs on from checkpoint `seq` as a new branch, with `store` as it is
    /// (load the checkpoint's store with [`load`](DurableRun::load) and change
    /// what should be different): to retry from a point with a changed store or
    /// a fixed prompt. The new checkpoints follow `seq`; the old ones stay.
    pub fn resume_from(&self, seq: u64, store: &mut S) -> Result<Outcome, Error> {
        let _lock = self.checkpointer.lock(&self.run).map_err(|e| self.checkpoint_error(e))?;
        let from = self.get(seq)?;
        let next = self.latest()?.map_or(1, |c| c.seq + 1);
        if let Status::Finished { action } = &from.status {
            return Ok(Outcome::Finished(Label::from(action.clone())));
        }
        self.drive(store, Some(&from), from.answers.clone(), next, None)
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

    fn resume_inner(&self, store: &mut S, answer: Option<Vec<u8>>) -> Result<Outcome, Error> {
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
        self.drive(store, Some(&latest), answers, latest.seq + 1, None)
    }

    /// Drives the run with a journal that numbers its checkpoints from `next`.
    fn drive(
        &self,
        store: &mut S,
        from: Option<&Checkpoint>,
        answers: Vec<Vec<u8>>,
        next: u64,
        events: Option<&Sink>,
    ) -> Result<Outcome, Error> {
        let journal = Journal::new(self.checkpointer, &self.run, self.flow.name(), next);
        let plan = Plan { journal: Some((journal, S::save_fields)), events, run: &self.run };
        drive(self.flow, store, plan, from, answers)
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

    fn checkpoint_error(&self, source: crate::durable::CheckpointError) -> Error {
        Error::Checkpoint { flow: self.flow.name().to_owned(), run: self.run.clone(), source }
    }

    fn refuse(&self, reason: String) -> Error {
        Error::Resume { flow: self.flow.name().to_owned(), run: self.run.clone(), reason }
    }
}

/// A store's fields for a checkpoint: [`DurableStore::save_fields`] of its type.
type SaveFields<S> = fn(&S) -> Result<Vec<(String, Vec<u8>)>, String>;

/// What a run driven node by node does besides running its nodes: write
/// checkpoints (a journal, and how to save the store), send events.
pub(super) struct Plan<'a, S> {
    pub(super) journal: Option<(Journal<'a>, SaveFields<S>)>,
    pub(super) events: Option<&'a Sink>,
    /// The run id, for errors.
    pub(super) run: &'a str,
}

/// The engine's loop, one node at a time, from checkpoint `from` (its node
/// entered again, with `answers` for its interrupts) or from the start: the
/// loop of checkpointed and streamed runs. (Plain runs use the frames' own
/// loop, which runs a flow's nodes without stopping between them.)
pub(super) fn drive<S: Send + Sync + 'static>(
    flow: &Flow<S>,
    store: &mut S,
    mut plan: Plan<'_, S>,
    from: Option<&Checkpoint>,
    answers: Vec<Vec<u8>>,
) -> Result<Outcome, Error> {
    let root = FlowPath::root(flow.name());
    flow.check(&root)?;
    let mut frames = Frames::new(flow, &root, &flow.params, false);
    let mut segs: Vec<Seg<'_>> = Vec::new();
    // The visit to continue: its checkpoint and the answers it has.
    let mut again = None;
    if let Some(from) = from {
        if let Some((journal, _)) = &mut plan.journal {
            journal.follow(from);
        }
        restore(flow, plan.run, &mut frames, &mut segs, from)?;
        again = Some((from.visit, answers));
    }
    let save = |store: &S, save_fields: SaveFields<S>| {
        save_fields(store).map_err(|reason| Error::NotCheckpointable {
            flow: flow.name().to_owned(),
            run: plan.run.to_owned(),
            what: "the store".to_owned(),
            reason,
        })
    };
    loop {
        let at = root.extended(&segs);
        let frame = frames.top();
        let mut run = frame.run;
        run.next(frame.flow, &at, None)?;
        frame.run = run;
        let (frame_flow, params) = (frame.flow, frame.params.clone());
        let slot = &frame_flow.slots[run.current];
        if slot.nested {
            frames.enter(slot, None);
            segs.push(Seg { name: &slot.name, item: None });
            continue;
        }
        let (path, steps) = position(&frames);
        let visit = match &mut plan.journal {
            Some((journal, save_fields)) => {
                let (seq, answers) = match again.take() {
                    Some(visit) => visit,
                    None => {
                        let fields = save(store, *save_fields)?;
                        let seq =
                            journal.write(path.clone(), steps.clone(), Status::Running, None, Vec::new(), fields)?;
                        (seq, Vec::new())
                    }
                };
                Some((journal.visit(seq, answers), seq))
            }
            None => None,
        };
        let flow_name = plan.events.map(|_| at.to_string()).unwrap_or_default();
        let started = Instant::now();
        let emitting = plan.events.map(|sink| {
            sink.send(EventKind::NodeStarted, &flow_name, &slot.name);
            sink.enter(&flow_name, &slot.name)
        });
        let cx = NodeCx {
            flow: &at,
            node: &slot.name,
            params: &params,
            cancel: None,
            span: no_span(),
            visit: visit.as_ref().map(|(v, _)| v),
        };
        let result = slot.node.run(StoreRef::exclusive(store), cx);
        drop(emitting);
        let label = match result {
            Ok(label) => label,
            Err(error) if interrupted(&error) => {
                let (Some((journal, _)), Some((visit, seq))) = (&mut plan.journal, &visit) else { return Err(error) };
                let (question, answers) = Journal::asked(visit);
                let question = question.unwrap_or_else(|| b"null".to_vec());
                // The store as the node found it: a `post` that stopped
                // half-way leaves nothing in the checkpoint.
                let fields = journal.last_fields().to_vec();
                let status = Status::Paused { question: question.clone() };
                journal.write(path.clone(), steps, status, Some(*seq), answers, fields)?;
                let node = path.join(" > ");
                return Ok(Outcome::Paused(Pause { run: plan.run.to_owned(), node, question }));
            }
            Err(error) => return Err(error),
        };
        if let Some(sink) = plan.events {
            let kind = EventKind::NodeFinished { action: label.to_string(), elapsed: started.elapsed() };
            sink.send(kind, &flow_name, &slot.name);
        }
        let frame = frames.top();
        let mut run = frame.run;
        let goes_on = run.follow(frame.flow, &at, &label)?;
        frame.run = run;
        if goes_on {
            continue;
        }
        if let Some(last) = frames.after(Exit::End(label), &root, &mut segs)? {
            if let Some((journal, save_fields)) = &mut plan.journal {
                let fields = save(store, *save_fields)?;
                let status = Status::Finished { action: last.to_string() };
                journal.write(path, steps, status, None, Vec::new(), fields)?;
            }
            return Ok(Outcome::Finished(last));
        }
    }
}

/// Puts the frames where checkpoint `from` was: the nested flows entered,
/// its node next, each flow's steps.
fn restore<'f, S: Send + Sync + 'static>(
    flow: &Flow<S>,
    run: &str,
    frames: &mut Frames<'f, S>,
    segs: &mut Vec<Seg<'f>>,
    from: &Checkpoint,
) -> Result<(), Error> {
    let refuse = |reason| Error::Resume { flow: flow.name().to_owned(), run: run.to_owned(), reason };
    for (i, name) in from.path.iter().enumerate() {
        let frame = frames.top();
        let here = frame.flow;
        let index = here.slots.iter().position(|s| &s.name == name).ok_or_else(|| {
            refuse(format!(
                "its checkpoint {} is at node `{name}`, which flow `{}` no longer has (renamed or removed since)",
                from.seq,
                here.name()
            ))
        })?;
        let last = i + 1 == from.path.len();
        let steps = from.steps.get(i).copied().unwrap_or(0);
        frame.run.current = index;
        // The node about to run is counted again when it is entered.
        frame.run.steps = if last { steps.saturating_sub(1) } else { steps };
        let slot = &here.slots[index];
        if !last {
            if !slot.nested {
                return Err(refuse(format!(
                    "its checkpoint {} is inside `{name}`, which is no longer a nested flow",
                    from.seq
                )));
            }
            frames.enter(slot, None);
            segs.push(Seg { name: &slot.name, item: None });
        }
    }
    Ok(())
}

/// Where the frames are: the nested flows and the node, and each flow's steps.
fn position<S>(frames: &Frames<'_, S>) -> (Vec<String>, Vec<u64>) {
    frames.frames.iter().map(|f| (f.flow.slots[f.run.current].name.clone(), f.run.steps)).unzip()
}

/// Whether a node's error is an interrupt.
fn interrupted(error: &Error) -> bool {
    match error {
        Error::Node { source, .. } => is_interrupt(&**source),
        _ => false,
    }
}
