//! A flow's shape, apart from what it runs: the model that validation and Mermaid
//! diagrams work on. Runtime-built flows and the Python package both produce it.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

/// The shape of a flow: its nodes, their edges, its start and step limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// The flow's name (its path, for nested flows).
    pub name: String,
    /// The nodes, in the order they were added.
    pub nodes: Vec<GraphNode>,
    /// The index of the start node.
    pub start: Option<usize>,
    /// The step limit, if any.
    pub max_steps: Option<u64>,
}

/// One node of a [`Graph`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphNode {
    /// The node's name.
    pub name: String,
    /// A short note shown in diagrams next to the name (e.g. `parallel batch`).
    pub note: Option<String>,
    /// Every action the node can return, when known.
    pub declared: Option<Vec<String>>,
    /// The edges leaving the node.
    pub edges: Vec<GraphEdge>,
    /// The inner flow, for nested flows.
    pub subgraph: Option<Box<Graph>>,
}

/// One edge of a [`Graph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEdge {
    /// The action that selects the edge.
    pub action: String,
    /// The index of the target node, or `None` when it is not in this flow.
    pub to: Option<usize>,
}

/// A problem [`Flow::validate`](crate::Flow::validate) found in a flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The flow has no start node.
    #[error("flow `{flow}` has no start node")]
    NoStart {
        /// The flow path.
        flow: String,
    },
    /// An edge leads to a node of another flow.
    #[error("flow `{flow}`: the edge from `{node}` on action `{action}` leads to a node that is not in this flow")]
    UnknownTarget {
        /// The flow path.
        flow: String,
        /// The node the edge leaves.
        node: String,
        /// The edge's action.
        action: String,
    },
    /// `Flow::start` was given a node of another flow.
    #[error("flow `{flow}`: the start node given to `Flow::start` belongs to another flow")]
    ForeignStart {
        /// The flow path.
        flow: String,
    },
    /// An edge starts from a node of another flow; it was not added.
    #[error("flow `{flow}`: an edge on action `{action}` starts from a node of another flow; it was not added")]
    ForeignEdge {
        /// The flow path.
        flow: String,
        /// The edge's action.
        action: String,
    },
    /// A step limit of 0: no node can run.
    #[error("flow `{flow}` has a step limit of 0, so no node can run")]
    ZeroStepLimit {
        /// The flow path.
        flow: String,
    },
    /// Two nodes share a name.
    #[error("flow `{flow}`: the name `{node}` is given to more than one node")]
    DuplicateName {
        /// The flow path.
        flow: String,
        /// The repeated name.
        node: String,
    },
    /// An edge was set twice for the same node and action; the later one is kept.
    #[error("flow `{flow}`: node `{node}` has two edges for action `{action}`; the later one replaced the first")]
    DuplicateEdge {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The action.
        action: String,
    },
    /// No path from the start node reaches this node.
    #[error("flow `{flow}`: node `{node}` is unreachable from the start node `{start}`")]
    Unreachable {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The start node.
        start: String,
    },
    /// A node can return an action that has no edge, while it has other edges:
    /// the flow would end there with a warning.
    #[error("flow `{flow}`: node `{node}` can return action `{action}` but has no edge for it (its edges: {})", edges.join(", "))]
    MissingEdge {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The action without an edge.
        action: String,
        /// The actions that have edges.
        edges: Vec<String>,
    },
    /// An edge for an action the node never returns.
    #[error("flow `{flow}`: node `{node}` has an edge for action `{action}`, which it never returns (it returns: {})", declared.join(", "))]
    UnknownAction {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The edge's action.
        action: String,
        /// The actions the node can return.
        declared: Vec<String>,
    },
    /// A cycle in a flow without a step limit.
    #[error("flow `{flow}` has a cycle {} and no step limit; set one with `max_steps`", path.join(" -> "))]
    UnboundedCycle {
        /// The flow path.
        flow: String,
        /// The cycle, first node repeated at the end: `decide -> search -> decide`.
        path: Vec<String>,
    },
}

