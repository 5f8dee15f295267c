//! The hook of a `flow!` machine in a checkpointed or streamed run: a
//! checkpoint before each node, the node's events, and a nested `flow!` flow's
//! machine run one level down.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::driven::Hook;
use super::{AsyncTypedNode, TypedNode};
use crate::action::Action;
use crate::durable::Ambient;
use crate::durable::{Checkpoint, Journal, Mode, NodeVisit, Outcome, Pause, Plan, Status, Visit, is_interrupt};
use crate::error::Error;
use crate::events::{EventKind, Sink};

/// The hook of a `flow!` machine driven with checkpoints or events: writes a
/// checkpoint before each node, sends the node's events.
#[doc(hidden)]
pub struct DriveHook<'a, S> {
    plan: Plan<'a, S>,
    /// Where a resumed run starts: the nested flows and the node, each with
    /// the steps its flow had counted.
    resume: Vec<(String, u64)>,
    /// How many machines have taken their resume point.
    resumed: usize,
    /// The visit to continue: its checkpoint and the answers it has.
    again: Option<(u64, Vec<Vec<u8>>)>,
    /// The nested `flow!` flows entered, each with its flow's steps.
    levels: Vec<(&'static str, u64)>,
    /// The steps of the innermost machine.
    taken: u64,
    flow: &'static str,
    /// The flows around the machine's nodes, for their events: its name, or
    /// the path of the runtime flow's node it runs as.
    base: String,
    /// The visit of the runtime flow's node the machine runs as: its nodes'
    /// visits are derived from it (no checkpoints of their own).
    within: Option<&'a Visit<'a>>,
    current: Option<NodeVisit<'a>>,
    /// Where the node running is (the nested flows and it, each flow's
    /// steps), and when it started.
    at: Option<(Vec<String>, Vec<u64>, Instant)>,
}

impl<'a, S> DriveHook<'a, S> {
    /// The hook of flow `flow`'s run as `plan` says, from checkpoint `from`
    /// (with `answers`) or from the start.
    pub fn new(flow: &'static str, mut plan: Plan<'a, S>, from: Option<&Checkpoint>, answers: Vec<Vec<u8>>) -> Self {
        let mut resume = Vec::new();
        let mut again = None;
        if let Some(from) = from {
            if let Some((journal, _)) = &mut plan.journal {
                journal.follow(from);
            }
            let steps = from.steps.iter().copied().chain(std::iter::repeat(1));
            resume = from.path.iter().cloned().zip(steps).collect();
            again = Some((from.visit, answers));
        }
        let levels = Vec::new();
        let base = flow.to_owned();
        DriveHook {
            plan,
            resume,
            resumed: 0,
            again,
            levels,
            taken: 0,
            flow,
            base,
            within: None,
            current: None,
            at: None,
        }
    }

    /// The hook of a `flow!` flow that runs as a node of a runtime flow, at
    /// `path`, in a checkpointed run (the node's `visit`) or a streamed one
    /// (`events`): no checkpoints of its own; each node's `exec` is recorded
    /// under the node's visit, keyed by its place in the machine, so that the
    /// node entered again reads back what finished, and interrupts take the
    /// node's answers in the order they are asked.
    pub(crate) fn within(
        flow: &'static str,
        path: String,
        visit: Option<&'a Visit<'a>>,
        events: Option<&'a Sink>,
        mode: Mode,
    ) -> Self {
        let run = visit.map_or("", |v| v.run());
        let plan = Plan { journal: None, steps: None, events, run, mode, codec: None, params: None };
        let (resume, levels) = (Vec::new(), Vec::new());
        let (current, at) = (None, None);
        DriveHook {
            plan,
            resume,
            resumed: 0,
            again: None,
            levels,
            taken: 0,
            flow,
            base: path,
            within: visit,
            current,
            at,
        }
    }

    /// Where the node about to run is in the machine: each nested flow and the
    /// node, with its flow's steps (`nested#2 > node#1`).
    fn place(&self, node: &str) -> String {
        let mut place = String::new();
        for (level, taken) in &self.levels {
            place.push_str(&format!("{level}#{taken} > "));
        }
        place.push_str(&format!("{node}#{}", self.taken));
        place
    }

    /// Enters the `flow!` flow nested as node `node`: one level down.
    pub(crate) fn enter(&mut self, node: &'static str) {
        self.taken += 1;
        self.levels.push((node, self.taken));
        self.taken = 0;
    }

    /// Leaves the innermost nested flow.
    pub(crate) fn leave(&mut self) {
        if let Some((_, taken)) = self.levels.pop() {
            self.taken = taken;
        }
    }

    /// The flows the node runs in, for its events (`flow > nested`).
    fn flow_path(&self) -> String {
        let mut path = self.base.clone();
        for (node, _) in &self.levels {
            path.push_str(" > ");
            path.push_str(node);
        }
        path
    }

    /// The error of an async flow driven by a sync call.
    pub fn refuse_sync(&self) -> Option<Error> {
        (self.plan.mode == Mode::Sync).then(|| Error::Resume {
            flow: self.flow.to_owned(),
            run: self.plan.run.to_owned(),
            reason: "the flow is an `async struct`: use the `_async` methods".to_owned(),
        })
    }

