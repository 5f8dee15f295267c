//! The shape of a Python flow, as the runtime's [`Graph`] sees it, for
//! `validate()` and `to_mermaid()`.
//!
//! The model is built with a work list, never with native recursion: each flow
//! object, nested or not, is built once (a flow met again, shared or
//! containing itself, points at its first entry), so time and memory are
//! linear in the size of the graph, at any nesting depth.

use std::collections::{HashMap, VecDeque};

use minllm::graph::{Graph, GraphEdge, GraphFlow, GraphNode, Target};
use pyo3::exceptions::PyAttributeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::{NodeCore, attempts_of, is_async_node, is_flow, registry, shown, uses};
use crate::settings::{MAX_STEPS, MAX_WORKERS};

/// A problem as `validate()` hands it to Python: (message, kind, flow, node).
pub(crate) type Described = (String, &'static str, String, Option<String>);

/// The model of `flow` and the flows nested in it, and the problems only the
/// Python side can see (settings a run would refuse, async nodes in flows run
/// synchronously).
pub(crate) fn graph_of(flow: &Bound<'_, PyAny>) -> PyResult<(Graph, Vec<Described>)> {
    let mut builder = Builder::default();
    builder.add_flow(flow, flow.get_type().name()?.to_string(), None, !is_async_node(flow)?);
    let mut next = 0;
    while next < builder.pending.len() {
        let flow = builder.pending[next].clone();
        builder.build(next, &flow)?;
        next += 1;
    }
    let settings = builder
        .python_problems
        .into_iter()
        .map(|(f, node, kind, message)| {
            let flow = builder.graph.path(f);
            let message = match &node {
                Some(node) => format!("flow `{flow}`: node `{node}`: {message}"),
                None => format!("flow `{flow}`: {message}"),
            };
            (message, kind, flow, node)
        })
        .collect();
    Ok((builder.graph, settings))
}

#[derive(Default)]
struct Builder<'py> {
    graph: Graph,
    /// The flow objects, by index in `graph.flows`.
    pending: Vec<Bound<'py, PyAny>>,
    /// The index of each flow object met so far, by identity.
    flows: HashMap<usize, usize>,
    /// Whether each flow runs synchronously: a sync flow, or any flow inside
    /// one (a sync flow runs a nested async flow with `_run`, not awaited).
    run_sync: Vec<bool>,
    /// What a run would refuse that only the Python side sees (settings, async
    /// nodes in sync flows): (flow, node, kind, what is wrong).
    python_problems: Vec<(usize, Option<String>, &'static str, String)>,
}

impl<'py> Builder<'py> {
    /// The index of `flow`, added (to be built later) when it is new.
    fn add_flow(
        &mut self,
        flow: &Bound<'py, PyAny>,
        name: String,
        parent: Option<(usize, usize)>,
        run_sync: bool,
    ) -> usize {
        let next = self.pending.len();
        let index = *self.flows.entry(flow.as_ptr() as usize).or_insert(next);
        if index == next {
            self.pending.push(flow.clone());
            self.run_sync.push(run_sync);
            self.graph.flows.push(GraphFlow { name, parent, ..GraphFlow::default() });
        }
        index
    }

    /// Builds flow `f`: its nodes, breadth-first from the start, by identity.
    fn build(&mut self, f: usize, flow: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = flow.py();
        self.graph.flows[f].max_steps = match MAX_STEPS.of(flow) {
            Ok(limit) => limit,
            Err(e) => {
                self.python_problems.push((f, None, BAD_SETTING, e.value(py).to_string()));
                Some(u64::MAX) // a limit was meant: no cycle report on top
            }
        };
        let Some(start) = crate::core::attr_or_none(flow, intern!(py, "start_node"))? else { return Ok(()) };
        if !is_node(&start) {
            self.graph.flows[f].start = Some(Target::NotANode(shown(&start)));
            return Ok(());
        }
        self.graph.flows[f].start = Some(Target::Node(0));
        let mut index: HashMap<usize, usize> = HashMap::from([(start.as_ptr() as usize, 0)]);
        let mut nodes = vec![start];
        let mut names = Repeats::default();
        let mut queue = VecDeque::from([0_usize]);
        while let Some(i) = queue.pop_front() {
            let node = nodes[i].clone();
            let name = names.name(node.get_type().name()?.to_string());
            let mut edges = Vec::new();
            for (action, target) in successors(&node)? {
                let to = if is_node(&target) {
                    let next = nodes.len();
                    let t = *index.entry(target.as_ptr() as usize).or_insert(next);
                    if t == next {
                        nodes.push(target);
                        queue.push_back(t);
                    }
                    Target::Node(t)
                } else {
                    Target::NotANode(shown(&target))
                };
                let action = action.str().map_or_else(|_| shown(&action), |a| a.to_string());
                edges.push(GraphEdge { action, to, doc: Vec::new() });
            }
            let run_sync = self.run_sync[f];
            let inner = if is_flow(&node)? {
                Some(self.add_flow(&node, name.clone(), Some((f, i)), run_sync || !is_async_node(&node)?))
            } else {
                None
            };
            if let Some((kind, problem)) = refused(run_sync, &node)? {
                self.python_problems.push((f, Some(name.clone()), kind, problem));
            }
            self.graph.flows[f].nodes.push(GraphNode {
                name,
                note: None,
                declared: None,
                edges,
                inner,
                doc: Vec::new(),
            });
        }
        Ok(())
    }
}

/// The rule that names a Python flow's nodes: the first node of a name keeps
/// it, later ones get `#2`, `#3`, ... in the order a breadth-first walk from
/// the start meets them.
#[derive(Default)]
struct Repeats(HashMap<String, usize>);

impl Repeats {
    fn name(&mut self, base: String) -> String {
        let seen = self.0.entry(base.clone()).or_insert(0);
        *seen += 1;
        if *seen == 1 { base } else { format!("{base}#{seen}") }
    }
}

/// The nodes of a Python flow, breadth-first from its start, each once (by
/// identity), with the names checkpoints know them by: a node's `name`
/// attribute when it is a non-empty str, else its class name, with the
/// `#n` rule of `validate()` for repeats.
#[pyfunction]
pub(crate) fn _node_names<'py>(flow: &Bound<'py, PyAny>) -> PyResult<Vec<(Bound<'py, PyAny>, String)>> {
    let py = flow.py();
    let Some(start) = crate::core::attr_or_none(flow, intern!(py, "start_node"))? else { return Ok(Vec::new()) };
    let mut met = std::collections::HashSet::from([start.as_ptr() as usize]);
    let mut queue = VecDeque::from([start]);
    let mut names = Repeats::default();
    let mut out = Vec::new();
    while let Some(node) = queue.pop_front() {
        let own = crate::core::attr_or_none(&node, intern!(py, "name"))?
            .and_then(|n| n.extract::<String>().ok())
            .filter(|n| !n.is_empty());
        let base = match own {
            Some(name) => name,
            None => node.get_type().name()?.to_string(),
        };
        for (_, target) in successors(&node)? {
            if met.insert(target.as_ptr() as usize) {
                queue.push_back(target);
            }
        }
        out.push((node, names.name(base)));
    }
    Ok(out)
}

