//! A `flow!` machine in a run driven node by node (checkpoints, events): the
//! hook it calls around each node, and the adapters that let
//! [`DurableRun`](crate::durable::DurableRun) and streams drive it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::{AsyncTypedNode, TypedFlow, TypedNode};
use crate::action::Action;
use crate::context::{FlowPath, NodeCx};
use crate::durable::{
    Ambient, Checkpoint, Drive, Journal, Mode, NodeVisit, Outcome, Pause, Plan, Status, Visit, is_interrupt,
};
use crate::error::Error;
use crate::events::EventKind;
use crate::events::Sink;
use crate::params::Params;

/// What a `flow!` machine asks before and after each node: nothing in a plain
/// run ([`NoHook`], which compiles away); checkpoints and events in a run
/// driven through [`DurableRun`](crate::durable::DurableRun) or a stream.
#[doc(hidden)]
pub trait Hook<S> {
    /// Whether the machine calls the hook around its nodes at all (`false`
    /// for [`NoHook`]: its calls compile away).
    const DRIVEN: bool;
    /// The node a resumed run starts at in the machine that asks (each
    /// machine asks once, nested ones too), and the steps taken before it.
    fn resume_at(&mut self) -> Option<(String, u64)>;
    /// Called before node `node` runs: the visit it runs in, if any.
    fn before(&mut self, node: &'static str, store: &S) -> Result<Option<&NodeVisit<'_>>, Error>;
    /// Called after the node returned `action`.
    fn after(&mut self, node: &'static str, action: &str);
    /// The error of a resumed run whose node the flow does not have.
    fn unknown(&self, node: &str) -> Error;
    /// Runs `node`, when it is a `flow!` flow, one level down this hook (its
    /// nodes checkpointed and streamed on their own); `None` for other nodes
    /// and hooks.
    fn nested<M, T: TypedNode<S, M>>(
        &mut self,
        node: &T,
        name: &'static str,
        store: &mut S,
    ) -> Option<Result<T::Action, Error>>;
    /// [`nested`](Hook::nested) in an async machine.
    fn nested_async<'h, M, T: AsyncTypedNode<S, M>>(
        &'h mut self,
        node: &'h Arc<T>,
        name: &'static str,
        store: &'h mut S,
    ) -> Option<BoxFuture<'h, Result<T::Action, Error>>>;
}

/// The hook of a plain run.
#[doc(hidden)]
pub struct NoHook;

impl<S> Hook<S> for NoHook {
    const DRIVEN: bool = false;
    #[inline(always)]
    fn resume_at(&mut self) -> Option<(String, u64)> {
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
    #[inline(always)]
    fn nested<M, T: TypedNode<S, M>>(&mut self, _: &T, _: &'static str, _: &mut S) -> Option<Result<T::Action, Error>> {
        None
    }
    #[inline(always)]
    fn nested_async<'h, M, T: AsyncTypedNode<S, M>>(
        &'h mut self,
        _: &'h Arc<T>,
        _: &'static str,
        _: &'h mut S,
    ) -> Option<BoxFuture<'h, Result<T::Action, Error>>> {
        None
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

/// A node of a sync machine in a driven run: a nested `flow!` flow one level
/// down the hook, any other node in its visit, the hook told before and after.
#[cold]
#[inline(never)]
pub(super) fn run_driven<S, M, T: TypedNode<S, M>, H: Hook<S>>(
    node: &T,
    store: &mut S,
    flow: &FlowPath<'_>,
    name: &'static str,
    params: &Params,
    hook: &mut H,
) -> Result<T::Action, Error> {
    if let Some(result) = hook.nested(node, name, store) {
        return result;
    }
    let action = match hook.before(name, store)? {
        Some(visit) => run_visiting(node, store, flow, name, params, visit)?,
        None => node.run_typed(store, NodeCx::new(flow, name, params, None))?,
    };
    hook.after(name, action.label());
    Ok(action)
}

/// [`run_driven`] for a node of an async machine (`base` is the node's
/// context of plain runs), boxed: only driven runs make it.
#[doc(hidden)]
pub fn run_typed_node_driven<'a, S, M, T, H>(
    node: &'a Arc<T>,
    store: &'a mut S,
    base: &'a NodeCx<'a>,
    name: &'static str,
    hook: &'a mut H,
) -> BoxFuture<'a, Result<T::Action, Box<Error>>>
where
    S: Send + Sync,
    T: AsyncTypedNode<S, M>,
    H: Hook<S> + Send,
{
    Box::pin(async move {
        if let Some(nested) = hook.nested_async(node, name, store) {
            return Ok(nested.await?);
        }
        let action = match hook.before(name, store)? {
            Some(visit) => run_typed_node_visiting(node, store, base, visit).await?,
            None => T::run_typed_async(node, store, base).await?,
        };
        hook.after(name, action.label());
        Ok(action)
    })
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
        let plan = Plan { journal: None, events, run: visit.map_or("", |v| v.run()), mode };
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
            None => self.within.map(|within| within.within_flow(&self.place(node))),
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

/// A sync `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait SyncMachine<S>: TypedFlow<S> {
    /// What the flow's name is.
    const NAME: &'static str;
    /// Runs the machine at `path` with `params` (a `flow!` flow in a runtime flow).
    fn run_machine_in(
        &self,
        store: &mut S,
        path: &FlowPath<'_>,
        params: &Params,
        hook: &mut DriveHook<'_, S>,
    ) -> Result<Self::Outcome, Error>;
    /// Runs the machine as a flow of its own.
    fn run_machine(&self, store: &mut S, hook: &mut DriveHook<'_, S>) -> Result<Self::Outcome, Error> {
        self.run_machine_in(store, &FlowPath::root(Self::NAME), &Params::new(), hook)
    }
}

/// An async `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait AsyncMachine<S>: Sync {
    /// What the flow's name is.
    const NAME: &'static str;
    /// What a run ends with (its `AsyncTypedFlow::Outcome`).
    type Outcome: Action;
    /// Runs the machine as a flow of its own.
    fn run_machine<'a>(
        &'a self,
        store: &'a mut S,
        hook: &'a mut DriveHook<'_, S>,
    ) -> impl Future<Output = Result<Self::Outcome, Error>> + Send + 'a;
    /// Runs the machine at `path` with `params` (a `flow!` flow in a runtime flow).
    fn run_machine_in<'a>(
        &'a self,
        store: &'a mut S,
        path: &'a FlowPath<'a>,
        params: &'a Params,
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
