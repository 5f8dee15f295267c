//! `Flow`: a graph of nodes built at runtime: wiring, checks, shape, and the
//! entry points of its runs (the engine itself is in [`run`]).

mod drive;
mod durable;
mod erased;
mod items;
mod run;

pub(crate) use erased::{AsyncRun, ErasedNode, Sealed};
pub use erased::{IntoNode, NodeKind};
pub(crate) use items::{Driven, Place};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::{Action, Label};
use crate::context::{FlowPath, NodeCx};
use crate::error::Error;
use crate::graph::{Graph, GraphEdge, GraphFlow, GraphNode, Problem, Target as GraphTarget};
use crate::params::Params;
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
    node: Arc<dyn ErasedNode<S>>,
    edges: Vec<(Label, Target)>,
    /// The node is a nested flow, which runs in place.
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
/// itself a node: add it to another flow with [`add`](Flow::add); nested flows
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

    /// Adds a node under `name` and returns its id for wiring: a [`Node`](crate::Node),
    /// an [`AsyncNode`](crate::AsyncNode), a [`BatchNode`](crate::BatchNode), an
    /// [`AsyncBatchNode`](crate::AsyncBatchNode), a nested `Flow`, a
    /// [`BatchFlow`](crate::BatchFlow) or a flow made by `flow!`. The first node
    /// added is the start node until [`start`](Flow::start) says otherwise.
    pub fn add<M>(&mut self, name: impl Into<String>, node: impl IntoNode<S, M>) -> NodeId {
        let name = name.into();
        let index = self.slots.len();
        self.names.entry(name.clone()).or_insert(index);
        let node = node.into_node();
        let nested = node.kind() == NodeKind::Flow && node.inner_flow().is_some();
        self.slots.push(Slot { name, node, edges: Vec::new(), nested });
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
                    note: note(slot.node.kind()),
                    declared: slot.node.declared_actions().map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
                    edges: slot
                        .edges
                        .iter()
                        .map(|(action, target)| GraphEdge {
                            action: action.to_string(),
                            to: target.shape(),
                            doc: Vec::new(),
                        })
                        .collect(),
                    inner: None,
                    doc: Vec::new(),
                })
                .collect();
            // Reversed, so that nested flows come out in the order of their nodes.
            for (i, slot) in flow.slots.iter().enumerate().rev() {
                if let Some(inner) = slot.node.inner_flow() {
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
                doc: Vec::new(),
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

    /// Refuses a run that cannot work ([`Problem::is_fatal`]: no start, a loop
    /// without a limit, an edge that leads nowhere, ..., here or in a nested
    /// flow). Worked out once per flow, not once per run.
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
        let mut todo: Vec<&Flow<S>> = self.slots.iter().filter_map(|slot| slot.node.inner_flow()).collect();
        while let Some(flow) = todo.pop() {
            // A flow already known to be fine was marked with all it holds.
            if flow.refusal.set(None).is_ok() {
                todo.extend(flow.slots.iter().filter_map(|slot| slot.node.inner_flow()));
            }
        }
    }

    /// Runs the flow on `store` and returns the last action.
    ///
    /// Before the first node, the flow is checked once (the result is kept
    /// until the flow changes): a flow that cannot work does not run, here or
    /// in a nested flow ([`Problem::is_fatal`]: no start, a cycle with neither
    /// a step limit nor [`unbounded`](Flow::unbounded), a step limit of 0, an
    /// edge to a node of another flow, an action a node declares with no edge
    /// for it, ...); the error names the first problem. What
    /// [`validate`](Flow::validate) reports besides (unreachable nodes, edges
    /// for actions never returned) are warnings. Async nodes cannot run here: they make the
    /// run fail with [`Error::AsyncInSyncRun`]; use [`run_async`](Flow::run_async)
    /// for them.
    pub fn run(&self, store: &mut S) -> Result<Label, Error> {
        let path = FlowPath::root(&self.name);
        self.orchestrate(StoreRef::exclusive(store), &path, &self.params, None)
    }

    /// Runs the flow on `store` on the current tokio runtime and returns the last
    /// action. Sync nodes run too: their `prep` and `post` in place, their
    /// `exec` on tokio's blocking pool, or in place when
    /// [`Node::exec_blocks`](crate::Node::exec_blocks) says it is quick.
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
            self.orchestrate_async(AsyncStoreRef::exclusive(store), &path, &self.params, None).await.map_err(|e| *e)
        }
    }
}

impl Target {
    fn shape(&self) -> GraphTarget {
        match self {
            Target::Node(i) => GraphTarget::Node(*i),
            Target::End => GraphTarget::End,
            Target::Foreign => GraphTarget::Foreign,
        }
    }
}

fn note(kind: NodeKind) -> Option<String> {
    let note = match kind {
        NodeKind::Node | NodeKind::Flow | NodeKind::Other => return None,
        NodeKind::AsyncNode => "async",
        NodeKind::Batch => "batch",
        NodeKind::ParallelBatch => "parallel batch",
        NodeKind::AsyncBatch => "async batch",
        NodeKind::ConcurrentBatch => "concurrent batch",
        NodeKind::BatchFlow => "batch flow",
    };
    Some(note.to_owned())
}

impl<S: Send + Sync + 'static> ErasedNode<S> for Flow<S> {
    fn run(&self, store: StoreRef<'_, S>, cx: NodeCx<'_>) -> Result<Label, Error> {
        let path = cx.flow.child(cx.node, None);
        self.orchestrate(store, &path, &self.params.merged(cx.params), cx.cancel)
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: &'a NodeCx<'a>) -> AsyncRun<'a> {
        Box::pin(async move {
            let path = cx.flow.child(cx.node, None);
            self.orchestrate_async(store, &path, &self.params.merged(cx.params), cx.cancel).await
        })
    }

    fn kind(&self) -> NodeKind {
        NodeKind::Flow
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn inner_flow(&self) -> Option<&Flow<S>> {
        Some(self)
    }

    fn detach_inner(&mut self, into: &mut Vec<Arc<dyn ErasedNode<S>>>) {
        into.extend(self.slots.drain(..).map(|slot| slot.node));
    }
}

impl<S: 'static> Drop for Flow<S> {
    /// Takes nested flows apart with a loop: dropping a flow nested a hundred
    /// thousand levels deep must not recurse once per level.
    fn drop(&mut self) {
        let mut pending: Vec<Arc<dyn ErasedNode<S>>> = self.slots.drain(..).map(|slot| slot.node).collect();
        while let Some(mut node) = pending.pop() {
            if let Some(node) = Arc::get_mut(&mut node) {
                node.detach_inner(&mut pending);
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