impl Graph {
    /// Every problem of this flow and the flows nested in it.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.validate_into(&mut problems);
        problems
    }

    fn validate_into(&self, problems: &mut Vec<Problem>) {
        let flow = &self.name;
        for node in &self.nodes {
            for edge in node.edges.iter().filter(|e| e.to.is_none()) {
                problems.push(Problem::UnknownTarget {
                    flow: flow.clone(),
                    node: node.name.clone(),
                    action: edge.action.clone(),
                });
            }
            self.check_actions(node, problems);
        }
        if self.max_steps == Some(0) {
            problems.push(Problem::ZeroStepLimit { flow: flow.clone() });
        }
        match self.start.filter(|&s| s < self.nodes.len()) {
            None => problems.push(Problem::NoStart { flow: flow.clone() }),
            Some(start) => {
                let reached = self.reachable(start);
                for (i, node) in self.nodes.iter().enumerate() {
                    if !reached[i] {
                        problems.push(Problem::Unreachable {
                            flow: flow.clone(),
                            node: node.name.clone(),
                            start: self.nodes[start].name.clone(),
                        });
                    }
                }
                if self.max_steps.is_none() {
                    for cycle in self.cycles(start) {
                        let path = cycle.iter().map(|&i| self.nodes[i].name.clone()).collect();
                        problems.push(Problem::UnboundedCycle { flow: flow.clone(), path });
                    }
                }
            }
        }
        for node in &self.nodes {
            if let Some(sub) = &node.subgraph {
                sub.validate_into(problems);
            }
        }
    }

    fn check_actions(&self, node: &GraphNode, problems: &mut Vec<Problem>) {
        let Some(declared) = &node.declared else { return };
        if node.edges.is_empty() {
            return; // a node without edges ends the flow, whatever it returns
        }
        let has_edge = |a: &str| node.edges.iter().any(|e| e.action == a);
        for action in declared.iter().filter(|a| !has_edge(a)) {
            problems.push(Problem::MissingEdge {
                flow: self.name.clone(),
                node: node.name.clone(),
                action: action.clone(),
                edges: node.edges.iter().map(|e| e.action.clone()).collect(),
            });
        }
        for edge in node.edges.iter().filter(|e| !declared.contains(&e.action)) {
            problems.push(Problem::UnknownAction {
                flow: self.name.clone(),
                node: node.name.clone(),
                action: edge.action.clone(),
                declared: declared.clone(),
            });
        }
    }

    fn successors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes[i].edges.iter().filter_map(|e| e.to).filter(|&t| t < self.nodes.len())
    }

    fn reachable(&self, start: usize) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(i) = queue.pop_front() {
            for next in self.successors(i) {
                if !seen[next] {
                    seen[next] = true;
                    queue.push_back(next);
                }
            }
        }
        seen
    }

    /// The cycles reachable from `start`, one per back edge of a depth-first
    /// search, each as a node path that repeats its first node at the end.
    fn cycles(&self, start: usize) -> Vec<Vec<usize>> {
        if start >= self.nodes.len() {
            return Vec::new();
        }
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let mut mark = vec![Mark::New; self.nodes.len()];
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(start, self.successors(start).collect())];
        mark[start] = Mark::OnStack;
        let mut cycles = Vec::new();
        let mut seen: HashSet<Vec<usize>> = HashSet::new();
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) if mark[next] == Mark::OnStack => {
                    let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                    let mut key = cycle.clone();
                    let min = key.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
                    key.rotate_left(min);
                    if seen.insert(key) {
                        cycle.push(next);
                        cycles.push(cycle);
                    }
                }
                Some(next) if mark[next] == Mark::New => {
                    mark[next] = Mark::OnStack;
                    let succ = self.successors(next).collect();
                    stack.push((next, succ));
                }
                Some(_) => {}
                None => {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        cycles
    }

    /// The flow as a Mermaid `flowchart`, nested flows as subgraphs.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        self.mermaid_body(&mut out, "n", 1);
        out
    }

    fn mermaid_body(&self, out: &mut String, prefix: &str, depth: usize) {
        let indent = "    ".repeat(depth);
        let id = |i: usize| format!("{prefix}{i}");
        for (i, node) in self.nodes.iter().enumerate() {
            let label = match &node.note {
                Some(note) => format!("{} ({})", escape(&node.name), escape(note)),
                None => escape(&node.name),
            };
            match &node.subgraph {
                Some(sub) => {
                    let _ = writeln!(out, "{indent}subgraph {} [\"{label}\"]", id(i));
                    sub.mermaid_body(out, &format!("{}_", id(i)), depth + 1);
                    let _ = writeln!(out, "{indent}end");
                }
                None => {
                    let _ = writeln!(out, "{indent}{}[\"{label}\"]", id(i));
                }
            }
        }
        if let Some(start) = self.start {
            let _ = writeln!(out, "{indent}{prefix}start(( )) --> {}", id(start));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for edge in &node.edges {
                let Some(to) = edge.to else { continue };
                if edge.action == crate::action::DEFAULT_ACTION {
                    let _ = writeln!(out, "{indent}{} --> {}", id(i), id(to));
                } else {
                    let _ = writeln!(out, "{indent}{} -->|\"{}\"| {}", id(i), escape(&edge.action), id(to));
                }
            }
        }
    }
}

