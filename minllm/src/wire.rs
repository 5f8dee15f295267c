//! Edge syntax: `a >> b`, `a.on("action") >> b`, and chains `a >> b >> c`.

use std::ops::Shr;

use crate::action::{Action, Label};

/// A node added to a [`Flow`](crate::Flow), returned by
/// [`Flow::add`](crate::Flow::add). Copy it freely to wire edges:
///
/// - `a >> b`: after `a` returns the `"default"` action, run `b`;
/// - `a.on("search") >> b`: after `a` returns `"search"`, run `b` (any
///   [`Action`] works, enum values included);
/// - `a >> b >> c` and `a.on("x") >> b.on("y") >> c >> a`: chains.
///
/// ```
/// use minllm::{Flow, Wire};
/// # use minllm::{ExecContext, Node, NodeResult, Params, SharedStore};
/// # struct Step;
/// # impl Node for Step {
/// #     type Prep = (); type Exec = (); type Action = ();
/// #     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
/// #     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> { Ok(()) }
/// #     fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> { Ok(()) }
/// # }
/// let mut flow = Flow::new("demo");
/// let (a, b, c) = (flow.add("a", Step), flow.add("b", Step), flow.add("c", Step));
/// let wire: Wire = a >> b.on("retry") >> a;
/// flow.start(a).edge(wire).edge(b >> c);
/// assert!(flow.validate().is_empty() == false); // a cycle without a step limit
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub(crate) flow: u64,
    pub(crate) index: usize,
}

/// One edge: from a node, on an action, to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Where the edge starts.
    pub from: NodeId,
    /// The action that selects it.
    pub action: Label,
    /// Where it leads.
    pub to: NodeId,
}

/// One or more edges written with `>>`; pass it to [`Flow::edge`](crate::Flow::edge).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a wire does nothing until it is passed to `Flow::edge`"]
pub struct Wire {
    pub(crate) edges: Vec<Edge>,
    tail: NodeId,
}

impl Wire {
    /// The edges, in the order written.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }
}

/// A node and an action (`a.on("action")`) waiting for `>> target`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "complete the edge with `>> target`"]
pub struct PendingEdge {
    edges: Vec<Edge>,
    from: NodeId,
    action: Label,
}

impl Shr<NodeId> for NodeId {
    type Output = Wire;
    fn shr(self, to: NodeId) -> Wire {
        Wire { edges: vec![Edge { from: self, action: Label::DEFAULT, to }], tail: to }
    }
}

impl NodeId {
    /// Starts an edge taken when this node returns `action`: `a.on("search") >> b`.
    pub fn on(self, action: impl Action) -> PendingEdge {
        PendingEdge { edges: Vec::new(), from: self, action: action.into_label() }
    }
}

impl Shr<NodeId> for PendingEdge {
    type Output = Wire;
    fn shr(mut self, to: NodeId) -> Wire {
        self.edges.push(Edge { from: self.from, action: self.action, to });
        Wire { edges: self.edges, tail: to }
    }
}

impl Shr<NodeId> for Wire {
    type Output = Wire;
    fn shr(mut self, to: NodeId) -> Wire {
        self.edges.push(Edge { from: self.tail, action: Label::DEFAULT, to });
        self.tail = to;
        self
    }
}

// `a >> b.on("x") >> c` reads `(a >> (b.on("x"))) >> c`: the impls below let a
// chain continue through a labelled edge.

impl Shr<PendingEdge> for NodeId {
    type Output = PendingEdge;
    fn shr(self, next: PendingEdge) -> PendingEdge {
        (self >> next.from).then(next)
    }
}

impl Shr<PendingEdge> for PendingEdge {
    type Output = PendingEdge;
    fn shr(self, next: PendingEdge) -> PendingEdge {
        (self >> next.from).then(next)
    }
}

impl Shr<PendingEdge> for Wire {
    type Output = PendingEdge;
    fn shr(self, next: PendingEdge) -> PendingEdge {
        (self >> next.from).then(next)
    }
}

impl Wire {
    /// Continues this wire with `next`, whose first node is this wire's tail.
    fn then(mut self, next: PendingEdge) -> PendingEdge {
        self.edges.extend(next.edges);
        PendingEdge { edges: self.edges, from: next.from, action: next.action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_build_edges_in_order() {
        let id = |index| NodeId { flow: 1, index };
        let (a, b, c) = (id(0), id(1), id(2));
        let wire = a.on("go") >> b >> c.on(String::from("back")) >> a;
        let got: Vec<_> = wire.edges().iter().map(|e| (e.from.index, e.action.to_string(), e.to.index)).collect();
        assert_eq!(got, [(0, "go".into(), 1), (1, "default".into(), 2), (2, "back".into(), 0)]);
        let wire = a.on("x") >> b.on("y") >> c >> a;
        let got: Vec<_> = wire.edges().iter().map(|e| (e.from.index, e.action.to_string(), e.to.index)).collect();
        assert_eq!(got, [(0, "x".into(), 1), (1, "y".into(), 2), (2, "default".into(), 0)]);
    }
}
