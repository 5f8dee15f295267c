//! The engine of a run: nested flows run in place as frames on a stack of the
//! run's own, the hot loop over one flow's nodes, and the state of each flow's run.

use std::time::Instant;

use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Flow, Slot, Target};
use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::Label;
use crate::context::{Cancel, FlowPath, NodeCx, Seg, check_stack, finish_span, is_cancelled, no_span, node_span};
use crate::error::Error;
use crate::params::Params;

impl<S: Send + Sync + 'static> Flow<S> {
    /// Runs the flow. Nested flows run in place, each as a frame on a stack of
    /// the run's own, so that nesting depth costs heap, not the thread's stack.
    pub(crate) fn orchestrate(
        &self,
        mut store: StoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Error> {
        check_stack(path)?;
        self.check(path)?;
        // Checked once per run: without a subscriber, no span is made per step.
        let traced = crate::context::tracing_on();
        let mut frames = Frames::new(self, path, params, traced);
        let mut segs = Vec::new();
        loop {
            let at = path.extended(&segs);
            let frame = frames.top();
            let exit = if traced {
                frame.run_nodes::<true>(store.reborrow(), &at, cancel)?
            } else {
                frame.run_nodes::<false>(store.reborrow(), &at, cancel)?
            };
            if let Ended::Run(label) = frames.after(exit, path, &mut segs)? {
                return Ok(label);
            }
        }
    }

    /// [`orchestrate`](Flow::orchestrate) on an async store: the same frames,
    /// awaiting each node. Fails with a boxed error, as the nodes' futures do.
    pub(crate) async fn orchestrate_async(
        &self,
        mut store: AsyncStoreRef<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Label, Box<Error>> {
        check_stack(path)?;
        self.check(path)?;
        let traced = crate::context::tracing_on();
        let mut frames = Frames::new(self, path, params, traced);
        let mut segs = Vec::new();
        loop {
            let at = path.extended(&segs);
            let frame = frames.top();
            let exit = if traced {
                frame.run_nodes_async::<true>(store.reborrow(), &at, cancel).await?
            } else {
                frame.run_nodes_async::<false>(store.reborrow(), &at, cancel).await?
            };
            if let Ended::Run(label) = frames.after(exit, path, &mut segs)? {
                return Ok(label);
            }
        }
    }
}

/// Why the innermost flow of a run stopped running nodes.
pub(super) enum Exit<'f, S: 'static> {
    /// It reached a node holding a nested flow (with the node's span and the
    /// nested flow's, when traced).
    Enter(&'f Slot<S>, Option<(NodeSpan, tracing::Span)>),
    /// It ended with this action.
    End(Label),
}

/// A node's span, and when the node started when anything records it.
type NodeSpan = (tracing::Span, Option<Instant>);

/// The flows of one run, outermost first: the run's own stack, so that a flow
/// nested a hundred thousand levels deep runs without native recursion. The
/// names of the nested flows entered are kept beside it, by the runner, for
/// the flow paths.
pub(super) struct Frames<'f, S: 'static> {
    pub(super) frames: Vec<Frame<'f, S>>,
}

/// One flow of a run: where it is, its params, its span, and the span of the
/// node that holds the flow nested in it while that one runs.
pub(super) struct Frame<'f, S: 'static> {
    pub(super) flow: &'f Flow<S>,
    pub(super) run: Run,
    pub(super) params: Params,
    span: tracing::Span,
    holder: Option<NodeSpan>,
    /// For one run of a batch flow's inner flow that the driver of
    /// checkpointed runs runs in place: the item.
    pub(super) item: Option<usize>,
}

/// What a flow's end leads to.
pub(super) enum Ended {
    /// The run ended with this action.
    Run(Label),
    /// An enclosing flow goes on.
    Going,
    /// The run of a batch flow's item ended; its frame is still on the stack
    /// (only the driver of checkpointed runs makes those).
    Item,
}

impl<'f, S: Send + Sync + 'static> Frames<'f, S> {
    pub(super) fn new(flow: &'f Flow<S>, path: &FlowPath<'_>, params: &Params, traced: bool) -> Self {
        let span =
            if traced { tracing::info_span!("flow", flow = %path, steps = Empty) } else { tracing::Span::none() };
        Frames { frames: vec![Frame::new(flow, params.clone(), span)] }
    }

    pub(super) fn top(&mut self) -> &mut Frame<'f, S> {
        self.frames.last_mut().expect("a run has a frame until it returns")
    }

    /// Acts on why the innermost flow stopped: enters the nested flow it
    /// reached, or ends it and the flows it ends.
    pub(super) fn after(
        &mut self,
        exit: Exit<'f, S>,
        path: &FlowPath<'_>,
        segs: &mut Vec<Seg<'f>>,
    ) -> Result<Ended, Error> {
        match exit {
            Exit::Enter(slot, spans) => {
                self.enter(slot, spans);
                segs.push(Seg { name: &slot.name, item: None });
                Ok(Ended::Going)
            }
            Exit::End(label) => self.end(path, segs, label),
        }
    }

    /// Enters the run of item `item` of the batch flow whose inner flow is
    /// `inner`, with `params`.
    pub(super) fn enter_item(&mut self, inner: &'f Flow<S>, params: Params, item: usize) {
        let mut frame = Frame::new(inner, params, tracing::Span::none());
        frame.item = Some(item);
        self.frames.push(frame);
    }

    /// Enters the flow nested in `slot`.
    pub(super) fn enter(&mut self, slot: &'f Slot<S>, spans: Option<(NodeSpan, tracing::Span)>) {
        let Some(inner) = slot.node.inner_flow() else { return };
        let (holder, span) = spans.map_or((None, tracing::Span::none()), |(holder, span)| (Some(holder), span));
        let top = self.top();
        let params = inner.params.merged(&top.params);
        top.holder = holder;
        self.frames.push(Frame::new(inner, params, span));
    }

    /// The innermost flow ended with `label`: it is the action of the node
    /// that holds it, which the enclosing flow follows, and so on outwards.
    /// A batch item's run stops there.
    pub(super) fn end(&mut self, path: &FlowPath<'_>, segs: &mut Vec<Seg<'f>>, label: Label) -> Result<Ended, Error> {
        loop {
            if self.frames.last().is_some_and(|f| f.item.is_some()) {
                return Ok(Ended::Item);
            }
            if let Some(done) = self.frames.pop() {
                done.span.record("steps", done.run.steps);
            }
            if self.frames.is_empty() {
                return Ok(Ended::Run(label));
            }
            segs.pop();
            let at = path.extended(segs);
            let top = self.top();
            if let Some((span, started)) = top.holder.take() {
                finish_span(&span, started, label.as_str());
            }
            if top.run.follow(top.flow, &at, &label)? {
                return Ok(Ended::Going);
            }
        }
    }
}