/// The kind of a problem with a setting (`max_steps`, `max_workers`, `max_retries`).
const BAD_SETTING: &str = "bad_setting";

/// Why a run would fail at `node` before its hooks run, if it would, and the
/// kind of problem: a setting the run refuses, or an async node in a flow run
/// synchronously.
fn refused(run_sync: bool, node: &Bound<'_, PyAny>) -> PyResult<Option<(&'static str, String)>> {
    let py = node.py();
    if let Err(e) = MAX_WORKERS.of(node) {
        return Ok(Some((BAD_SETTING, e.value(py).to_string())));
    }
    if node.cast::<NodeCore>().is_ok()
        && node.hasattr(intern!(py, "max_retries"))?
        && let Err(e) = attempts_of(node)
    {
        return Ok(Some((BAD_SETTING, format!("max_retries: {}", e.value(py)))));
    }
    if run_sync && is_async_node(node)? && uses(node, intern!(py, "_run"), &registry(py)?.async_run_refused) {
        return Ok(Some((
            "async_in_sync_flow",
            "an async node in a flow run synchronously raises \"Use run_async.\"; \
             it needs an AsyncFlow, nested only in AsyncFlows"
                .into(),
        )));
    }
    Ok(None)
}

/// Whether a run can take `obj` as a node: one of ours, or an object that
/// has what a run calls on it.
fn is_node(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    obj.cast::<NodeCore>().is_ok()
        || (obj.hasattr(intern!(py, "set_params")).unwrap_or(false)
            && obj.hasattr(intern!(py, "_run")).unwrap_or(false))
}

/// A node's `(action, successor)` pairs: its `successors` dict, or any
/// mapping with `items()` put in its place.
fn successors<'py>(node: &Bound<'py, PyAny>) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let py = node.py();
    let successors = match node.getattr(intern!(py, "successors")) {
        Ok(s) => s,
        Err(e) if e.is_instance_of::<PyAttributeError>(py) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if let Ok(dict) = successors.cast::<PyDict>() {
        return Ok(dict.iter().collect());
    }
    if successors.is_none() || !successors.hasattr(intern!(py, "items"))? {
        return Ok(Vec::new());
    }
    successors.call_method0(intern!(py, "items"))?.try_iter()?.map(|pair| pair?.extract()).collect()
}
