//! Where a node runs: the path of flows around it, its name, the params, the
//! cancel flag of its parallel branch, its tracing span, and the stack it may
//! still use. Every runner (runtime flows, `flow!` code, nodes run alone) builds
//! its [`NodeCx`] from here.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::durable::Visit;
use crate::error::{Error, HookError};
use crate::params::Params;

/// One flow of a [`FlowPath`]: its name and, for a batch flow's runs, the item.
#[derive(Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub(crate) name: &'a str,
    pub(crate) item: Option<usize>,
}

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        match self.item {
            Some(i) => write!(f, "[{i}]"),
            None => Ok(()),
        }
    }
}

/// The path of flows a node runs in, printed as `outer > batch[3] > inner`.
///
/// A path links to its parent's; the flows a run enters in place (nested
/// flows, without native recursion) are a slice of the runner's own.
#[derive(Clone, Copy)]
#[doc(hidden)]
pub struct FlowPath<'a> {
    parent: Option<&'a FlowPath<'a>>,
    head: Seg<'a>,
    tail: &'a [Seg<'a>],
}

impl<'a> FlowPath<'a> {
    #[inline]
    pub fn root(name: &'a str) -> Self {
        FlowPath { parent: None, head: Seg { name, item: None }, tail: &[] }
    }

    #[inline]
    pub(crate) fn child(&'a self, name: &'a str, item: Option<usize>) -> FlowPath<'a> {
        FlowPath { parent: Some(self), head: Seg { name, item }, tail: &[] }
    }

    /// This path followed by the flows `inner`.
    #[inline]
    pub(crate) fn extended(&'a self, inner: &'a [Seg<'a>]) -> FlowPath<'a> {
        match inner.split_first() {
            None => *self,
            Some((head, tail)) => FlowPath { parent: Some(self), head: *head, tail },
        }
    }

    /// Whether this is the path of an outermost flow.
    #[inline]
    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none() && self.tail.is_empty()
    }
}

impl FlowPath<'_> {
    /// The key of node `node` of the flow at this path, within the outermost
    /// flow: the names of the flows in between, then `node`, joined by ` > `
    /// (no item numbers: every item's run holds the same node).
    pub(crate) fn node_key(&self, node: &str) -> String {
        let mut chain = vec![self];
        while let Some(parent) = chain.last().and_then(|p| p.parent) {
            chain.push(parent);
        }
        let mut names = Vec::new();
        for path in chain.iter().rev() {
            names.push(path.head.name);
            names.extend(path.tail.iter().map(|seg| seg.name));
        }
        // The outermost flow is the run's own: keys start inside it.
        names.remove(0);
        names.push(node);
        names.join(" > ")
    }
}

impl fmt::Display for FlowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Outermost first, without recursion: paths can be very long.
        let mut chain = vec![self];
        while let Some(parent) = chain.last().and_then(|p| p.parent) {
            chain.push(parent);
        }
        for (i, path) in chain.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{}", path.head)?;
            for seg in path.tail {
                write!(f, " > {seg}")?;
            }
        }
        Ok(())
    }
}

/// Native recursion (a batch flow inside a batch flow's inner flow, and so on)
/// stops with [`Error::TooDeep`] before the thread's stack runs out. Outermost
/// runs are never refused, whatever their thread's stack.
pub(crate) fn check_stack(path: &FlowPath<'_>) -> Result<(), Error> {
    /// What a nested run keeps free for the nodes it runs.
    const RESERVE: usize = 128 * 1024;
    if path.is_root() {
        return Ok(());
    }
    match stacker::remaining_stack() {
        Some(left) if left < RESERVE => Err(Error::TooDeep { flow: path.to_string(), left }),
        _ => Ok(()),
    }
}

/// Set when a parallel sibling failed; checked between steps, items and retries.
#[doc(hidden)]
pub struct Cancel<'a> {
    flag: AtomicBool,
    parent: Option<&'a Cancel<'a>>,
}

impl<'a> Cancel<'a> {
    pub(crate) fn new(parent: Option<&'a Cancel<'a>>) -> Self {
        Cancel { flag: AtomicBool::new(false), parent }
    }

    pub(crate) fn cancel(&self) {
        // Release/Acquire: whoever sees the flag also sees the error stored before it.
        self.flag.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.parent.is_some_and(Cancel::is_cancelled)
    }
}

#[inline]
pub(crate) fn is_cancelled(cancel: Option<&Cancel<'_>>) -> bool {
    cancel.is_some_and(Cancel::is_cancelled)
}

/// Where a node runs: its flow path, its name, the params, the cancel flag of
/// the enclosing parallel branch, and its tracing span.
#[derive(Clone, Copy)]
#[doc(hidden)]
pub struct NodeCx<'a> {
    pub(crate) flow: &'a FlowPath<'a>,
    pub(crate) node: &'a str,
    pub(crate) params: &'a Params,
    pub(crate) cancel: Option<&'a Cancel<'a>>,
    pub(crate) span: &'a tracing::Span,
    /// The node's visit in a checkpointed run.
    pub(crate) visit: Option<&'a Visit<'a>>,
}