impl<'f, S: 'static> Frame<'f, S> {
    fn new(flow: &'f Flow<S>, params: Params, span: tracing::Span) -> Self {
        Frame { flow, run: Run::new(flow), params, span, holder: None, item: None }
    }

    /// Runs this flow's nodes until it ends or reaches a nested flow: the hot
    /// loop of a sync run, made twice, with spans (`TRACED`) and without.
    #[inline]
    fn run_nodes<const TRACED: bool>(
        &mut self,
        mut store: StoreRef<'_, S>,
        at: &FlowPath<'_>,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Exit<'f, S>, Error>
    where
        S: Send + Sync,
    {
        // In a local while the loop runs: the step count and position stay in registers.
        let mut run = self.run;
        let flow = self.flow;
        loop {
            run.next(flow, at, cancel)?;
            let slot = &flow.slots[run.current];
            if slot.nested {
                self.run = run;
                return Ok(Exit::Enter(slot, TRACED.then(|| self.nested_spans(slot, at))));
            }
            let label = if TRACED {
                let (span, started) = self.node_span(slot);
                let cx = NodeCx { flow: at, node: &slot.name, params: &self.params, cancel, span: &span, visit: None };
                let label = span.in_scope(|| slot.node.run(store.reborrow(), cx))?;
                finish_span(&span, started, label.as_str());
                label
            } else {
                let cx =
                    NodeCx { flow: at, node: &slot.name, params: &self.params, cancel, span: no_span(), visit: None };
                slot.node.run(store.reborrow(), cx)?
            };
            if !run.follow(flow, at, &label)? {
                self.run = run;
                return Ok(Exit::End(label));
            }
        }
    }

    /// [`run_nodes`](Frame::run_nodes) of an async run, awaiting each node.
    async fn run_nodes_async<const TRACED: bool>(
        &mut self,
        mut store: AsyncStoreRef<'_, S>,
        at: &FlowPath<'_>,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<Exit<'f, S>, Box<Error>>
    where
        S: Send + Sync,
    {
        let mut run = self.run;
        let flow = self.flow;
        loop {
            run.next(flow, at, cancel)?;
            let slot = &flow.slots[run.current];
            if slot.nested {
                self.run = run;
                return Ok(Exit::Enter(slot, TRACED.then(|| self.nested_spans(slot, at))));
            }
            let label = if TRACED {
                let (span, started) = self.node_span(slot);
                let cx = NodeCx { flow: at, node: &slot.name, params: &self.params, cancel, span: &span, visit: None };
                let label = slot.node.run_async(store.reborrow(), &cx).instrument(span.clone()).await?;
                finish_span(&span, started, label.as_str());
                label
            } else {
                let cx =
                    NodeCx { flow: at, node: &slot.name, params: &self.params, cancel, span: no_span(), visit: None };
                slot.node.run_async(store.reborrow(), &cx).await?
            };
            if !run.follow(flow, at, &label)? {
                self.run = run;
                return Ok(Exit::End(label));
            }
        }
    }

    /// The span of the node in `slot`, which holds a nested flow, and the
    /// span of that flow; `at` is this flow's path.
    fn nested_spans(&self, slot: &Slot<S>, at: &FlowPath<'_>) -> (NodeSpan, tracing::Span) {
        let holder = self.node_span(slot);
        let span = tracing::info_span!(parent: &holder.0, "flow", flow = %at.child(&slot.name, None), steps = Empty);
        (holder, span)
    }

    /// The span of the node in `slot`, a child of this flow's span.
    fn node_span(&self, slot: &Slot<S>) -> NodeSpan {
        let span = node_span(&self.span, &slot.name);
        let started = (!span.is_disabled()).then(Instant::now);
        (span, started)
    }
}

/// How many recent steps a step-limit error shows.
const RECENT: usize = crate::error::STEP_TRAIL;

/// The state of one flow's run: where it is, how many steps it took, the last few nodes.
#[derive(Clone, Copy)]
pub(super) struct Run {
    pub(super) current: usize,
    pub(super) steps: u64,
    recent: [usize; RECENT],
}

impl Run {
    fn new<S>(flow: &Flow<S>) -> Run {
        // `check` refused flows without a start node.
        let current = match flow.start {
            Some(Target::Node(start)) => start,
            _ => 0,
        };
        Run { current, steps: 0, recent: [0; RECENT] }
    }

    /// Counts a step into the current node, after checking the step limit and cancellation.
    #[inline(always)]
    pub(super) fn next<S>(
        &mut self,
        flow: &Flow<S>,
        path: &FlowPath<'_>,
        cancel: Option<&Cancel<'_>>,
    ) -> Result<(), Error> {
        if is_cancelled(cancel) {
            return Err(cancelled(path));
        }
        if let Some(limit) = flow.max_steps
            && self.steps >= limit
        {
            return Err(self.limit_reached(flow, path, limit));
        }
        self.recent[(self.steps % RECENT as u64) as usize] = self.current;
        self.steps += 1;
        Ok(())
    }

    /// Moves along the edge for `label`: `true` when it leads to a node,
    /// `false` when the flow ends here.
    #[inline(always)]
    pub(super) fn follow<S>(&mut self, flow: &Flow<S>, path: &FlowPath<'_>, label: &Label) -> Result<bool, Error> {
        let slot = &flow.slots[self.current];
        match slot.edges.iter().find(|(a, _)| a == label) {
            Some((_, Target::Node(next))) => {
                self.current = *next;
                Ok(true)
            }
            Some((_, Target::End)) => Ok(false),
            None if slot.edges.is_empty() => Ok(false),
            Some((_, Target::Foreign)) => Err(no_way_on(slot, path, label, true)),
            None => Err(no_way_on(slot, path, label, false)),
        }
    }

    #[cold]
    #[inline(never)]
    fn limit_reached<S>(&self, flow: &Flow<S>, path: &FlowPath<'_>, limit: u64) -> Error {
        let shown = self.steps.min(RECENT as u64);
        let last = (self.steps - shown..self.steps)
            .map(|step| flow.slots[self.recent[(step % RECENT as u64) as usize]].name.as_str());
        Error::step_limit(path.to_string(), limit, self.steps, last)
    }
}

#[cold]
#[inline(never)]
fn cancelled(path: &FlowPath<'_>) -> Error {
    Error::Cancelled { flow: path.to_string() }
}

/// The error of a node whose action leads nowhere: to a node of another flow
/// (`foreign`), or to no edge at all.
#[cold]
#[inline(never)]
fn no_way_on<S>(slot: &Slot<S>, path: &FlowPath<'_>, label: &Label, foreign: bool) -> Error {
    let (flow, node, action) = (path.to_string(), slot.name.clone(), label.to_string());
    if foreign {
        return Error::UnknownTarget { flow, node, action };
    }
    Error::MissingEdge { flow, node, action, edges: slot.edges.iter().map(|(a, _)| a.to_string()).collect() }
}
