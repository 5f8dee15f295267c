//! `Flow`: a graph of nodes built at runtime, and the engine that runs it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::BoxFuture;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::{Action, Label};
use crate::error::Error;
use crate::graph::{Graph, GraphEdge, GraphFlow, GraphNode, Problem, Target as GraphTarget};
use crate::params::Params;
use crate::step::{Cancel, DynStep, FlowPath, IntoStep, Seg, StepCx, StepKind, check_stack, is_cancelled, no_span};
use crate::store::SharedStore;
use crate::wire::{Edge, NodeId};

static NEXT_FLOW_ID: AtomicU64 = AtomicU64::new(1);

/// Where an edge or the start leads.
enum Target {
    Node(usize),
    /// The flow ends there, on purpose ([`End`](crate::End)).
    End,
    /// A node of another flow: an error when reached.
    Foreign,
}

struct Slot<S> {
    name: String,
    step: Arc<dyn DynStep<S>>,
    edges: Vec<(Label, Target)>,
    /// The step is a nested flow, which runs in place.
    nested: bool,
}

/// A wiring mistake noticed while the flow was built, reported by `validate`.
enum Wiring {
    /// An edge replaced an earlier one for the same node and action.
    Replaced { node: String, action: String },
    /// An edge from a node of another flow, which was not added.
    ForeignEdge { action: String },
}

/// A graph of nodes connected by actions, built at runtime.
///
/// A run starts at the start node and follows, after each node, the edge named
/// by the action its `post` returned, until it reaches a node without edges or
/// an action that leads to [`End`](crate::End). The result is that last
/// action, so a parent flow can branch on how a nested flow ended. A flow is
/// itself a step: add it to another flow with [`add`](Flow::add); nested flows
/// run in place, so nesting depth costs no stack.
///
/// ```
/// use minllm::{End, ExecContext, Flow, Node, NodeResult, Params, SharedStore};
///
/// /// Counts down from `n`; says "again" until zero.
/// struct Tick;
/// impl Node for Tick {
///     type Prep = u32;
///     type Exec = u32;
///     type Action = &'static str;
///     fn prep(&self, s: &SharedStore, _: &Params) -> NodeResult<u32> { Ok(s.try_get("n")?) }
///     fn exec(&self, n: &u32, _: &ExecContext) -> NodeResult<u32> { Ok(n.saturating_sub(1)) }
///     fn post(&self, s: &mut SharedStore, _: u32, n: u32) -> NodeResult<&'static str> {
///         s.set("n", n);
///         Ok(if n > 0 { "again" } else { "done" })
///     }
/// }
///
/// let mut flow = Flow::new("countdown");
/// let tick = flow.add("tick", Tick);
/// flow.start(tick).edge(tick.on("again") >> tick).edge(tick.on("done") >> End).max_steps(100);
/// assert!(flow.validate().is_empty());
///
/// let mut store = SharedStore::new();
/// store.set("n", 5_u32);
/// assert_eq!(flow.run(&mut store).unwrap(), "done");
/// assert_eq!(store.get::<u32>("n"), Some(0));
/// ```
pub struct Flow<S: 'static = SharedStore> {
    id: u64,
    name: String,
    slots: Vec<Slot<S>>,
    /// The index of the first node added under each name.
    names: HashMap<String, usize>,
    start: Option<Target>,
    max_steps: Option<u64>,
    unbounded: bool,
    params: Params,
    wiring: Vec<Wiring>,
    /// What keeps the flow (and the flows nested in it) from running at all,
    /// found once before its first run and forgotten when it changes.
    refusal: OnceLock<Option<Problem>>,
}

