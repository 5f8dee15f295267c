//! A flow's shape, apart from what it runs: the model that validation and Mermaid
//! diagrams work on, and those rules, written once. The runtime (`minllm`, where
//! this crate is `minllm::graph`) builds the model from a `Flow`, the Python
//! package from its node objects, and the flow compiler (`flow!`) from its
//! declarations while the program compiles; so one graph gets the same problems
//! and the same diagram from all three. It has no dependencies.
//!
//! The model is flat: every flow, nested ones included, is one entry of
//! [`Graph::flows`], and a node that holds a nested flow points at its entry.
//! Validation and drawing walk it with loops, never with native recursion, so a
//! flow nested a hundred thousand levels deep costs memory and time linear in
//! its size and never overflows the stack.

use std::collections::{HashMap, VecDeque};

/// The action of a default edge (`a >> b`), which diagrams draw without a label.
#[doc(hidden)]
pub const DEFAULT_ACTION: &str = "default";

mod mermaid;
mod problem;

pub use problem::Problem;

/// The shape of a flow and of every flow nested in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// The flows: the outermost one first, then the nested ones. A flow met
    /// more than once (shared, or containing itself) has one entry, which every
    /// node that holds it points at.
    pub flows: Vec<GraphFlow>,
}

/// One flow of a [`Graph`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphFlow {
    /// The flow's own name: the outermost flow's name, or the name of the node
    /// that holds it. [`Graph::path`] gives the full path.
    pub name: String,
    /// The node holding this flow where it was first met, as (flow, node)
    /// indices; `None` for the outermost flow.
    pub parent: Option<(usize, usize)>,
    /// The nodes, in the order they were added.
    pub nodes: Vec<GraphNode>,
    /// Where a run starts; `None` when no start was given.
    pub start: Option<Target>,
    /// The step limit, if any.
    pub max_steps: Option<u64>,
    /// The flow's loops are meant to run without a step limit.
    pub unbounded: bool,
    /// Comment lines about the flow (its doc comments), drawn as Mermaid
    /// comments at the top of the flow.
    pub doc: Vec<String>,
}

/// One node of a [`GraphFlow`].
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
    /// The index in [`Graph::flows`] of the flow this node runs, for nested flows.
    pub inner: Option<usize>,
    /// Comment lines about the node, drawn as Mermaid comments above it.
    pub doc: Vec<String>,
}

/// One edge of a [`GraphNode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphEdge {
    /// The action that selects the edge.
    pub action: String,
    /// Where it leads.
    pub to: Target,
    /// Comment lines about the edge, drawn as Mermaid comments above it.
    pub doc: Vec<String>,
}

/// Where an edge (or a flow's start) leads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// The node at this index of the same flow.
    Node(usize),
    /// The end of the flow: the action is declared as one of its outcomes.
    #[default]
    End,
    /// The end of the flow with an outcome, as written (`flow!`'s
    /// `end(Outcome::Found)`); each distinct outcome is its own end in diagrams.
    Outcome(String),
    /// A node that belongs to another flow.
    Foreign,
    /// Something that is not a node at all, shown as written (e.g. `5`).
    NotANode(String),
}

impl Graph {
    /// The outermost flow.
    pub fn root(&self) -> Option<&GraphFlow> {
        self.flows.first()
    }

    /// The path of flow `flow` from the outermost one: `outer > batch > inner`.
    pub fn path(&self, flow: usize) -> String {
        let mut names = Vec::new();
        let mut at = Some(flow);
        while let Some(f) = at.filter(|&f| f < self.flows.len()) {
            names.push(self.flows[f].name.as_str());
            // A parent that does not come before its child would be a loop of parents.
            at = self.flows[f].parent.map(|(p, _)| p).filter(|&p| p < f);
        }
        names.reverse();
        names.join(" > ")
    }

