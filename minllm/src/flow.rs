//! `Flow`: a graph of nodes built at runtime, and the engine that runs it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::future::BoxFuture;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::{Action, Label};
use crate::error::Error;
use crate::graph::{Graph, GraphEdge, GraphNode, Problem};
use crate::params::Params;
use crate::step::{Cancel, DynStep, FlowPath, IntoStep, StepCx, StepKind, is_cancelled};
use crate::store::SharedStore;
use crate::wire::{NodeId, Wire};

static NEXT_FLOW_ID: AtomicU64 = AtomicU64::new(1);

enum Target {
    Node(usize),
    /// A node of another flow: an error when reached.
    Foreign,
}

struct Slot<S> {
    name: String,
    step: Arc<dyn DynStep<S>>,
    edges: Vec<(Label, Target)>,
}

/// A graph of nodes connected by actions, built at runtime.
///
/// A run starts at the start node and follows, after each node, the edge named
/// by the action its `post` returned, until a node returns an action with no
/// edge. The result is that last action, so a parent flow can branch on how a
/// nested flow ended. A flow is itself a step: add it to another flow with
/// [`add`](Flow::add).
///
/// ```
/// use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
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
/// flow.start(tick).edge(tick.on("again") >> tick).max_steps(100);
/// assert!(flow.validate().is_empty());
///
/// let mut store = SharedStore::new();
/// store.set("n", 5_u32);
/// assert_eq!(flow.run(&mut store).unwrap(), "done");
/// assert_eq!(store.get::<u32>("n"), Some(0));
/// ```
pub struct Flow<S = SharedStore> {
    id: u64,
    name: String,
    slots: Vec<Slot<S>>,
    start: Option<usize>,
    max_steps: Option<u64>,
    params: Params,
    problems: Vec<Problem>,
    /// `start` was given a node of another flow: runs fail.
    foreign_start: bool,
}

