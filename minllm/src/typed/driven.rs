//! A `flow!` machine in a run driven node by node (checkpoints, events): the
//! hook it calls around each node, and the adapters that let
//! [`DurableRun`](crate::durable::DurableRun) and streams drive it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::{AsyncTypedNode, TypedNode};
use crate::action::Action;
use crate::context::{FlowPath, NodeCx};
use crate::durable::{
    Ambient, Checkpoint, Drive, Journal, Mode, NodeVisit, Outcome, Pause, Plan, Status, is_interrupt,
};
use crate::error::Error;
use crate::events::EventKind;
use crate::params::Params;

/// What a `flow!` machine asks before and after each node: nothing in a plain
/// run ([`NoHook`], which compiles away); checkpoints and events in a run
/// driven through [`DurableRun`](crate::durable::DurableRun) or a stream.
#[doc(hidden)]
pub trait Hook<S> {
    /// The node a resumed run starts at, and the steps taken before it.
    fn resume_at(&self) -> Option<(&str, u64)>;
    /// Called before node `node` runs: the visit it runs in, if any.
    fn before(&mut self, node: &'static str, store: &S) -> Result<Option<&NodeVisit<'_>>, Error>;
    /// Called after the node returned `action`.
    fn after(&mut self, node: &'static str, action: &str);
    /// The error of a resumed run whose node the flow does not have.
    fn unknown(&self, node: &str) -> Error;
}

/// The hook of a plain run.
#[doc(hidden)]
pub struct NoHook;

impl<S> Hook<S> for NoHook {
    #[inline(always)]
    fn resume_at(&self) -> Option<(&str, u64)> {
        None
    }
    #[inline(always)]
    fn before(&mut self, _: &'static str, _: &S) -> Result<Option<&NodeVisit<'_>>, Error> {
        Ok(None)
    }
    #[inline(always)]
    fn after(&mut self, _: &'static str, _: &str) {}
    #[cold]
    fn unknown(&self, node: &str) -> Error {
        Error::Resume { flow: String::new(), run: String::new(), reason: format!("no node `{node}`") }
    }
}

/// Runs a node of a sync machine in a driven run: its visit's ambient set,
/// its context carrying the visit.
#[cold]
#[inline(never)]
pub(super) fn run_visiting<S, M, T: TypedNode<S, M>>(
    node: &T,
    store: &mut S,
    flow: &FlowPath<'_>,
    name: &str,
    params: &Params,
    visit: &NodeVisit<'_>,
) -> Result<T::Action, Error> {
    let _inside = visit.ambient.enter();
    node.run_typed_visiting(store, NodeCx { visit: visit.visit.as_ref(), ..NodeCx::new(flow, name, params, None) })
}

/// Runs a node of an async machine in a driven run (see [`run_visiting`]).
#[doc(hidden)]
pub async fn run_typed_node_visiting<S, M, T: AsyncTypedNode<S, M>>(
    node: &Arc<T>,
    store: &mut S,
    base: &NodeCx<'_>,
    visit: &NodeVisit<'_>,
) -> Result<T::Action, Box<Error>> {
    let cx = NodeCx { visit: visit.visit.as_ref(), ..*base };
    visit.ambient.clone().scope(T::run_typed_visiting(node, store, &cx)).await
}

/// The hook of a `flow!` machine driven with checkpoints or events: writes a
/// checkpoint before each node, sends the node's events.
#[doc(hidden)]
pub struct DriveHook<'a, S> {
    plan: Plan<'a, S>,
    /// Where a resumed run starts: the node and the steps it had counted.
    resume: Option<(String, u64)>,
    /// The visit to continue: its checkpoint and the answers it has.
    again: Option<(u64, Vec<Vec<u8>>)>,
    taken: u64,
    flow: &'static str,
    current: Option<NodeVisit<'a>>,
    /// The node running and when it started.
    at: Option<(&'static str, u64, Instant)>,
}

impl<'a, S> DriveHook<'a, S> {
    /// The hook of flow `flow`'s run as `plan` says, from checkpoint `from`
    /// (with `answers`) or from the start.
    pub fn new(flow: &'static str, mut plan: Plan<'a, S>, from: Option<&Checkpoint>, answers: Vec<Vec<u8>>) -> Self {
        let mut resume = None;
        let mut again = None;
        if let Some(from) = from {
            if let Some((journal, _)) = &mut plan.journal {
                journal.follow(from);
            }
            resume = Some((from.node().to_owned(), from.steps.first().copied().unwrap_or(1)));
            again = Some((from.visit, answers));
        }
        DriveHook { plan, resume, again, taken: 0, flow, current: None, at: None }
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
                    let (node, steps) = self.at.map_or(("", self.taken), |(n, s, _)| (n, s));
                    let status = Status::Finished { action: action.label().to_owned() };
                    journal.write(vec![node.to_owned()], vec![steps], status, None, Vec::new(), fields)?;
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
        let (Some((journal, _)), true, Some(visit), Some((node, steps, _))) =
            (&mut self.plan.journal, interrupted, self.current.as_ref().and_then(|v| v.visit.as_ref()), self.at)
        else {
            return Err(error);
        };
        let (question, answers) = Journal::asked(visit);
        let question = question.unwrap_or_else(|| b"null".to_vec());
        let fields = journal.last_fields().to_vec();
        let status = Status::Paused { question: question.clone() };
        let seq = visit.seq();
        journal.write(vec![node.to_owned()], vec![steps], status, Some(seq), answers, fields)?;
        Ok(Outcome::Paused(Pause { run: self.plan.run.to_owned(), node: node.to_owned(), question }))
    }
}

fn not_checkpointable(flow: &str, run: &str, reason: String) -> Error {
    Error::NotCheckpointable { flow: flow.to_owned(), run: run.to_owned(), what: "the store".to_owned(), reason }
}

impl<'a, S> Hook<S> for DriveHook<'a, S> {
    fn resume_at(&self) -> Option<(&str, u64)> {
        self.resume.as_ref().map(|(node, steps)| (node.as_str(), steps.saturating_sub(1)))
    }

    fn before(&mut self, node: &'static str, store: &S) -> Result<Option<&NodeVisit<'_>>, Error> {
        if self.taken == 0
            && let Some((_, steps)) = &self.resume
        {
            self.taken = steps.saturating_sub(1);
        }
        self.taken += 1;
        let visit = match &mut self.plan.journal {
            Some((journal, save)) => {
                let (seq, answers, fresh) = match self.again.take() {
                    Some((seq, answers)) => (seq, answers, false),
                    None => {
                        let fields =
                            save(store).map_err(|reason| not_checkpointable(self.flow, self.plan.run, reason))?;
                        let path = vec![node.to_owned()];
                        (
                            journal.write(path, vec![self.taken], Status::Running, None, Vec::new(), fields)?,
                            Vec::new(),
                            true,
                        )
                    }
                };
                Some(journal.visit(seq, node, answers, fresh))
            }
            None => None,
        };
        if let Some(sink) = self.plan.events {
            sink.send(EventKind::NodeStarted, self.flow, node);
        }
        self.at = Some((node, self.taken, Instant::now()));
        let ambient = Ambient::new(visit.as_ref(), self.plan.events, self.flow, node);
        self.current = Some(NodeVisit { visit, ambient });
        Ok(self.current.as_ref())
    }

    fn after(&mut self, node: &'static str, action: &str) {
        if let (Some(sink), Some((_, _, started))) = (self.plan.events, self.at) {
            let kind = EventKind::NodeFinished { action: action.to_owned(), elapsed: started.elapsed() };
            sink.send(kind, self.flow, node);
        }
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

/// A sync `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait SyncMachine<S>: Sync {
    /// What the flow's name is.
    const NAME: &'static str;
    /// What a run ends with.
    type Outcome: Action;
    /// Runs the machine.
    fn run_machine(&self, store: &mut S, hook: &mut DriveHook<'_, S>) -> Result<Self::Outcome, Error>;
}

/// An async `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait AsyncMachine<S>: Sync {
    /// What the flow's name is.
    const NAME: &'static str;
    /// What a run ends with.
    type Outcome: Action;
    /// Runs the machine.
    fn run_machine<'a>(
        &'a self,
        store: &'a mut S,
        hook: &'a mut DriveHook<'_, S>,
    ) -> impl Future<Output = Result<Self::Outcome, Error>> + Send + 'a;
}

/// A sync `flow!` flow, for [`DurableRun`](crate::durable::DurableRun) and streams.
#[doc(hidden)]
pub struct SyncTyped<'f, T>(pub &'f T);

/// An async `flow!` flow, for [`DurableRun`](crate::durable::DurableRun) and streams.
#[doc(hidden)]
pub struct AsyncTyped<'f, T>(pub &'f T);

impl<S: Send + Sync + 'static, T: SyncMachine<S>> Drive<S> for SyncTyped<'_, T> {
    fn flow_name(&self) -> &str {
        T::NAME
    }

    async fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> Result<Outcome, Error> {
        let mut hook = DriveHook::new(T::NAME, plan, from, answers);
        let result = self.0.run_machine(store, &mut hook);
        hook.finish(result, store)
    }
}

impl<S: Send + Sync + 'static, T: AsyncMachine<S>> Drive<S> for AsyncTyped<'_, T> {
    fn flow_name(&self) -> &str {
        T::NAME
    }

    async fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> Result<Outcome, Error> {
        let mut hook = DriveHook::new(T::NAME, plan, from, answers);
        if let Some(refused) = hook.refuse_sync() {
            return Err(refused);
        }
        let result = self.0.run_machine(store, &mut hook).await;
        hook.finish(result, store)
    }
}
