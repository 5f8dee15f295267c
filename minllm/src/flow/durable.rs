//! Checkpointed runs of a runtime [`Flow`]: the engine's frames, one node at a
//! time, with a checkpoint before each node (see [`crate::durable`]).

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
        self.drive(store, None, Vec::new(), 1)
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
        self.drive(store, Some(&from), from.answers.clone(), next)
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
        self.drive(store, Some(&latest), answers, latest.seq + 1)
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

    fn save(&self, store: &S) -> Result<Vec<(String, Vec<u8>)>, Error> {
        store.save_fields().map_err(|reason| Error::NotCheckpointable {
            flow: self.flow.name().to_owned(),
            run: self.run.clone(),
            what: "the store".to_owned(),
            reason,
        })
    }

    /// The engine's loop, one node at a time, from checkpoint `from` (its node
    /// entered again, with `answers` for its interrupts) or from the start.
    fn drive(
        &self,
        store: &mut S,
        from: Option<&Checkpoint>,
        answers: Vec<Vec<u8>>,
        next: u64,
    ) -> Result<Outcome, Error> {
        let flow = self.flow;
        let root = FlowPath::root(flow.name());
        flow.check(&root)?;
        let mut journal = Journal::new(self.checkpointer, &self.run, flow.name(), next);
        let mut frames = Frames::new(flow, &root, &flow.params, false);
        let mut segs: Vec<Seg<'_>> = Vec::new();
        // The visit to continue: its checkpoint and the answers it has.
        let mut again = None;
        if let Some(from) = from {
            journal.follow(from);
            self.restore(&mut frames, &mut segs, from)?;
            again = Some((from.visit, answers));
        }
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
            let (seq, answers) = match again.take() {
                Some(visit) => visit,
                None => {
                    let fields = self.save(store)?;
                    (journal.write(path.clone(), steps.clone(), Status::Running, None, Vec::new(), fields)?, Vec::new())
                }
            };
            let visit = journal.visit(seq, answers);
            let cx = NodeCx {
                flow: &at,
                node: &slot.name,
                params: &params,
                cancel: None,
                span: no_span(),
                visit: Some(&visit),
            };
            let label = match slot.node.run(StoreRef::exclusive(store), cx) {
                Ok(label) => label,
                Err(error) if interrupted(&error) => {
                    let (question, answers) = Journal::asked(&visit);
                    let question = question.unwrap_or_else(|| b"null".to_vec());
                    // The store as the node found it: a `post` that stopped
                    // half-way leaves nothing in the checkpoint.
                    let fields = journal_fields(&journal);
                    let status = Status::Paused { question: question.clone() };
                    journal.write(path.clone(), steps, status, Some(seq), answers, fields)?;
                    return Ok(Outcome::Paused(Pause { run: self.run.clone(), node: path.join(" > "), question }));
                }
                Err(error) => return Err(error),
            };
            let frame = frames.top();
            let mut run = frame.run;
            let goes_on = run.follow(frame.flow, &at, &label)?;
            frame.run = run;
            if goes_on {
                continue;
            }
            if let Some(last) = frames.after(Exit::End(label), &root, &mut segs)? {
                let fields = self.save(store)?;
                let status = Status::Finished { action: last.to_string() };
                journal.write(path, steps, status, None, Vec::new(), fields)?;
                return Ok(Outcome::Finished(last));
            }
        }
    }

    /// Puts the frames where checkpoint `from` was: the nested flows entered,
    /// its node next, each flow's steps.
    fn restore<'f>(&self, frames: &mut Frames<'f, S>, segs: &mut Vec<Seg<'f>>, from: &Checkpoint) -> Result<(), Error> {
        for (i, name) in from.path.iter().enumerate() {
            let frame = frames.top();
            let flow = frame.flow;
            let index = flow.slots.iter().position(|s| &s.name == name).ok_or_else(|| {
                self.refuse(format!(
                    "its checkpoint {} is at node `{name}`, which flow `{}` no longer has (renamed or removed since)",
                    from.seq,
                    flow.name()
                ))
            })?;
            let last = i + 1 == from.path.len();
            let steps = from.steps.get(i).copied().unwrap_or(0);
            frame.run.current = index;
            // The node about to run is counted again when it is entered.
            frame.run.steps = if last { steps.saturating_sub(1) } else { steps };
            let slot = &flow.slots[index];
            if !last {
                if !slot.nested {
                    return Err(self.refuse(format!(
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
}

/// Where the frames are: the nested flows and the node, and each flow's steps.
fn position<S>(frames: &Frames<'_, S>) -> (Vec<String>, Vec<u64>) {
    frames.frames.iter().map(|f| (f.flow.slots[f.run.current].name.clone(), f.run.steps)).unzip()
}

/// The fields of the journal's last checkpoint, written again unchanged.
fn journal_fields(journal: &Journal<'_>) -> Vec<(String, Vec<u8>)> {
    journal.last_fields().to_vec()
}

/// Whether a node's error is an interrupt.
fn interrupted(error: &Error) -> bool {
    match error {
        Error::Node { source, .. } => is_interrupt(&**source),
        _ => false,
    }
}
