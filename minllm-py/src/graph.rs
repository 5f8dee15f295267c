//! The shape of a Python flow, as the runtime's [`Graph`] sees it, for
//! `validate()` and `to_mermaid()`.
//!
//! Built with loops over an explicit list of flows to visit: a flow nested
//! thousands of levels deep, or one that contains itself, costs memory linear
//! in its size and never recursion.

use std::collections::HashMap;

use minllm::graph::{Graph, GraphEdge, GraphFlow, GraphNode, Target};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::{NodeCore, is_flow};
use crate::settings::{MAX_STEPS, MAX_WORKERS};

/// The graph reachable from a flow's start node; nested flows become entries
/// of their own, each built once however often it is met. With it, the
/// settings that a run would refuse, as problems.
pub(crate) fn graph_of(flow: &Bound<'_, PyAny>) -> PyResult<(Graph, Vec<String>)> {
    let mut graph = Graph::default();
    // Bad settings: the flow's index, the node's name if a node has it, the error.
    let mut settings: Vec<(usize, Option<String>, String)> = Vec::new();
    // Flows already built, by identity.
    let mut built: HashMap<usize, usize> = HashMap::new();
    let mut todo: Vec<(Bound<'_, PyAny>, String, Option<(usize, usize)>)> =
        vec![(flow.clone(), flow.get_type().name()?.to_string(), None)];
    while let Some((flow, name, parent)) = todo.pop() {
        let key = flow.as_ptr() as usize;
        if let Some(&f) = built.get(&key) {
            if let Some((p, n)) = parent {
                graph.flows[p].nodes[n].inner = Some(f);
            }
            continue;
        }
        let f = graph.flows.len();
        built.insert(key, f);
        if let Some((p, n)) = parent {
            graph.flows[p].nodes[n].inner = Some(f);
        }
        let (shape, nested) = flow_shape(&flow, name, parent, &mut |node, error| settings.push((f, node, error)))?;
        graph.flows.push(shape);
        // Reversed, so that nested flows come out in the order of their nodes.
        for (i, node, name) in nested.into_iter().rev() {
            todo.push((node, name, Some((f, i))));
        }
    }
    let settings = settings
        .into_iter()
        .map(|(f, node, error)| match node {
            Some(node) => format!("flow `{}`: node `{node}`: {error}", graph.path(f)),
            None => format!("flow `{}`: {error}", graph.path(f)),
        })
        .collect();
    Ok((graph, settings))
}

/// One flow's nodes, found by a breadth-first walk from its start, and the
/// nodes among them that are flows (index, object, name).
#[allow(clippy::type_complexity)]
fn flow_shape<'py>(
    flow: &Bound<'py, PyAny>,
    name: String,
    parent: Option<(usize, usize)>,
    bad_setting: &mut dyn FnMut(Option<String>, String),
) -> PyResult<(GraphFlow, Vec<(usize, Bound<'py, PyAny>, String)>)> {
    let py = flow.py();
    let max_steps = MAX_STEPS.of(flow).unwrap_or_else(|e| {
        bad_setting(None, e.value(py).to_string());
        None
    });
    let mut shape = GraphFlow { name, parent, max_steps, ..GraphFlow::default() };
    let start = match flow.getattr(intern!(py, "start_node")) {
        Ok(start) if !start.is_none() => start,
        _ => return Ok((shape, Vec::new())),
    };
    if start.cast::<NodeCore>().is_err() {
        shape.start = Some(Target::NotANode(start.repr()?.to_string()));
        return Ok((shape, Vec::new()));
    }
    shape.start = Some(Target::Node(0));
    // Nodes by identity, in the order a breadth-first walk finds them.
    let mut index: HashMap<usize, usize> = HashMap::from([(start.as_ptr() as usize, 0)]);
    let mut nodes: Vec<Bound<'py, PyAny>> = vec![start];
    let mut i = 0;
    while i < nodes.len() {
        let node = nodes[i].clone();
        let mut edges = Vec::new();
        if let Ok(successors) = node.getattr(intern!(py, "successors"))
            && let Ok(successors) = successors.cast::<PyDict>()
        {
            for (action, target) in successors.iter() {
                let action = action.str()?.to_string();
                let to = if target.cast::<NodeCore>().is_ok() {
                    let key = target.as_ptr() as usize;
                    Target::Node(*index.entry(key).or_insert_with(|| {
                        nodes.push(target.clone());
                        nodes.len() - 1
                    }))
                } else {
                    Target::NotANode(target.repr()?.to_string())
                };
                edges.push(GraphEdge { action, to });
            }
        }
        shape.nodes.push(GraphNode { edges, ..GraphNode::default() });
        i += 1;
    }
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut nested = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let class = node.get_type().name()?.to_string();
        let n = seen_names.entry(class.clone()).or_insert(0);
        *n += 1;
        let name = if *n == 1 { class } else { format!("{class}#{n}") };
        if is_flow(node)? {
            nested.push((i, node.clone(), name.clone()));
        }
        if let Err(e) = MAX_WORKERS.of(node) {
            bad_setting(Some(name.clone()), e.value(py).to_string());
        }
        shape.nodes[i].name = name;
    }
    Ok((shape, nested))
}
