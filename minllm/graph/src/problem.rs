//! The problems validation finds: what each means, how it reads, and how to
//! sort them without matching on them.

use std::fmt;

/// A problem [`Graph::validate`](crate::Graph::validate) found in a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The flow has no start node.
    NoStart {
        /// The flow path.
        flow: String,
    },
    /// An edge leads to a node of another flow.
    UnknownTarget {
        /// The flow path.
        flow: String,
        /// The node the edge leaves.
        node: String,
        /// The edge's action.
        action: String,
    },
    /// An edge leads to something that is not a node.
    NotANode {
        /// The flow path.
        flow: String,
        /// The node the edge leaves.
        node: String,
        /// The edge's action.
        action: String,
        /// The target, as written.
        target: String,
    },
    /// `Flow::start` was given a node of another flow.
    ForeignStart {
        /// The flow path.
        flow: String,
    },
    /// The start is not a node.
    StartNotANode {
        /// The flow path.
        flow: String,
        /// The start, as written.
        start: String,
    },
    /// A flow contains itself, directly or through other flows: running it
    /// would never end.
    ContainsItself {
        /// The path of the flow holding the node.
        flow: String,
        /// The node.
        node: String,
        /// The path of the flow the node is.
        contained: String,
    },
    /// An edge starts from a node of another flow; it was not added.
    ForeignEdge {
        /// The flow path.
        flow: String,
        /// The edge's action.
        action: String,
    },
    /// A step limit of 0: no node can run.
    ZeroStepLimit {
        /// The flow path.
        flow: String,
    },
    /// Two nodes share a name.
    DuplicateName {
        /// The flow path.
        flow: String,
        /// The repeated name.
        node: String,
    },
    /// An edge was set twice for the same node and action; the later one is kept.
    DuplicateEdge {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The action.
        action: String,
    },
    /// No path from the start node reaches this node.
    Unreachable {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The start node.
        start: String,
    },
    /// A node can return an action that has no edge, while it has other edges:
    /// a run that returns it fails, unless the action is declared an end.
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
    UnboundedCycle {
        /// The flow path.
        flow: String,
        /// The cycle, first node repeated at the end: `decide -> search -> decide`.
        path: Vec<String>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoStart { flow } => write!(f, "flow `{flow}` has no start node"),
            Problem::UnknownTarget { action, flow, node } => {
                write!(f, "flow `{flow}`: the edge from `{node}` on action `{action}` leads to a node of another flow")
            }
            Problem::NotANode { action, flow, node, target } => write!(
                f,
                "flow `{flow}`: the successor of `{node}` for action `{action}` is `{target}`, and `{target}` is not a node"
            ),
            Problem::ForeignStart { flow } => {
                write!(f, "flow `{flow}`: the start node given to `Flow::start` belongs to another flow")
            }
            Problem::StartNotANode { flow, start } => {
                write!(f, "flow `{flow}`: its start is `{start}`, and `{start}` is not a node")
            }
            Problem::ContainsItself { contained, flow, node } => write!(
                f,
                "flow `{flow}`: node `{node}` is the flow `{contained}`, which contains it; a flow that contains itself never ends"
            ),
            Problem::ForeignEdge { action, flow } => write!(
                f,
                "flow `{flow}`: an edge on action `{action}` starts from a node of another flow; it was not added"
            ),
            Problem::ZeroStepLimit { flow } => write!(f, "flow `{flow}` has a step limit of 0, so no node can run"),
            Problem::DuplicateName { flow, node } => {
                write!(f, "flow `{flow}`: the name `{node}` is given to more than one node")
            }
            Problem::DuplicateEdge { action, flow, node } => write!(
                f,
                "flow `{flow}`: node `{node}` has two edges for action `{action}`; the later one replaced the first"
            ),
            Problem::Unreachable { flow, node, start } => {
                write!(f, "flow `{flow}`: node `{node}` is unreachable from the start node `{start}`")
            }
            Problem::MissingEdge { action, edges, flow, node } => write!(
                f,
                "flow `{flow}`: node `{node}` can return action `{action}` but has no edge for it (its edges: {})",
                edges.join(", ")
            ),
            Problem::UnknownAction { action, declared, flow, node } => write!(
                f,
                "flow `{flow}`: node `{node}` has an edge for action `{action}`, which it never returns (it returns: {})",
                declared.join(", ")
            ),
            Problem::UnboundedCycle { flow, path } => write!(
                f,
                "flow `{flow}` has a cycle {} and no step limit; set one with `max_steps`, or mark the flow `unbounded`",
                path.join(" -> ")
            ),
        }
    }
}

