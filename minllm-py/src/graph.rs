//! The shape of a Python flow, as the runtime's [`Graph`] sees it, for
//! `validate()` and `to_mermaid()`.

use std::collections::HashMap;

use minllm::graph::{Graph, GraphEdge, GraphNode};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::{NodeCore, is_flow};

/// The graph reachable from a flow's start node; nested flows become subgraphs.
pub(crate) fn graph_of(flow: &Bound<'_, PyAny>) -> PyResult<Graph> {
    let name = flow.get_type().name()?.to_string();
    graph_at(flow, &name, &mut Vec::new())
}

fn graph_at(flow: &Bound<'_, PyAny>, name: &str, open: &mut Vec<usize>) -> PyResult<Graph> {
    let py = flow.py();
    let max_steps = crate::settings::MAX_STEPS.of(flow)?;
    let mut graph = Graph { name: name.to_owned(), max_steps, ..Graph::default() };
    let start = flow.getattr(intern!(py, "start_node"))?;
    if start.is_none() {
        return Ok(graph);
    }
    // Nodes by identity, in the order a breadth-first walk finds them.
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut nodes: Vec<Bound<'_, PyAny>> = vec![start.clone()];
    index.insert(start.as_ptr() as usize, 0);
    let mut edges: Vec<Vec<(String, Option<usize>)>> = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let node = nodes[i].clone();
        let mut out = Vec::new();
        if let Ok(successors) = node.getattr(intern!(py, "successors"))
            && let Ok(successors) = successors.cast::<PyDict>()
        {
            for (action, target) in successors.iter() {
                let label = action.str()?.to_string();
                let is_node = target.cast::<NodeCore>().is_ok();
                let to = if is_node {
                    let key = target.as_ptr() as usize;
                    Some(*index.entry(key).or_insert_with(|| {
                        nodes.push(target.clone());
                        nodes.len() - 1
                    }))
                } else {
                    None
                };
                out.push((label, to));
            }
        }
        edges.push(out);
        i += 1;
    }
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for (node, out) in nodes.iter().zip(edges) {
        let class = node.get_type().name()?.to_string();
        let n = seen_names.entry(class.clone()).or_insert(0);
        *n += 1;
        let node_name = if *n == 1 { class } else { format!("{class}#{n}") };
        let key = node.as_ptr() as usize;
        let subgraph = if is_flow(node)? && !open.contains(&key) {
            open.push(key);
            let sub = graph_at(node, &format!("{name} > {node_name}"), open)?;
            open.pop();
            Some(Box::new(sub))
        } else {
            None
        };
        graph.nodes.push(GraphNode {
            name: node_name,
            note: None,
            declared: None,
            edges: out.into_iter().map(|(action, to)| GraphEdge { action, to }).collect(),
            subgraph,
        });
    }
    graph.start = Some(0);
    Ok(graph)
}