    /// Ends the run: a finished one gets its last checkpoint, a paused one
    /// its pause.
    pub fn finish<A: Action>(mut self, result: Result<A, Error>, store: &S) -> Result<Outcome, Error> {
        let error = match result {
            Ok(action) => {
                if let Some((journal, save)) = &mut self.plan.journal {
                    let fields = save(store).map_err(|reason| not_checkpointable(self.flow, self.plan.run, reason))?;
                    let (path, steps) = self.at.take().map_or((Vec::new(), Vec::new()), |(p, s, _)| (p, s));
                    let status = Status::Finished { action: action.label().to_owned() };
                    journal.write(path, steps, status, None, Vec::new(), fields)?;
                }
                return Ok(Outcome::Finished(action.into_label()));
            }
            Err(error) => error,
        };
        let interrupted = matches!(&error, Error::Node { source, .. } if is_interrupt(&**source));
        if !interrupted && let Some((journal, _)) = &self.plan.journal {
            // The failed node's checkpoint is kept: the run resumes there.
            journal.flush()?;
        }
        let (Some((journal, _)), true, Some(visit), Some((path, steps, _))) =
            (&mut self.plan.journal, interrupted, self.current.as_ref().and_then(|v| v.visit.as_ref()), self.at.take())
        else {
            return Err(error);
        };
        let (question, answers) = Journal::asked(visit);
        let question = question.unwrap_or_else(|| b"null".to_vec());
        let fields = journal.last_fields().to_vec();
        let status = Status::Paused { question: question.clone() };
        let seq = visit.seq();
        let node = path.join(" > ");
        journal.write(path, steps, status, Some(seq), answers, fields)?;
        Ok(Outcome::Paused(Pause { run: self.plan.run.to_owned(), node, question }))
    }
}

fn not_checkpointable(flow: &str, run: &str, reason: String) -> Error {
    Error::NotCheckpointable { flow: flow.to_owned(), run: run.to_owned(), what: "the store".to_owned(), reason }
}

impl<'a, S> Hook<S> for DriveHook<'a, S> {
    const DRIVEN: bool = true;

    fn resume_at(&mut self) -> Option<(String, u64)> {
        let depth = self.levels.len();
        if self.resumed != depth || depth >= self.resume.len() {
            return None;
        }
        self.resumed += 1;
        let (node, steps) = &self.resume[depth];
        // The node is counted again when it is entered.
        self.taken = steps.saturating_sub(1);
        Some((node.clone(), self.taken))
    }

    fn before(&mut self, node: &'static str, store: &S) -> Result<Option<&NodeVisit<'_>>, Error> {
        self.taken += 1;
        let mut path: Vec<String> = self.levels.iter().map(|(n, _)| (*n).to_owned()).collect();
        path.push(node.to_owned());
        let mut steps: Vec<u64> = self.levels.iter().map(|(_, t)| *t).collect();
        steps.push(self.taken);
        let visit = match &mut self.plan.journal {
            Some((journal, save)) => {
                let (seq, answers, fresh) = match self.again.take() {
                    Some((seq, answers)) => (seq, answers, false),
                    None => {
                        let fields =
                            save(store).map_err(|reason| not_checkpointable(self.flow, self.plan.run, reason))?;
                        let seq =
                            journal.write(path.clone(), steps.clone(), Status::Running, None, Vec::new(), fields)?;
                        (seq, Vec::new(), true)
                    }
                };
                Some(journal.visit(seq, node, answers, fresh))
            }
            // A journaled run: each node's `exec` a step, named by its place
            // (under the runtime flow's node the machine runs as, if any).
            None => match (self.plan.steps, self.within) {
                (Some(steps), _) => Some(Visit::stepped(steps, self.plan.run, self.place(node), false)),
                (None, Some(within)) => Some(match within.steps() {
                    Some(steps) => {
                        let place = format!("{} > {}", within.step_name(), self.place(node));
                        Visit::stepped(steps, within.run(), place, false)
                    }
                    None => within.within_flow(&self.place(node)),
                }),
                (None, None) => None,
            },
        };
        let flow = self.flow_path();
        if let Some(sink) = self.plan.events {
            sink.send(EventKind::NodeStarted, &flow, node);
        }
        self.at = Some((path, steps, Instant::now()));
        let ambient = Ambient::new(visit.as_ref(), self.plan.events, &flow, node);
        self.current = Some(NodeVisit { visit, ambient });
        Ok(self.current.as_ref())
    }

    fn after(&mut self, node: &'static str, action: &str) {
        if let (Some(sink), Some((_, _, started))) = (self.plan.events, &self.at) {
            let kind = EventKind::NodeFinished { action: action.to_owned(), elapsed: started.elapsed() };
            sink.send(kind, &self.flow_path(), node);
        }
    }

    fn nested<M, T: TypedNode<S, M>>(
        &mut self,
        node: &T,
        name: &'static str,
        store: &mut S,
    ) -> Option<Result<T::Action, Error>> {
        node.run_nested(store, name, self)
    }

    fn nested_async<'h, M, T: AsyncTypedNode<S, M>>(
        &'h mut self,
        node: &'h Arc<T>,
        name: &'static str,
        store: &'h mut S,
    ) -> Option<BoxFuture<'h, Result<T::Action, Error>>> {
        T::run_nested(node, store, name, self)
    }

    fn unknown(&self, node: &str) -> Error {
        Error::Resume {
            flow: self.flow.to_owned(),
            run: self.plan.run.to_owned(),
            reason: format!(
                "its checkpoint is at node `{node}`, which flow `{}` no longer has (renamed or removed since)",
                self.flow
            ),
        }
    }
}