impl<S: Send + Sync + 'static> Flow<S> {
    /// An empty flow. The name appears in errors, traces and diagrams.
    pub fn new(name: impl Into<String>) -> Self {
        Flow {
            id: NEXT_FLOW_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            slots: Vec::new(),
            names: HashMap::new(),
            start: None,
            max_steps: None,
            unbounded: false,
            params: Params::new(),
            wiring: Vec::new(),
            refusal: OnceLock::new(),
        }
    }

    /// Adds a step under `name` and returns its id for wiring: a [`Node`](crate::Node),
    /// an [`AsyncNode`](crate::AsyncNode), a [`Batch`](crate::Batch), an
    /// [`AsyncBatch`](crate::AsyncBatch), a nested `Flow` or a
    /// [`BatchFlow`](crate::BatchFlow). The first node added is the start node
    /// until [`start`](Flow::start) says otherwise.
    pub fn add<M>(&mut self, name: impl Into<String>, step: impl IntoStep<S, M>) -> NodeId {
        let name = name.into();
        let index = self.slots.len();
        self.names.entry(name.clone()).or_insert(index);
        let step = step.into_step();
        let nested = step.kind() == StepKind::Flow && step.inner_flow().is_some();
        self.slots.push(Slot { name, step, edges: Vec::new(), nested });
        if self.start.is_none() {
            self.start = Some(Target::Node(index));
        }
        self.changed();
        NodeId { flow: self.id, index }
    }

    /// Makes `node` the start node.
    ///
    /// A node of another flow is a mistake that [`validate`](Flow::validate)
    /// reports and that makes runs fail with [`Error::ForeignStart`].
    pub fn start(&mut self, node: NodeId) -> &mut Self {
        self.start = Some(match self.own(node) {
            Some(index) => Target::Node(index),
            None => Target::Foreign,
        });
        self.changed();
        self
    }

    /// Adds the edges written `a >> b`, `a.on("action") >> b`, as a chain, or
    /// ending in [`End`](crate::End). An edge for a (node, action) pair that
    /// already has one replaces it, and [`validate`](Flow::validate) reports it.
    pub fn edge(&mut self, edges: impl Into<Vec<Edge>>) -> &mut Self {
        for edge in edges.into() {
            let to = match edge.to {
                None => Target::End,
                Some(to) => self.own(to).map_or(Target::Foreign, Target::Node),
            };
            self.link(edge.from, edge.action, to);
        }
        self
    }

    /// Adds one edge: after `from` returns `action`, run `to`.
    pub fn connect(&mut self, from: NodeId, action: impl Action, to: NodeId) -> &mut Self {
        let to = self.own(to).map_or(Target::Foreign, Target::Node);
        self.link(from, action.into_label(), to);
        self
    }

    fn link(&mut self, from: NodeId, action: Label, target: Target) {
        self.changed();
        let Some(from) = self.own(from) else {
            self.wiring.push(Wiring::ForeignEdge { action: action.to_string() });
            return;
        };
        let slot = &mut self.slots[from];
        match slot.edges.iter_mut().find(|(a, _)| *a == action) {
            Some(existing) => {
                tracing::warn!(flow = %self.name, node = %slot.name, action = %action, "overwriting the edge of node `{}` for action `{}`", slot.name, action);
                self.wiring.push(Wiring::Replaced { node: slot.name.clone(), action: action.to_string() });
                existing.1 = target;
            }
            None => slot.edges.push((action, target)),
        }
    }

    /// Bounds the run: more than `steps` node runs in one run of this flow is an
    /// [`Error::StepLimit`]. A flow with a cycle needs a limit (or
    /// [`unbounded`](Flow::unbounded)): without one, it does not run.
    pub fn max_steps(&mut self, steps: u64) -> &mut Self {
        self.max_steps = Some(steps);
        self.changed();
        self
    }

    /// Says that the flow's loops are meant to run without a step limit (a
    /// server loop, an agent stopped from outside): a flow with a cycle and no
    /// [`max_steps`](Flow::max_steps) then runs instead of being refused with
    /// [`Error::Invalid`]. A step limit, when set, still applies.
    pub fn unbounded(&mut self) -> &mut Self {
        self.unbounded = true;
        self.changed();
        self
    }

    /// Sets the flow's params. They reach the `prep` of every node of a run; when
    /// the flow is nested, the parent's params are merged over them.
    pub fn params(&mut self, params: Params) -> &mut Self {
        self.params = params;
        self
    }

    pub(crate) fn own_params(&self) -> &Params {
        &self.params
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id of the node added under `name` (the first one, if several share it).
    pub fn node(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).map(|&index| NodeId { flow: self.id, index })
    }

    /// Every problem of the flow's wiring, nested flows included; empty when none:
    /// edges to nodes of another flow, duplicate names and edges, unreachable
    /// nodes, actions a node can return that have no edge (when the node has
    /// other edges), edges for actions a node never returns, and cycles when no
    /// step limit is set.
    pub fn validate(&self) -> Vec<Problem> {
        let (graph, wiring) = self.shape();
        let mut problems: Vec<Problem> = wiring
            .into_iter()
            .map(|(f, wiring)| {
                let flow = graph.path(f);
                match wiring {
                    Wiring::Replaced { node, action } => {
                        Problem::DuplicateEdge { flow, node: node.clone(), action: action.clone() }
                    }
                    Wiring::ForeignEdge { action } => Problem::ForeignEdge { flow, action: action.clone() },
                }
            })
            .collect();
        problems.extend(graph.validate());
        problems
    }

    /// The flow as a Mermaid `flowchart`; nested flows are subgraphs.
    pub fn to_mermaid(&self) -> String {
        self.graph().to_mermaid()
    }

    /// The flow's shape, for tools of your own.
    pub fn graph(&self) -> Graph {
        self.shape().0
    }

    /// The shape of this flow and the flows nested in it, built with a loop (no
    /// recursion), and each flow's wiring mistakes by its index in the graph.
    fn shape(&self) -> (Graph, Vec<(usize, &Wiring)>) {
        let mut flows: Vec<GraphFlow> = Vec::new();
        let mut wiring = Vec::new();
        // Flows to visit: the flow, its name, and the (flow, node) holding it.
        type Visit<'f, S> = (&'f Flow<S>, &'f str, Option<(usize, usize)>);
        let mut todo: Vec<Visit<'_, S>> = vec![(self, &self.name, None)];
        while let Some((flow, name, parent)) = todo.pop() {
            let f = flows.len();
            if let Some((p, n)) = parent {
                flows[p].nodes[n].inner = Some(f);
            }
            wiring.extend(flow.wiring.iter().map(|w| (f, w)));
            let nodes = flow
                .slots
                .iter()
                .map(|slot| GraphNode {
                    name: slot.name.clone(),
                    note: note(slot.step.kind()),
                    declared: slot.step.declared_actions().map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
                    edges: slot
                        .edges
                        .iter()
                        .map(|(action, target)| GraphEdge { action: action.to_string(), to: target.shape() })
                        .collect(),
                    inner: None,
                })
                .collect();
            // Reversed, so that nested flows come out in the order of their nodes.
            for (i, slot) in flow.slots.iter().enumerate().rev() {
                if let Some(inner) = slot.step.inner_flow() {
                    todo.push((inner, &slot.name, Some((f, i))));
                }
            }
            flows.push(GraphFlow {
                name: name.to_owned(),
                parent,
                nodes,
                start: flow.start.as_ref().map(Target::shape),
                max_steps: flow.max_steps,
                unbounded: flow.unbounded,
            });
        }
        (Graph { flows }, wiring)
    }

    fn own(&self, node: NodeId) -> Option<usize> {
        (node.flow == self.id && node.index < self.slots.len()).then_some(node.index)
    }

    /// The flow changed: what was found about it no longer holds.
    fn changed(&mut self) {
        self.refusal.take();
    }

    /// Refuses a run that cannot work: no start, or a loop without a limit
    /// (here or in a nested flow). Worked out once per flow, not once per run.
    fn check(&self, path: &FlowPath<'_>) -> Result<(), Error> {
        let refusal = self.refusal.get_or_init(|| {
            let refusal = self.graph().validate().into_iter().find(Problem::is_fatal);
            if refusal.is_none() {
                self.checked_inside();
            }
            refusal
        });
        match refusal {
            None => Ok(()),
            Some(Problem::NoStart { flow }) if *flow == self.name => Err(Error::NoStart { flow: path.to_string() }),
            Some(Problem::ForeignStart { flow }) if *flow == self.name => {
                Err(Error::ForeignStart { flow: path.to_string() })
            }
            Some(problem) => Err(Error::Invalid { flow: path.to_string(), problem: Box::new(problem.clone()) }),
        }
    }

    /// Notes that every flow nested in this one can run: a check of this one
    /// looked at them all, so none of them needs a check of its own later (a
    /// batch flow runs its inner flow as a run of its own).
    fn checked_inside(&self) {
        let mut todo: Vec<&Flow<S>> = self.slots.iter().filter_map(|slot| slot.step.inner_flow()).collect();
        while let Some(flow) = todo.pop() {
            // A flow already known to be fine was marked with all it holds.
            if flow.refusal.set(None).is_ok() {
                todo.extend(flow.slots.iter().filter_map(|slot| slot.step.inner_flow()));
            }
        }
    }

    /// Runs the flow on `store` and returns the last action.
    ///
    /// Before the first node, the flow is checked once (the result is kept
    /// until the flow changes): a flow without a start, or with a cycle and
    /// neither a step limit nor [`unbounded`](Flow::unbounded), here or in a
    /// nested flow, does not run. Async steps cannot run here: they make the
    /// run fail with [`Error::AsyncInSyncRun`]; use [`run_async`](Flow::run_async)
    /// for them.
    pub fn run(&self, store: &mut S) -> Result<Label, Error> {
        let path = FlowPath::root(&self.name);
        self.orchestrate(StoreRef::exclusive(store), &path, &self.params, None)
    }

    /// Runs the flow on `store` on the current tokio runtime and returns the last
    /// action. Sync nodes run too: their `exec` goes to tokio's blocking pool.
    ///
    /// Dropping the future (a timeout, a cancelled task, a runtime shutting
    /// down) stops the run at its next `await`: a sync `exec` already on the
    /// blocking pool finishes its current attempt and makes no further one (its
    /// retry wait ends at once), and an async `post` stopped halfway leaves what
    /// it wrote.
    // Spelled out so that the `Send` bound is part of the signature, not inferred.
    #[allow(clippy::manual_async_fn)]
    pub fn run_async<'a>(&'a self, store: &'a mut S) -> impl Future<Output = Result<Label, Error>> + Send + 'a {
        async move {
            let path = FlowPath::root(&self.name);
            self.orchestrate_async(AsyncStoreRef::exclusive(store), &path, &self.params, None).await
        }
    }

    /// Runs the flow. Nested flows run in place, each as a frame on a stack of
    /// the run's own, so that nesting depth costs heap, not the thread's stack.
    pub(crate) fn orchestrate(
        &self,
        mut store: StoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Error> {
        check_stack(path)?;
        self.check(path)?;
        // Checked once per run: without a subscriber, no span is made per step.
        let traced = crate::typed::tracing_on();
        let mut frames = Frames::new(self, path, params, traced);
        let mut segs = Vec::new();
        loop {
            let at = path.extended(&segs);
            let frame = frames.top();
            let exit = if traced {
                frame.run_nodes::<true>(store.reborrow(), &at, cancel)?
            } else {
                frame.run_nodes::<false>(store.reborrow(), &at, cancel)?
            };
            if let Some(label) = frames.after(exit, path, &mut segs)? {
                return Ok(label);
            }
        }
    }

    /// [`orchestrate`](Flow::orchestrate) on an async store: the same frames,
    /// awaiting each step.
    pub(crate) async fn orchestrate_async(
        &self,
        mut store: AsyncStoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Error> {
        check_stack(path)?;
        self.check(path)?;
        let traced = crate::typed::tracing_on();
        let mut frames = Frames::new(self, path, params, traced);
        let mut segs = Vec::new();
        loop {
            let at = path.extended(&segs);
            let frame = frames.top();
            let exit = loop {
                let slot = frame.next_slot(&at, cancel)?;
                if slot.nested {
                    break Exit::Enter(slot, traced.then(|| frame.nested_spans(slot, &at)));
                }
                let span = traced.then(|| frame.node_span(slot));
                let cx = StepCx {
                    flow: &at,
                    node: &slot.name,
                    params: &frame.params,
                    cancel,
                    span: span.as_ref().map_or(no_span(), |(span, _)| span),
                };
                let label = match &span {
                    None => slot.step.run_async(store.reborrow(), cx).await?,
                    Some((span, started)) => {
                        let label = slot.step.run_async(store.reborrow(), cx).instrument(span.clone()).await?;
                        finish_span(span, *started, &label);
                        label
                    }
                };
                if !frame.run.follow(frame.flow, &at, &label)? {
                    break Exit::End(label);
                }
            };
            if let Some(label) = frames.after(exit, path, &mut segs)? {
                return Ok(label);
            }
        }
    }
}

/// Why the innermost flow of a run stopped running nodes.
enum Exit<'f, S: 'static> {
    /// It reached a node holding a nested flow (with the node's span and the
    /// nested flow's, when traced).
    Enter(&'f Slot<S>, Option<(NodeSpan, tracing::Span)>),
    /// It ended with this action.
    End(Label),
}

/// A node's span, and when the node started when anything records it.
type NodeSpan = (tracing::Span, Option<Instant>);

impl Target {
    fn shape(&self) -> GraphTarget {
        match self {
            Target::Node(i) => GraphTarget::Node(*i),
            Target::End => GraphTarget::End,
            Target::Foreign => GraphTarget::Foreign,
        }
    }
}

fn node_span(parent: &tracing::Span, name: &str) -> tracing::Span {
    tracing::debug_span!(parent: parent, "node", node = %name, action = Empty, attempts = Empty, elapsed_us = Empty)
}

fn finish_span(span: &tracing::Span, started: Option<Instant>, label: &Label) {
    if let Some(started) = started {
        span.record("action", tracing::field::display(label));
        span.record("elapsed_us", u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
}

fn note(kind: StepKind) -> Option<String> {
    let note = match kind {
        StepKind::Node | StepKind::Flow | StepKind::Other => return None,
        StepKind::AsyncNode => "async",
        StepKind::Batch => "batch",
        StepKind::ParallelBatch => "parallel batch",
        StepKind::AsyncBatch => "async batch",
        StepKind::ConcurrentBatch => "concurrent batch",
        StepKind::BatchFlow => "batch flow",
    };
    Some(note.to_owned())
}

/// The flows of one run, outermost first: the run's own stack, so that a flow
/// nested a hundred thousand levels deep runs without native recursion. The
/// names of the nested flows entered are kept beside it, by the runner, for
/// the flow paths.
struct Frames<'f, S: 'static> {
    frames: Vec<Frame<'f, S>>,
}

/// One flow of a run: where it is, its params, its span, and the span of the
/// node that holds the flow nested in it while that one runs.
struct Frame<'f, S: 'static> {
    flow: &'f Flow<S>,
    run: Run,
    params: Params,
    span: tracing::Span,
    holder: Option<NodeSpan>,
}

impl<'f, S: Send + Sync + 'static> Frames<'f, S> {
    fn new(flow: &'f Flow<S>, path: &FlowPath<'_>, params: &Params, traced: bool) -> Self {
        let span =
            if traced { tracing::debug_span!("flow", flow = %path, steps = Empty) } else { tracing::Span::none() };
        Frames { frames: vec![Frame::new(flow, params.clone(), span)] }
    }

    fn top(&mut self) -> &mut Frame<'f, S> {
        self.frames.last_mut().expect("a run has a frame until it returns")
    }

    /// Acts on why the innermost flow stopped: enters the nested flow it
    /// reached, or ends it and the flows it ends. `Some` when the run ends.
    fn after(
        &mut self,
        exit: Exit<'f, S>,
        path: &FlowPath<'_>,
        segs: &mut Vec<Seg<'f>>,
    ) -> Result<Option<Label>, Error> {
        match exit {
            Exit::Enter(slot, spans) => {
                self.enter(slot, spans);
                segs.push(Seg { name: &slot.name, item: None });
                Ok(None)
            }
            Exit::End(label) => self.end(path, segs, label),
        }
    }

    /// Enters the flow nested in `slot`.
    fn enter(&mut self, slot: &'f Slot<S>, spans: Option<(NodeSpan, tracing::Span)>) {
        let Some(inner) = slot.step.inner_flow() else { return };
        let (holder, span) = spans.map_or((None, tracing::Span::none()), |(holder, span)| (Some(holder), span));
        let top = self.top();
        let params = inner.params.merged(&top.params);
        top.holder = holder;
        self.frames.push(Frame::new(inner, params, span));
    }

    /// The innermost flow ended with `label`: it is the action of the node
    /// that holds it, which the enclosing flow follows, and so on outwards.
    /// `Some` when the outermost flow ends.
    fn end(&mut self, path: &FlowPath<'_>, segs: &mut Vec<Seg<'f>>, label: Label) -> Result<Option<Label>, Error> {
        loop {
            if let Some(done) = self.frames.pop() {
                done.span.record("steps", done.run.steps);
            }
            if self.frames.is_empty() {
                return Ok(Some(label));
            }
            segs.pop();
            let at = path.extended(segs);
            let top = self.top();
            if let Some((span, started)) = top.holder.take() {
                finish_span(&span, started, &label);
            }
            if top.run.follow(top.flow, &at, &label)? {
                return Ok(None);
            }
        }
    }
}

impl<'f, S: 'static> Frame<'f, S> {
    fn new(flow: &'f Flow<S>, params: Params, span: tracing::Span) -> Self {
        Frame { flow, run: Run::new(flow), params, span, holder: None }
    }

    /// Runs this flow's nodes until it ends or reaches a nested flow: the hot
    /// loop of a sync run, made twice, with spans (`TRACED`) and without.
    #[inline]
    fn run_nodes<const TRACED: bool>(
        &mut self,
        mut store: StoreRef<'_, S>,
        at: &FlowPath<'_>,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Exit<'f, S>, Error>
    where
        S: Send + Sync,
    {
        // In a local while the loop runs: the step count and position stay in registers.
        let mut run = self.run;
        let flow = self.flow;
        loop {
            run.next(flow, at, cancel)?;
            let slot = &flow.slots[run.current];
            if slot.nested {
                self.run = run;
                return Ok(Exit::Enter(slot, TRACED.then(|| self.nested_spans(slot, at))));
            }
            let label = if TRACED {
                let (span, started) = self.node_span(slot);
                let cx = StepCx { flow: at, node: &slot.name, params: &self.params, cancel, span: &span };
                let label = span.in_scope(|| slot.step.run(store.reborrow(), cx))?;
                finish_span(&span, started, &label);
                label
            } else {
                let cx = StepCx { flow: at, node: &slot.name, params: &self.params, cancel, span: no_span() };
                slot.step.run(store.reborrow(), cx)?
            };
            if !run.follow(flow, at, &label)? {
                self.run = run;
                return Ok(Exit::End(label));
            }
        }
    }

    /// The slot to run next, after checking the step limit and cancellation.
    fn next_slot(&mut self, path: &FlowPath<'_>, cancel: Option<&Cancel<'_>>) -> Result<&'f Slot<S>, Error> {
        self.run.next(self.flow, path, cancel)?;
        Ok(&self.flow.slots[self.run.current])
    }

    /// The span of the node in `slot`, which holds a nested flow, and the
    /// span of that flow; `at` is this flow's path.
    fn nested_spans(&self, slot: &Slot<S>, at: &FlowPath<'_>) -> (NodeSpan, tracing::Span) {
        let holder = self.node_span(slot);
        let span = tracing::debug_span!(parent: &holder.0, "flow", flow = %at.child(&slot.name, None), steps = Empty);
        (holder, span)
    }

    /// The span of the node in `slot`, a child of this flow's span.
    fn node_span(&self, slot: &Slot<S>) -> NodeSpan {
        let span = node_span(&self.span, &slot.name);
        let started = (!span.is_disabled()).then(Instant::now);
        (span, started)
    }
}

/// How many recent steps a step-limit error shows.
const RECENT: usize = 8;

/// The state of one flow's run: where it is, how many steps it took, the last few nodes.
#[derive(Clone, Copy)]
struct Run {
    current: usize,
    steps: u64,
    recent: [usize; RECENT],
}

impl Run {
    fn new<S>(flow: &Flow<S>) -> Run {
        // `check` refused flows without a start node.
        let current = match flow.start {
            Some(Target::Node(start)) => start,
            _ => 0,
        };
        Run { current, steps: 0, recent: [0; RECENT] }
    }

    /// Counts a step into the current node, after checking the step limit and cancellation.
    #[inline(always)]
    fn next<S>(&mut self, flow: &Flow<S>, path: &FlowPath<'_>, cancel: Option<&Cancel<'_>>) -> Result<(), Error> {
        if is_cancelled(cancel) {
            return Err(cancelled(path));
        }
        if let Some(limit) = flow.max_steps
            && self.steps >= limit
        {
            return Err(self.limit_reached(flow, path, limit));
        }
        self.recent[(self.steps % RECENT as u64) as usize] = self.current;
        self.steps += 1;
        Ok(())
    }

    /// Moves along the edge for `label`: `true` when it leads to a node,
    /// `false` when the flow ends here.
    #[inline(always)]
    fn follow<S>(&mut self, flow: &Flow<S>, path: &FlowPath<'_>, label: &Label) -> Result<bool, Error> {
        let slot = &flow.slots[self.current];
        match slot.edges.iter().find(|(a, _)| a == label) {
            Some((_, Target::Node(next))) => {
                self.current = *next;
                Ok(true)
            }
            Some((_, Target::End)) => Ok(false),
            None if slot.edges.is_empty() => Ok(false),
            Some((_, Target::Foreign)) => Err(no_way_on(slot, path, label, true)),
            None => Err(no_way_on(slot, path, label, false)),
        }
    }

    #[cold]
    #[inline(never)]
    fn limit_reached<S>(&self, flow: &Flow<S>, path: &FlowPath<'_>, limit: u64) -> Error {
        Error::StepLimit { flow: path.to_string(), limit, recent: self.describe_recent(flow) }
    }

    /// The nodes of the last steps, oldest first: `... -> a -> b`.
    fn describe_recent<S>(&self, flow: &Flow<S>) -> String {
        let shown = self.steps.min(RECENT as u64);
        let names: Vec<&str> = (self.steps - shown..self.steps)
            .map(|step| flow.slots[self.recent[(step % RECENT as u64) as usize]].name.as_str())
            .collect();
        let prefix = if self.steps > RECENT as u64 { "... -> " } else { "" };
        format!("{prefix}{}", names.join(" -> "))
    }
}

#[cold]
#[inline(never)]
fn cancelled(path: &FlowPath<'_>) -> Error {
    Error::Cancelled { flow: path.to_string() }
}

/// The error of a node whose action leads nowhere: to a node of another flow
/// (`foreign`), or to no edge at all.
#[cold]
#[inline(never)]
fn no_way_on<S>(slot: &Slot<S>, path: &FlowPath<'_>, label: &Label, foreign: bool) -> Error {
    let (flow, node, action) = (path.to_string(), slot.name.clone(), label.to_string());
    if foreign {
        return Error::UnknownTarget { flow, node, action };
    }
    Error::MissingEdge { flow, node, action, edges: slot.edges.iter().map(|(a, _)| a.to_string()).collect() }
}

impl<S: Send + Sync + 'static> DynStep<S> for Flow<S> {
    fn run(&self, store: StoreRef<'_, S>, cx: StepCx<'_>) -> Result<Label, Error> {
        let path = cx.flow.child(cx.node, None);
        self.orchestrate(store, &path, &self.params.merged(cx.params), cx.cancel)
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: StepCx<'a>) -> BoxFuture<'a, Result<Label, Error>> {
        Box::pin(async move {
            let path = cx.flow.child(cx.node, None);
            self.orchestrate_async(store, &path, &self.params.merged(cx.params), cx.cancel).await
        })
    }

    fn kind(&self) -> StepKind {
        StepKind::Flow
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn inner_flow(&self) -> Option<&Flow<S>> {
        Some(self)
    }

    fn detach_inner(&mut self, into: &mut Vec<Arc<dyn DynStep<S>>>) {
        into.extend(self.slots.drain(..).map(|slot| slot.step));
    }
}

impl<S: 'static> Drop for Flow<S> {
    /// Takes nested flows apart with a loop: dropping a flow nested a hundred
    /// thousand levels deep must not recurse once per level.
    fn drop(&mut self) {
        let mut pending: Vec<Arc<dyn DynStep<S>>> = self.slots.drain(..).map(|slot| slot.step).collect();
        while let Some(mut step) = pending.pop() {
            if let Some(step) = Arc::get_mut(&mut step) {
                step.detach_inner(&mut pending);
            }
        }
    }
}

impl<S: 'static> fmt::Debug for Flow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.name)
            .field("nodes", &self.slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}