/// Escapes text for a quoted Mermaid label.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '|' => out.push_str("#124;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, edges: &[(&str, usize)]) -> GraphNode {
        GraphNode {
            name: name.into(),
            edges: edges.iter().map(|(a, t)| GraphEdge { action: (*a).into(), to: Some(*t) }).collect(),
            ..GraphNode::default()
        }
    }

    #[test]
    fn finds_each_cycle_once_as_a_path() {
        let g = Graph {
            name: "agent".into(),
            nodes: vec![
                node("decide", &[("search", 1), ("answer", 2)]),
                node("search", &[("default", 0)]),
                node("answer", &[]),
            ],
            start: Some(0),
            max_steps: None,
        };
        assert_eq!(
            g.validate(),
            [Problem::UnboundedCycle {
                flow: "agent".into(),
                path: vec!["decide".into(), "search".into(), "decide".into()]
            }]
        );
        assert_eq!(
            g.validate()[0].to_string(),
            "flow `agent` has a cycle decide -> search -> decide and no step limit; set one with `max_steps`"
        );
        let bounded = Graph { max_steps: Some(10), ..g };
        assert!(bounded.validate().is_empty());
    }

    #[test]
    fn self_loop_and_unreachable() {
        let g = Graph {
            name: "f".into(),
            nodes: vec![node("a", &[("again", 0)]), node("b", &[])],
            start: Some(0),
            max_steps: None,
        };
        let p = g.validate();
        assert!(p.contains(&Problem::Unreachable { flow: "f".into(), node: "b".into(), start: "a".into() }));
        assert!(p.contains(&Problem::UnboundedCycle { flow: "f".into(), path: vec!["a".into(), "a".into()] }));
    }

    #[test]
    fn mermaid_escapes_labels() {
        let g = Graph {
            name: "f".into(),
            nodes: vec![node("say \"hi\" <b>", &[("a|b", 1)]), node("end#1", &[])],
            start: Some(0),
            max_steps: None,
        };
        let m = g.to_mermaid();
        assert!(m.contains(r#"n0["say #quot;hi#quot; #lt;b#gt;"]"#), "{m}");
        assert!(m.contains(r#"n0 -->|"a#124;b"| n1"#), "{m}");
        assert!(m.contains(r#"n1["end#35;1"]"#), "{m}");
    }
}
