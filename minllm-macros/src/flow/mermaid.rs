//! The flow's graph as a Mermaid flowchart, computed while compiling by the
//! writer the runtime and the Python package use (`minllm-graph`), so that one
//! graph gets the same chart from all three.

use std::collections::HashMap;

use minllm_graph::{Graph, GraphEdge, GraphFlow, GraphNode, Target as GraphTarget};
use syn::ext::IdentExt;

use super::analyze::tokens;
use super::ast::{FlowDef, Target};
use crate::action::snake_case;

/// The chart of a flow: edges are labelled with their variant's label, an end
/// with an outcome is drawn once per outcome, and the doc comments of the
/// statements are Mermaid comments. Also made for a flow with errors, so
/// edges to undeclared nodes are drawn as what they are.
pub(crate) fn mermaid(def: &FlowDef) -> String {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, node) in def.nodes.iter().enumerate() {
        index.entry(node.name.to_string()).or_insert(i);
    }
    let target = |name: &syn::Ident| match index.get(&name.to_string()) {
        Some(&i) => GraphTarget::Node(i),
        None => GraphTarget::NotANode(name.unraw().to_string()),
    };
    let mut nodes: Vec<GraphNode> = def
        .nodes
        .iter()
        .map(|node| GraphNode { name: node.name.unraw().to_string(), doc: node.docs.clone(), ..Default::default() })
        .collect();
    for edge in &def.edges {
        let Some(&from) = index.get(&edge.from.to_string()) else { continue };
        let action = match &edge.action {
            // The variant's label, as `#[derive(Action)]` makes it by default
            // (a `rename` is not visible from here).
            Some(path) => path.segments.last().map(|s| snake_case(&s.ident.unraw().to_string())).unwrap_or_default(),
            None => minllm_graph::DEFAULT_ACTION.to_owned(),
        };
        let to = match &edge.to {
            Target::Node(name) => target(name),
            Target::End { value: Some(value), .. } => GraphTarget::Outcome(tokens(value)),
            Target::End { value: None, .. } => GraphTarget::End,
        };
        nodes[from].edges.push(GraphEdge { action, to, doc: edge.docs.clone() });
    }
    let mut doc = def.max_steps_docs.clone();
    let start = def.starts.first().map(|start| {
        doc.extend(start.docs.iter().cloned());
        target(&start.name)
    });
    let flow = GraphFlow {
        name: def.name.unraw().to_string(),
        nodes,
        start,
        max_steps: (!def.max_steps.is_empty()).then_some(u64::MAX),
        doc,
        ..Default::default()
    };
    Graph { flows: vec![flow] }.to_mermaid()
}
