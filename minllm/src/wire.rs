//! Edge syntax: `a >> b`, `a.on("action") >> b`, and chains `a >> b >> c`.

use std::ops::Shr;

use crate::action::{Action, Label};

/// A node added to a [`Flow`](crate::Flow), returned by
/// [`Flow::add`](crate::Flow::add). Copy it freely to wire edges:
///
/// - `a >> b`: after `a` returns the `"default"` action, run `b`;
/// - `a.on("search") >> b`: after `a` returns `"search"`, run `b` (any
///   [`Action`] works, enum values included);
/// - `a >> b >> c` and `a.on("x") >> b.on("y") >> c >> a`: chains;
/// - `a.on("done") >> End`: the flow ends when `a` returns `"done"` (see [`End`]).
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
    /// Where it leads; `None` when the flow ends there ([`End`]).
    pub to: Option<NodeId>,
}

/// The end of a flow, as the target of an edge: `a.on("done") >> End` says that
/// the flow ends, on purpose, when `a` returns `"done"` (as `>> end` does in
/// `flow!`), and `a >> End` says the same of the `"default"` action.
///
/// A node without edges ends the flow whatever it returns. A node with edges
/// that returns an action with neither an edge nor an `End` makes the run fail
/// with [`Error::MissingEdge`](crate::Error::MissingEdge): a typo in an action
/// is an error, not a silent end.
///
/// ```
/// use minllm::{End, Flow};
/// # use minllm::{ExecContext, Node, NodeResult, Params, SharedStore};
/// # struct Review;
/// # impl Node for Review {
/// #     type Prep = (); type Exec = (); type Action = &'static str;
/// #     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
/// #     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> { Ok(()) }
/// #     fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<&'static str> { Ok("approved") }
/// # }
/// # struct Draft;
/// # impl Node for Draft {
/// #     type Prep = (); type Exec = (); type Action = ();
/// #     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
/// #     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> { Ok(()) }
/// #     fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> { Ok(()) }
/// # }
/// let mut flow = Flow::new("write");
/// let (draft, review) = (flow.add("draft", Draft), flow.add("review", Review));
/// flow.edge(draft >> review.on("revise") >> draft)
///     .edge(review.on("approved") >> End)
///     .max_steps(10);
/// assert_eq!(flow.run(&mut SharedStore::new()).unwrap(), "approved");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct End;

/// Edges written with `>>` that finish with [`End`]; pass them to
/// [`Flow::edge`](crate::Flow::edge). Nothing can follow `End` in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "edges do nothing until they are passed to `Flow::edge`"]
pub struct Ended {
    edges: Vec<Edge>,
}

impl Ended {
    /// The edges, in the order written.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }
}

impl From<Wire> for Vec<Edge> {
    fn from(wire: Wire) -> Self {
        wire.edges
    }
}

impl From<Ended> for Vec<Edge> {
    fn from(ended: Ended) -> Self {
        ended.edges
    }
}

impl Shr<End> for NodeId {
    type Output = Ended;
    fn shr(self, _: End) -> Ended {
        Ended { edges: vec![Edge { from: self, action: Label::DEFAULT, to: None }] }
    }
}

impl Shr<End> for PendingEdge {
    type Output = Ended;
    fn shr(mut self, _: End) -> Ended {
        self.edges.push(Edge { from: self.from, action: self.action, to: None });
        Ended { edges: self.edges }
    }
}

impl Shr<End> for Wire {
    type Output = Ended;
    fn shr(mut self, _: End) -> Ended {
        self.edges.push(Edge { from: self.tail, action: Label::DEFAULT, to: None });
        Ended { edges: self.edges }
    }
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
        Wire { edges: vec![Edge { from: self, action: Label::DEFAULT, to: Some(to) }], tail: to }
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
        self.edges.push(Edge { from: self.from, action: self.action, to: Some(to) });
        Wire { edges: self.edges, tail: to }
    }
}

impl Shr<NodeId> for Wire {
    type Output = Wire;
    fn shr(mut self, to: NodeId) -> Wire {
        self.edges.push(Edge { from: self.tail, action: Label::DEFAULT, to: Some(to) });
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
        let got: Vec<_> =
            wire.edges().iter().map(|e| (e.from.index, e.action.to_string(), e.to.map(|t| t.index))).collect();
        assert_eq!(got, [(0, "go".into(), Some(1)), (1, "default".into(), Some(2)), (2, "back".into(), Some(0))]);
        let wire = a.on("x") >> b.on("y") >> c >> a;
        let got: Vec<_> =
            wire.edges().iter().map(|e| (e.from.index, e.action.to_string(), e.to.map(|t| t.index))).collect();
        assert_eq!(got, [(0, "x".into(), Some(1)), (1, "y".into(), Some(2)), (2, "default".into(), Some(0))]);
        let ended = a >> b.on("done") >> End;
        let got: Vec<_> =
            ended.edges().iter().map(|e| (e.from.index, e.action.to_string(), e.to.map(|t| t.index))).collect();
        assert_eq!(got, [(0, "default".into(), Some(1)), (1, "done".into(), None)]);
    }
}