impl std::error::Error for Problem {}

impl Problem {
    /// What kind of problem it is, in snake_case (`"unbounded_cycle"`): the
    /// variant's name, for code that sorts problems without matching on them
    /// (the Python package gives it as `Problem.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NoStart { .. } => "no_start",
            Problem::UnknownTarget { .. } => "unknown_target",
            Problem::NotANode { .. } => "not_a_node",
            Problem::ForeignStart { .. } => "foreign_start",
            Problem::StartNotANode { .. } => "start_not_a_node",
            Problem::ContainsItself { .. } => "contains_itself",
            Problem::ForeignEdge { .. } => "foreign_edge",
            Problem::ZeroStepLimit { .. } => "zero_step_limit",
            Problem::DuplicateName { .. } => "duplicate_name",
            Problem::DuplicateEdge { .. } => "duplicate_edge",
            Problem::Unreachable { .. } => "unreachable",
            Problem::MissingEdge { .. } => "missing_edge",
            Problem::UnknownAction { .. } => "unknown_action",
            Problem::UnboundedCycle { .. } => "unbounded_cycle",
        }
    }

    /// The path of the flow the problem is in.
    pub fn flow(&self) -> &str {
        match self {
            Problem::NoStart { flow }
            | Problem::UnknownTarget { flow, .. }
            | Problem::NotANode { flow, .. }
            | Problem::ForeignStart { flow }
            | Problem::StartNotANode { flow, .. }
            | Problem::ContainsItself { flow, .. }
            | Problem::ForeignEdge { flow, .. }
            | Problem::ZeroStepLimit { flow }
            | Problem::DuplicateName { flow, .. }
            | Problem::DuplicateEdge { flow, .. }
            | Problem::Unreachable { flow, .. }
            | Problem::MissingEdge { flow, .. }
            | Problem::UnknownAction { flow, .. }
            | Problem::UnboundedCycle { flow, .. } => flow,
        }
    }

    /// The node the problem is about, if it is about one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Problem::UnknownTarget { node, .. }
            | Problem::NotANode { node, .. }
            | Problem::ContainsItself { node, .. }
            | Problem::DuplicateName { node, .. }
            | Problem::DuplicateEdge { node, .. }
            | Problem::Unreachable { node, .. }
            | Problem::MissingEdge { node, .. }
            | Problem::UnknownAction { node, .. } => Some(node),
            Problem::UnboundedCycle { path, .. } => path.first().map(String::as_str),
            Problem::NoStart { .. }
            | Problem::ForeignStart { .. }
            | Problem::StartNotANode { .. }
            | Problem::ForeignEdge { .. }
            | Problem::ZeroStepLimit { .. } => None,
        }
    }

    /// Whether a run of the flow cannot work (the engine refuses it before its
    /// first node): no way to start, no way to end, no step allowed, or an edge
    /// that leads nowhere or was never added, so that the run would fail, or
    /// run another graph than the one written, once it gets there. The others
    /// (unreachable nodes, edges for actions a node never returns, a name or an
    /// edge given twice) are warnings: the run may go well.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Problem::NoStart { .. }
                | Problem::ForeignStart { .. }
                | Problem::StartNotANode { .. }
                | Problem::ContainsItself { .. }
                | Problem::UnboundedCycle { .. }
                | Problem::ZeroStepLimit { .. }
                | Problem::UnknownTarget { .. }
                | Problem::NotANode { .. }
                | Problem::ForeignEdge { .. }
                | Problem::MissingEdge { .. }
        )
    }
}
