//! One item's run of a batch flow that runs as one node of a checkpointed or
//! streamed run (a parallel batch flow, and any batch flow inside its items):
//! node by node, each node with a visit of its own under the batch flow's, so
//! that its `exec` result is recorded under the item and the node's place in
//! the item's run. A resumed run runs the batch flow again: every `prep` and
//! `post` runs again on the store of the batch flow's checkpoint, and every
//! `exec` that finished before the crash is read back instead of run.

use std::time::Instant;

use super::Flow;
use super::run::{Ended, Frames};
use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::Label;
use crate::context::{Cancel, FlowPath, NodeCx, Seg, no_span};
use crate::durable::{Ambient, Visit};
use crate::error::Error;
use crate::events::EventKind;
use crate::params::Params;

/// The store of an item's run: a sync run's or an async run's.
pub(crate) enum Place<'a, S> {
    Sync(StoreRef<'a, S>),
    Async(AsyncStoreRef<'a, S>),
}

/// What the batch flow's items take from the run around it: the batch flow's
/// name, its visit (checkpointed runs) and its ambient (the event sink of
/// streamed runs).
#[derive(Clone, Copy)]
pub(crate) struct Driven<'a> {
    pub(crate) batch: &'a str,
    pub(crate) visit: Option<&'a Visit<'a>>,
    pub(crate) ambient: &'a Ambient,
}

impl<'a> Driven<'a> {
    /// What the node `cx` is about, run on a thread whose ambient is `ambient`,
    /// drives; `None` in a plain run.
    pub(crate) fn of(cx: &NodeCx<'a>, ambient: &'a Ambient) -> Option<Self> {
        (cx.visit.is_some() || !ambient.is_empty()).then_some(Driven { batch: cx.node, visit: cx.visit, ambient })
    }
}

impl<S: Send + Sync + 'static> Flow<S> {
    /// Runs item `item` of a driven batch flow: this (its inner) flow at
    /// `path` (`outer > batch[i]`). A sync run's future is ready at its first poll.
    pub(crate) async fn run_item(
        &self,
        mut place: Place<'_, S>,
        path: &FlowPath<'_>,
        params: &Params,
        cancel: Option<&Cancel<'_>>,
        driven: Driven<'_>,
        item: usize,
    ) -> Result<Label, Error> {
        self.check(path)?;
        let mut frames = Frames::new(self, path, params, false);
        let mut segs: Vec<Seg<'_>> = Vec::new();
        let sink = driven.ambient.sink();
        loop {
            let at = path.extended(&segs);
            let frame = frames.top();
            let mut run = frame.run;
            run.next(frame.flow, &at, cancel)?;
            frame.run = run;
            let (flow, params) = (frame.flow, frame.params.clone());
            let slot = &flow.slots[run.current];
            if slot.nested {
                frames.enter(slot, None);
                segs.push(Seg { name: &slot.name, item: None });
                continue;
            }
            let visit = driven.visit.map(|batch| batch.within_item(driven.batch, item, &place_key(&frames)));
            let flow_name = sink.map(|_| at.to_string()).unwrap_or_default();
            let started = Instant::now();
            if let Some(sink) = sink {
                sink.send(EventKind::NodeStarted, &flow_name, &slot.name);
            }
            let ambient = Ambient::new(visit.as_ref(), sink, &flow_name, &slot.name);
            let cx =
                NodeCx { flow: &at, node: &slot.name, params: &params, cancel, span: no_span(), visit: visit.as_ref() };
            let label = match &mut place {
                Place::Sync(store) => {
                    let _inside = ambient.enter();
                    slot.node.run_visiting(store.reborrow(), cx)?
                }
                Place::Async(store) => {
                    ambient.scope(slot.node.run_async(store.reborrow(), &cx)).await.map_err(|e| *e)?
                }
            };
            if let Some(sink) = sink {
                let kind = EventKind::NodeFinished { action: label.to_string(), elapsed: started.elapsed() };
                sink.send(kind, &flow_name, &slot.name);
            }
            let frame = frames.top();
            let mut run = frame.run;
            let goes_on = run.follow(frame.flow, &at, &label)?;
            frame.run = run;
            if goes_on {
                continue;
            }
            if let Ended::Run(last) = frames.end(path, &mut segs, label)? {
                return Ok(last);
            }
        }
    }
}

/// The place of the node about to run in an item's run: each flow's node and
/// steps (`sub#2 > node#1`), which tells apart a node visited twice in a loop.
fn place_key<S>(frames: &Frames<'_, S>) -> String {
    let mut key = String::new();
    for frame in &frames.frames {
        if !key.is_empty() {
            key.push_str(" > ");
        }
        key.push_str(&frame.flow.slots[frame.run.current].name);
        key.push('#');
        key.push_str(&frame.run.steps.to_string());
    }
    key
}