impl<'a> NodeCx<'a> {
    /// The context of node `node` in flow `flow`, untraced.
    #[inline]
    pub fn new(flow: &'a FlowPath<'a>, node: &'a str, params: &'a Params, cancel: Option<&'a Cancel<'a>>) -> Self {
        NodeCx { flow, node, params, cancel, span: no_span(), visit: None }
    }

    #[inline]
    pub(crate) fn record_attempts(&self, attempts: u32) {
        // Untraced runs give every node the same disabled span: one compare.
        if !std::ptr::eq(self.span, &NO_SPAN) && !self.span.is_disabled() {
            self.span.record("attempts", attempts);
        }
    }

    /// A hook's failure as the run's error, naming this flow and node.
    pub(crate) fn error(&self, hook: HookError) -> Error {
        hook.into_error(self.flow.to_string(), self.node.to_owned())
    }

    /// [`error`](NodeCx::error), boxed, for the async runners.
    pub(crate) fn fail(&self, hook: HookError) -> Box<Error> {
        Box::new(self.error(hook))
    }
}

static NO_SPAN: tracing::Span = tracing::Span::none();

/// A disabled span, for nodes run while nothing listens.
#[inline]
pub(crate) fn no_span() -> &'static tracing::Span {
    &NO_SPAN
}

/// Whether node spans can be recorded at all: checked once per run, so that a
/// run without a subscriber pays nothing per transition.
#[doc(hidden)]
#[inline]
pub fn tracing_on() -> bool {
    tracing::level_filters::STATIC_MAX_LEVEL >= tracing::Level::INFO
        && tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO
}

/// The span of node `name` run inside `parent` (a flow's span), with the
/// target `minllm::node` in every engine: the node's action, attempts and
/// time are recorded on it when it ends.
pub(crate) fn node_span(parent: &tracing::Span, name: &str) -> tracing::Span {
    tracing::info_span!(target: "minllm::node", parent: parent, "node", node = %name, action = tracing::field::Empty, attempts = tracing::field::Empty, elapsed_us = tracing::field::Empty)
}

/// The span of item `item` of batch node `node`, inside the node's span
/// (made only when that one records: `parent` is enabled).
pub(crate) fn item_span(parent: &tracing::Span, node: &str, item: usize) -> tracing::Span {
    tracing::info_span!(target: "minllm::item", parent: parent, "item", node = %node, item)
}

/// Records how a node's span ended: its action and, when anything records
/// the span (`started` is set then), how long the node took.
///
/// It also logs the end as an event in the span (`node finished`, at INFO),
/// so that a plain `tracing_subscriber::fmt().init()`, which prints events
/// and not spans, shows each node with its flow, action and time (the span's
/// fields).
pub(crate) fn finish_span(span: &tracing::Span, started: Option<Instant>, action: &str) {
    if let Some(started) = started {
        span.record("action", tracing::field::display(action));
        span.record("elapsed_us", u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        tracing::info!(target: "minllm::node", parent: span, "node finished");
    }
}

/// The span of one run of a flow.
#[doc(hidden)]
#[inline]
pub fn flow_span(path: &FlowPath<'_>) -> tracing::Span {
    tracing::info_span!("flow", flow = %path)
}

/// The flow name used in errors of nodes run outside any flow.
pub(crate) const NO_FLOW: &str = "(no flow)";

/// What a run started alone (a node, a batch or a batch flow, outside any
/// flow) runs in: a root path, no params, no span, no cancel flag. Every such
/// run builds its context here.
pub(crate) struct Root<'a> {
    path: FlowPath<'a>,
    params: Params,
}

impl<'a> Root<'a> {
    /// The root of a run of flow `flow` ([`NO_FLOW`] for a node run alone).
    pub(crate) fn new(flow: &'a str) -> Self {
        Root { path: FlowPath::root(flow), params: Params::new() }
    }

    /// The context of node `node` at this root.
    pub(crate) fn cx<'b>(&'b self, node: &'b str) -> NodeCx<'b> {
        NodeCx::new(&self.path, node, &self.params, None)
    }
}

/// The name a node run alone goes by in errors: its type's, without the path.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outermost_run_is_never_refused_for_its_stack() {
        // On a thread whose whole stack is below what a nested run keeps free.
        let ok = std::thread::Builder::new()
            .stack_size(96 * 1024)
            .spawn(|| {
                let root = FlowPath::root("f");
                let nested = root.child("sub", None);
                (check_stack(&root).is_ok(), check_stack(&nested).is_err(), root.is_root(), nested.is_root())
            })
            .expect("spawn")
            .join()
            .expect("no overflow");
        assert_eq!(ok, (true, true, true, false));
        let segs = [Seg { name: "inner", item: Some(2) }];
        let root = FlowPath::root("f");
        assert!(!root.extended(&segs).is_root());
        assert_eq!(root.extended(&segs).to_string(), "f > inner[2]");
    }

    #[test]
    fn a_node_alone_goes_by_its_short_type_name() {
        struct Plain;
        struct Generic<T>(T);
        assert_eq!(short_type_name::<Plain>(), "Plain");
        assert_eq!(short_type_name::<Generic<Vec<u8>>>(), "Generic");
    }
}