    /// Every problem of this flow and the flows nested in it, outer flows first.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for f in 0..self.flows.len() {
            self.validate_flow(f, &mut problems);
        }
        self.containment_cycles(&mut problems);
        problems
    }

    fn validate_flow(&self, f: usize, problems: &mut Vec<Problem>) {
        let flow = &self.flows[f];
        // Made only for a problem: a path is as long as the nesting is deep.
        let path_cell = std::cell::OnceCell::new();
        let path = || path_cell.get_or_init(|| self.path(f)).clone();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for node in &flow.nodes {
            let count = names.entry(node.name.as_str()).or_insert(0);
            *count += 1;
            if *count == 2 {
                problems.push(Problem::DuplicateName { flow: path(), node: node.name.clone() });
            }
        }
        for node in &flow.nodes {
            for edge in &node.edges {
                match &edge.to {
                    Target::Node(i) if *i < flow.nodes.len() => {}
                    Target::End | Target::Outcome(_) => {}
                    Target::NotANode(target) => problems.push(Problem::NotANode {
                        flow: path(),
                        node: node.name.clone(),
                        action: edge.action.clone(),
                        target: target.clone(),
                    }),
                    Target::Node(_) | Target::Foreign => problems.push(Problem::UnknownTarget {
                        flow: path(),
                        node: node.name.clone(),
                        action: edge.action.clone(),
                    }),
                }
            }
            check_actions(&path, node, problems);
        }
        if flow.max_steps == Some(0) {
            problems.push(Problem::ZeroStepLimit { flow: path() });
        }
        let start = match &flow.start {
            Some(Target::Node(s)) if *s < flow.nodes.len() => *s,
            Some(Target::Foreign) => return problems.push(Problem::ForeignStart { flow: path() }),
            Some(Target::NotANode(start)) => {
                return problems.push(Problem::StartNotANode { flow: path(), start: start.clone() });
            }
            _ => return problems.push(Problem::NoStart { flow: path() }),
        };
        let reached = flow.reachable(start);
        for (i, node) in flow.nodes.iter().enumerate() {
            if !reached[i] {
                problems.push(Problem::Unreachable {
                    flow: path(),
                    node: node.name.clone(),
                    start: flow.nodes[start].name.clone(),
                });
            }
        }
        if flow.max_steps.is_none() && !flow.unbounded {
            for cycle in flow.cycles(start) {
                let cycle = cycle.iter().map(|&i| flow.nodes[i].name.clone()).collect();
                problems.push(Problem::UnboundedCycle { flow: path(), path: cycle });
            }
        }
    }

    /// Reports each node that holds a flow containing it: a back edge of a
    /// depth-first walk over "flow holds flow", done with an explicit stack.
    fn containment_cycles(&self, problems: &mut Vec<Problem>) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let mut mark = vec![Mark::New; self.flows.len()];
        for root in 0..self.flows.len() {
            if mark[root] != Mark::New {
                continue;
            }
            mark[root] = Mark::Open;
            let mut stack = vec![(root, 0_usize)];
            while let Some((f, next)) = stack.last_mut() {
                let f = *f;
                let Some(node) = self.flows[f].nodes.get(*next) else {
                    mark[f] = Mark::Done;
                    stack.pop();
                    continue;
                };
                *next += 1;
                let Some(inner) = node.inner.filter(|&k| k < self.flows.len()) else { continue };
                match mark[inner] {
                    Mark::Open => problems.push(Problem::ContainsItself {
                        flow: self.path(f),
                        node: node.name.clone(),
                        contained: self.path(inner),
                    }),
                    Mark::New => {
                        mark[inner] = Mark::Open;
                        stack.push((inner, 0));
                    }
                    Mark::Done => {}
                }
            }
        }
    }
}

impl GraphFlow {
    fn successors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes[i].edges.iter().filter_map(|e| match e.to {
            Target::Node(t) if t < self.nodes.len() => Some(t),
            _ => None,
        })
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
        const NOT_ON_STACK: usize = usize::MAX;
        let mut depth_of = vec![NOT_ON_STACK; self.nodes.len()];
        let mut done = vec![false; self.nodes.len()];
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        depth_of[start] = 0;
        let mut cycles = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            let Some(e) = self.nodes[node].edges.get(*edge) else {
                depth_of[node] = NOT_ON_STACK;
                done[node] = true;
                stack.pop();
                continue;
            };
            *edge += 1;
            let Target::Node(next) = e.to else { continue };
            if next >= self.nodes.len() {
                continue;
            }
            if depth_of[next] != NOT_ON_STACK {
                let mut cycle: Vec<usize> = stack[depth_of[next]..].iter().map(|&(n, _)| n).collect();
                let mut key = cycle.clone();
                let min = key.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
                key.rotate_left(min);
                if seen.insert(key) {
                    cycle.push(next);
                    cycles.push(cycle);
                }
            } else if !done[next] {
                depth_of[next] = stack.len();
                stack.push((next, 0));
            }
        }
        cycles
    }
}

fn check_actions(flow: &dyn Fn() -> String, node: &GraphNode, problems: &mut Vec<Problem>) {
    let Some(declared) = &node.declared else { return };
    if node.edges.is_empty() {
        return; // a node without edges ends the flow, whatever it returns
    }
    let has_edge = |a: &str| node.edges.iter().any(|e| e.action == a);
    for action in declared.iter().filter(|a| !has_edge(a)) {
        problems.push(Problem::MissingEdge {
            flow: flow(),
            node: node.name.clone(),
            action: action.clone(),
            edges: node.edges.iter().map(|e| e.action.clone()).collect(),
        });
    }
    for edge in node.edges.iter().filter(|e| !declared.contains(&e.action)) {
        problems.push(Problem::UnknownAction {
            flow: flow(),
            node: node.name.clone(),
            action: edge.action.clone(),
            declared: declared.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