impl<S: Send + Sync + 'static> Flow<S> {
    /// An empty flow. The name appears in errors, traces and diagrams.
    pub fn new(name: impl Into<String>) -> Self {
        Flow {
            id: NEXT_FLOW_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            slots: Vec::new(),
            start: None,
            max_steps: None,
            params: Params::new(),
            problems: Vec::new(),
            foreign_start: false,
        }
    }

    /// Adds a step under `name` and returns its id for wiring: a [`Node`](crate::Node),
    /// an [`AsyncNode`](crate::AsyncNode), a [`Batch`](crate::Batch), an
    /// [`AsyncBatch`](crate::AsyncBatch), a nested `Flow` or a
    /// [`BatchFlow`](crate::BatchFlow). The first node added is the start node
    /// until [`start`](Flow::start) says otherwise.
    pub fn add<M>(&mut self, name: impl Into<String>, step: impl IntoStep<S, M>) -> NodeId {
        let name = name.into();
        if self.slots.iter().any(|s| s.name == name) {
            self.problems.push(Problem::DuplicateName { flow: self.name.clone(), node: name.clone() });
        }
        let index = self.slots.len();
        self.slots.push(Slot { name, step: step.into_step(), edges: Vec::new() });
        if self.start.is_none() {
            self.start = Some(index);
        }
        NodeId { flow: self.id, index }
    }

    /// Makes `node` the start node.
    ///
    /// A node of another flow is a mistake that [`validate`](Flow::validate)
    /// reports and that makes runs fail with [`Error::ForeignStart`].
    pub fn start(&mut self, node: NodeId) -> &mut Self {
        match self.own(node) {
            Some(index) => {
                self.start = Some(index);
                self.foreign_start = false;
            }
            None => {
                self.foreign_start = true;
                self.problems.push(Problem::ForeignStart { flow: self.name.clone() });
            }
        }
        self
    }

    /// Adds the edges of `wire`, written `a >> b`, `a.on("action") >> b` or as a chain.
    /// An edge for a (node, action) pair that already has one replaces it, and
    /// [`validate`](Flow::validate) reports it.
    pub fn edge(&mut self, wire: Wire) -> &mut Self {
        for edge in wire.edges {
            self.connect(edge.from, edge.action, edge.to);
        }
        self
    }

    /// Adds one edge: after `from` returns `action`, run `to`.
    pub fn connect(&mut self, from: NodeId, action: impl Action, to: NodeId) -> &mut Self {
        let action = action.into_label();
        let target = match self.own(to) {
            Some(index) => Target::Node(index),
            None => Target::Foreign,
        };
        let Some(from) = self.own(from) else {
            self.problems.push(Problem::ForeignEdge { flow: self.name.clone(), action: action.to_string() });
            return self;
        };
        let slot = &mut self.slots[from];
        match slot.edges.iter_mut().find(|(a, _)| *a == action) {
            Some(existing) => {
                self.problems.push(Problem::DuplicateEdge {
                    flow: self.name.clone(),
                    node: slot.name.clone(),
                    action: action.to_string(),
                });
                tracing::warn!(flow = %self.name, node = %slot.name, action = %action, "overwriting the edge of node `{}` for action `{}`", slot.name, action);
                existing.1 = target;
            }
            None => slot.edges.push((action, target)),
        }
        self
    }

    /// Bounds the run: more than `steps` node runs in one run of this flow is an
    /// [`Error::StepLimit`]. Flows with cycles should set it.
    pub fn max_steps(&mut self, steps: u64) -> &mut Self {
        self.max_steps = Some(steps);
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

    /// The id of the node added under `name`.
    pub fn node(&self, name: &str) -> Option<NodeId> {
        self.slots.iter().position(|s| s.name == name).map(|index| NodeId { flow: self.id, index })
    }

    /// Every problem of the flow's wiring, nested flows included; empty when none:
    /// edges to nodes of another flow, duplicate names and edges, unreachable
    /// nodes, actions a node can return that have no edge (when the node has
    /// other edges), edges for actions a node never returns, and cycles when no
    /// step limit is set.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = self.problems.clone();
        problems.extend(self.graph().validate());
        problems
    }

    /// The flow as a Mermaid `flowchart`; nested flows are subgraphs.
    pub fn to_mermaid(&self) -> String {
        self.graph().to_mermaid()
    }

    /// The flow's shape, for tools of your own.
    pub fn graph(&self) -> Graph {
        self.graph_at(&self.name)
    }

    fn graph_at(&self, path: &str) -> Graph {
        let nodes = self
            .slots
            .iter()
            .map(|slot| GraphNode {
                name: slot.name.clone(),
                note: note(slot.step.kind()),
                declared: slot.step.declared_actions().map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
                edges: slot
                    .edges
                    .iter()
                    .map(|(action, target)| GraphEdge {
                        action: action.to_string(),
                        to: match target {
                            Target::Node(i) => Some(*i),
                            Target::Foreign => None,
                        },
                    })
                    .collect(),
                subgraph: slot.step.subgraph(&format!("{path} > {}", slot.name)).map(Box::new),
            })
            .collect();
        Graph { name: path.to_owned(), nodes, start: self.start, max_steps: self.max_steps }
    }

    fn own(&self, node: NodeId) -> Option<usize> {
        (node.flow == self.id && node.index < self.slots.len()).then_some(node.index)
    }

    /// Runs the flow on `store` and returns the last action.
    ///
    /// Async steps cannot run here: they make the run fail with
    /// [`Error::AsyncInSyncRun`]; use [`run_async`](Flow::run_async) for them.
    pub fn run(&self, store: &mut S) -> Result<Label, Error> {
        let path = FlowPath::root(&self.name);
        self.orchestrate(StoreRef::exclusive(store), &path, &self.params, None)
    }

    /// Runs the flow on `store` on the current tokio runtime and returns the last
    /// action. Sync nodes run too: their `exec` goes to tokio's blocking pool.
    ///
    /// Dropping the future (a timeout, a cancelled task) stops the run at its
    /// next `await`: a sync `exec` already on the blocking pool finishes its
    /// current attempt, and an async `post` stopped halfway leaves what it wrote.
    // Spelled out so that the `Send` bound is part of the signature, not inferred.
    #[allow(clippy::manual_async_fn)]
    pub fn run_async<'a>(&'a self, store: &'a mut S) -> impl Future<Output = Result<Label, Error>> + Send + 'a {
        async move {
            let path = FlowPath::root(&self.name);
            self.orchestrate_async(AsyncStoreRef::exclusive(store), &path, &self.params, None).await
        }
    }

    pub(crate) fn orchestrate(
        &self,
        mut store: StoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Error> {
        // Checked once per run: without a subscriber, no span is made per step.
        let traced = crate::typed::tracing_on();
        let span =
            if traced { tracing::debug_span!("flow", flow = %path, steps = Empty) } else { tracing::Span::none() };
        let _entered = span.enter();
        let mut run = Run::new(self, path)?;
        loop {
            let slot = run.next_slot(self, path, cancel)?;
            let label = if traced {
                let node_span = node_span(&slot.name);
                let started = (!node_span.is_disabled()).then(Instant::now);
                let cx = StepCx { flow: path, node: &slot.name, params, cancel, span: &node_span };
                let label = node_span.in_scope(|| slot.step.run(store.reborrow(), cx))?;
                finish_span(&node_span, started, &label);
                label
            } else {
                let cx = StepCx { flow: path, node: &slot.name, params, cancel, span: crate::typed::no_span() };
                slot.step.run(store.reborrow(), cx)?
            };
            if let Some(label) = run.follow(self, path, label)? {
                span.record("steps", run.steps);
                return Ok(label);
            }
        }
    }

    pub(crate) async fn orchestrate_async(
        &self,
        mut store: AsyncStoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Error> {
        let span = tracing::debug_span!("flow", flow = %path, steps = Empty);
        async {
            let mut run = Run::new(self, path)?;
            loop {
                let slot = run.next_slot(self, path, cancel)?;
                let node_span = node_span(&slot.name);
                let started = (!node_span.is_disabled()).then(Instant::now);
                let cx = StepCx { flow: path, node: &slot.name, params, cancel, span: &node_span };
                let label = slot.step.run_async(store.reborrow(), cx).instrument(node_span.clone()).await?;
                finish_span(&node_span, started, &label);
                if let Some(label) = run.follow(self, path, label)? {
                    tracing::Span::current().record("steps", run.steps);
                    return Ok(label);
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn node_span(name: &str) -> tracing::Span {
    tracing::debug_span!("node", node = %name, action = Empty, attempts = Empty, elapsed_us = Empty)
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

/// How many recent steps a step-limit error shows.
const RECENT: usize = 8;

/// The state of one run: where it is, how many steps it took, the last few nodes.
struct Run {
    current: usize,
    steps: u64,
    recent: [usize; RECENT],
}

impl Run {
    fn new<S>(flow: &Flow<S>, path: &FlowPath<'_>) -> Result<Run, Error> {
        if flow.foreign_start {
            return Err(Error::ForeignStart { flow: path.to_string() });
        }
        match flow.start {
            Some(current) => Ok(Run { current, steps: 0, recent: [0; RECENT] }),
            None => Err(Error::NoStart { flow: path.to_string() }),
        }
    }

    /// The slot to run next, after checking the step limit and cancellation.
    fn next_slot<'f, S>(
        &mut self,
        flow: &'f Flow<S>,
        path: &FlowPath<'_>,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<&'f Slot<S>, Error> {
        if is_cancelled(cancel) {
            return Err(Error::Cancelled { flow: path.to_string() });
        }
        if let Some(limit) = flow.max_steps
            && self.steps >= limit
        {
            return Err(Error::StepLimit { flow: path.to_string(), limit, recent: self.describe_recent(flow) });
        }
        self.recent[(self.steps % RECENT as u64) as usize] = self.current;
        self.steps += 1;
        Ok(&flow.slots[self.current])
    }

    /// Moves along the edge for `label`; `Some(label)` when the flow ends here.
    fn follow<S>(&mut self, flow: &Flow<S>, path: &FlowPath<'_>, label: Label) -> Result<Option<Label>, Error> {
        let slot = &flow.slots[self.current];
        match slot.edges.iter().find(|(a, _)| *a == label) {
            Some((_, Target::Node(next))) => {
                self.current = *next;
                Ok(None)
            }
            Some((_, Target::Foreign)) => {
                Err(Error::UnknownTarget { flow: path.to_string(), node: slot.name.clone(), action: label.to_string() })
            }
            None if slot.edges.is_empty() => Ok(Some(label)),
            None => {
                let edges = EdgeList(&slot.edges);
                tracing::warn!(
                    flow = %path,
                    node = %slot.name,
                    action = %label,
                    "flow ends: action `{label}` of node `{}` has no edge (edges: {edges})",
                    slot.name
                );
                Ok(Some(label))
            }
        }
    }

    fn describe_recent<S>(&self, flow: &Flow<S>) -> String {
        let shown = self.steps.min(RECENT as u64);
        let mut names: Vec<&str> = (self.steps - shown..self.steps)
            .map(|step| flow.slots[self.recent[(step % RECENT as u64) as usize]].name.as_str())
            .collect();
        names.push(&flow.slots[self.current].name);
        let prefix = if self.steps > RECENT as u64 { "... -> " } else { "" };
        format!("{prefix}{}", names.join(" -> "))
    }
}

struct EdgeList<'a>(&'a [(Label, Target)]);

impl fmt::Display for EdgeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (action, _)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(action)?;
        }
        Ok(())
    }
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

    fn subgraph(&self, path: &str) -> Option<Graph> {
        Some(self.graph_at(path))
    }
}

impl<S> fmt::Debug for Flow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.name)
            .field("nodes", &self.slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}
