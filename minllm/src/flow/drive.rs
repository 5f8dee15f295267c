//! The loop of checkpointed and streamed runs: the engine's frames, one node
//! at a time, with a checkpoint before each node and events around it. Written
//! once, as `async`: a sync run calls each node's `run` and never waits, so
//! its future is ready at the first poll. (Plain runs use the frames' own
//! loops, which run a flow's nodes without stopping between them.)

use std::any::Any;
use std::time::Instant;

use tracing::Instrument as _;

use super::run::{Ended, Exit, Frames};
use super::{Flow, Slot};
use crate::access::{AsyncStoreRef, StoreRef};
use crate::action::Label;
use crate::context::{FlowPath, NodeCx, Seg, finish_span, no_span, node_span, tracing_on};
use crate::durable::{
    Ambient, Checkpoint, Journal, Mode, Outcome, Pause, Plan, SaveFields, Status, Visit, is_interrupt,
};
use crate::error::Error;
use crate::events::EventKind;
use crate::params::Params;

/// Runs `flow` node by node from checkpoint `from` (its node entered again,
/// with `answers` for its interrupts) or from the start.
pub(super) async fn drive<S: Send + Sync + 'static>(
    flow: &Flow<S>,
    store: &mut S,
    mut plan: Plan<'_, S>,
    from: Option<&Checkpoint>,
    answers: Vec<Vec<u8>>,
) -> Result<Outcome, Error> {
    let root = FlowPath::root(flow.name());
    flow.check(&root)?;
    // Node spans as in plain runs, made only when a subscriber listens.
    let traced = tracing_on();
    let mut frames = Frames::new(flow, &root, plan.params.unwrap_or(&flow.params), false);
    // The store codec of a journaled run, for the visits of its nodes.
    let codec = plan.codec.map(|codec| codec as &(dyn Any + Send + Sync));
    let mut segs: Vec<Seg<'_>> = Vec::new();
    // The batch flows whose items run: each with its params and the next item.
    let mut batches: Vec<Batch<'_, S>> = Vec::new();
    // The visit to continue: its checkpoint and the answers it has.
    let mut again = None;
    if let Some(from) = from {
        if let Some((journal, _)) = &mut plan.journal {
            journal.follow(from);
        }
        restore(flow, plan.run, &mut frames, &mut segs, &mut batches, store, from)?;
        again = Some((from.visit, answers));
    }
    let save = |store: &S, save_fields: SaveFields<S>| {
        save_fields(store).map_err(|reason| Error::NotCheckpointable {
            flow: flow.name().to_owned(),
            run: plan.run.to_owned(),
            what: "the store".to_owned(),
            reason,
        })
    };
    loop {
        let at = root.extended(&segs);
        let frame = frames.top();
        let mut run = frame.run;
        run.next(frame.flow, &at, None)?;
        frame.run = run;
        let (frame_flow, params) = (frame.flow, frame.params.clone());
        let slot = &frame_flow.slots[run.current];
        if slot.nested {
            frames.enter(slot, None);
            segs.push(Seg { name: &slot.name, item: None });
            continue;
        }
        if let Some(list) = slot.node.batch_items(store, &NodeCx::new(&at, &slot.name, &params, None)) {
            // A batch flow run item by item, each item's run a frame.
            let list = list?;
            let mut batch = Batch { slot, list, next: 0 };
            let ended = if batch.enter_next(&mut frames, &mut segs) {
                batches.push(batch);
                Ended::Going
            } else {
                batch.finish(store, &mut frames, &root, &mut segs)?
            };
            match settle(ended, store, &mut frames, &root, &mut segs, &mut batches)? {
                Some(last) => return finish(&mut plan, store, &frames, last, save),
                None => continue,
            }
        }
        let (path, steps) = position(&frames);
        let steps_taken = steps.clone();
        let visit = match &mut plan.journal {
            Some((journal, save_fields)) => {
                let (seq, answers, fresh) = match again.take() {
                    Some((seq, answers)) => (seq, answers, false),
                    None => {
                        let fields = save(store, *save_fields)?;
                        let seq =
                            journal.write(path.clone(), steps.clone(), Status::Running, None, Vec::new(), fields)?;
                        (seq, Vec::new(), true)
                    }
                };
                Some((journal.visit(seq, &slot.name, answers, fresh), seq))
            }
            None => plan.steps.map(|steps| {
                let name = step_name(&path, &steps_taken);
                (Visit::stepped(steps, plan.run, name, true).with_codec(codec), 0)
            }),
        };
        let flow_name = plan.events.map(|_| at.to_string()).unwrap_or_default();
        let started = Instant::now();
        if let Some(sink) = plan.events {
            sink.send(EventKind::NodeStarted, &flow_name, &slot.name);
        }
        let ambient = Ambient::new(visit.as_ref().map(|(v, _)| v), plan.events, &flow_name, &slot.name);
        let span = if traced { node_span(&tracing::Span::current(), &slot.name) } else { tracing::Span::none() };
        let cx = NodeCx {
            flow: &at,
            node: &slot.name,
            params: &params,
            cancel: None,
            span: if traced { &span } else { no_span() },
            visit: visit.as_ref().map(|(v, _)| v),
        };
        let result = match plan.mode {
            Mode::Sync => {
                let _inside = ambient.enter();
                span.in_scope(|| slot.node.run_visiting(StoreRef::exclusive(store), cx))
            }
            Mode::Async => {
                let node = slot.node.run_async(AsyncStoreRef::exclusive(store), &cx);
                ambient.scope(node.instrument(span.clone())).await.map_err(|e| *e)
            }
        };
        if let Ok(label) = &result {
            finish_span(&span, traced.then_some(started), label.as_str());
        }
        let label = match result {
            Ok(label) => label,
            Err(error) if interrupted(&error) => {
                let (Some((journal, _)), Some((visit, seq))) = (&mut plan.journal, &visit) else { return Err(error) };
                let (question, answers) = Journal::asked(visit);
                let question = question.unwrap_or_else(|| b"null".to_vec());
                // The store as the node found it: a `post` that stopped
                // half-way leaves nothing in the checkpoint.
                let fields = journal.last_fields().to_vec();
                let status = Status::Paused { question: question.clone() };
                journal.write(path.clone(), steps, status, Some(*seq), answers, fields)?;
                let node = path.join(" > ");
                return Ok(Outcome::Paused(Pause { run: plan.run.to_owned(), node, question }));
            }
            Err(error) => {
                // The failed node's checkpoint is kept: the run resumes there.
                if let Some((journal, _)) = &plan.journal {
                    journal.flush()?;
                }
                return Err(error);
            }
        };
        if let Some(sink) = plan.events {
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
        let ended = frames.after(Exit::End(label), &root, &mut segs)?;
        if let Some(last) = settle(ended, store, &mut frames, &root, &mut segs, &mut batches)? {
            let fields = match &plan.journal {
                Some((_, save_fields)) => Some(save(store, *save_fields)?),
                None => None,
            };
            if let (Some((journal, _)), Some(fields)) = (&mut plan.journal, fields) {
                let status = Status::Finished { action: last.to_string() };
                journal.write(path, steps, status, None, Vec::new(), fields)?;
            }
            return Ok(Outcome::Finished(last));
        }
    }
}

/// The end of a run that ended outside any node (its last batch flow's `post`).
fn finish<S>(
    plan: &mut Plan<'_, S>,
    store: &S,
    frames: &Frames<'_, S>,
    last: Label,
    save: impl Fn(&S, SaveFields<S>) -> Result<Vec<(String, Vec<u8>)>, Error>,
) -> Result<Outcome, Error> {
    if let Some((journal, save_fields)) = &mut plan.journal {
        let (path, steps) = position(frames);
        let fields = save(store, *save_fields)?;
        journal.write(path, steps, Status::Finished { action: last.to_string() }, None, Vec::new(), fields)?;
    }
    Ok(Outcome::Finished(last))
}

/// A batch flow whose items the driver runs one after the other.
struct Batch<'f, S: 'static> {
    slot: &'f Slot<S>,
    list: Vec<Params>,
    next: usize,
}

impl<'f, S: Send + Sync + 'static> Batch<'f, S> {
    /// Enters the next item's run; `false` when every item ran.
    fn enter_next(&mut self, frames: &mut Frames<'f, S>, segs: &mut Vec<Seg<'f>>) -> bool {
        let Some(inner) = self.slot.node.inner_flow() else { return false };
        let Some(item) = self.list.get(self.next) else { return false };
        let params = inner.own_params().merged(&frames.top().params).merged(item);
        frames.enter_item(inner, params, self.next);
        segs.push(Seg { name: &self.slot.name, item: Some(self.next) });
        self.next += 1;
        true
    }

    /// Runs the batch flow's `post` and follows its action in the flow around it.
    fn finish(
        self,
        store: &mut S,
        frames: &mut Frames<'f, S>,
        root: &FlowPath<'_>,
        segs: &mut Vec<Seg<'f>>,
    ) -> Result<Ended, Error> {
        let at = root.extended(segs);
        let params = frames.top().params.clone();
        let cx = NodeCx::new(&at, &self.slot.name, &params, None);
        let label = self.slot.node.batch_post(store, self.list, &cx)?;
        let frame = frames.top();
        let mut run = frame.run;
        let goes_on = run.follow(frame.flow, &at, &label)?;
        frame.run = run;
        if goes_on { Ok(Ended::Going) } else { frames.end(root, segs, label) }
    }
}

/// Acts on how a flow ended until the run goes on (`None`) or ends (`Some`):
/// a batch item's run ended enters the next item, or ends the batch flow.
fn settle<'f, S: Send + Sync + 'static>(
    mut ended: Ended,
    store: &mut S,
    frames: &mut Frames<'f, S>,
    root: &FlowPath<'_>,
    segs: &mut Vec<Seg<'f>>,
    batches: &mut Vec<Batch<'f, S>>,
) -> Result<Option<Label>, Error> {
    loop {
        match ended {
            Ended::Going => return Ok(None),
            Ended::Run(last) => return Ok(Some(last)),
            Ended::Item => {
                frames.frames.pop();
                segs.pop();
                let Some(mut batch) = batches.pop() else { return Ok(None) };
                if batch.enter_next(frames, segs) {
                    batches.push(batch);
                    return Ok(None);
                }
                ended = batch.finish(store, frames, root, segs)?;
            }
        }
    }
}

/// Puts the frames where checkpoint `from` was: the nested flows entered,
/// its node next, each flow's steps.
fn restore<'f, S: Send + Sync + 'static>(
    flow: &Flow<S>,
    run: &str,
    frames: &mut Frames<'f, S>,
    segs: &mut Vec<Seg<'f>>,
    batches: &mut Vec<Batch<'f, S>>,
    store: &S,
    from: &Checkpoint,
) -> Result<(), Error> {
    let refuse = |reason| Error::Resume { flow: flow.name().to_owned(), run: run.to_owned(), reason };
    let mut path = from.path.iter().enumerate().peekable();
    while let Some((i, name)) = path.next() {
        let frame = frames.top();
        let here = frame.flow;
        let index = here.slots.iter().position(|s| &s.name == name).ok_or_else(|| {
            refuse(format!(
                "its checkpoint {} is at node `{name}`, which flow `{}` no longer has (renamed or removed since)",
                from.seq,
                here.name()
            ))
        })?;
        let last = i + 1 == from.path.len();
        let steps = from.steps.get(i).copied().unwrap_or(0);
        frame.run.current = index;
        // The node about to run is counted again when it is entered.
        frame.run.steps = if last { steps.saturating_sub(1) } else { steps };
        let slot = &here.slots[index];
        if last {
            continue;
        }
        if slot.nested {
            frames.enter(slot, None);
            segs.push(Seg { name: &slot.name, item: None });
            continue;
        }
        // Inside a batch flow: the next element is the item, `[i]`.
        let item = path.next().and_then(|(_, m)| m.strip_prefix('[')?.strip_suffix(']')?.parse::<usize>().ok());
        let params = frames.top().params.clone();
        let at = FlowPath::root(flow.name());
        let cx = NodeCx::new(&at, &slot.name, &params, None);
        let (Some(item), Some(Ok(list))) = (item, slot.node.batch_items(store, &cx)) else {
            return Err(refuse(format!(
                "its checkpoint {} is inside `{name}`, which is no longer a nested flow or a batch flow",
                from.seq
            )));
        };
        let mut batch = Batch { slot, list, next: item };
        if !batch.enter_next(frames, segs) {
            return Err(refuse(format!(
                "its checkpoint {} is at item {item} of `{name}`, whose params now have fewer items",
                from.seq
            )));
        }
        batches.push(batch);
    }
    Ok(())
}

/// Where the frames are: the nested flows and the node, and each flow's steps.
/// A batch item's run shows as `[i]` (with no steps) before its nodes.
fn position<S>(frames: &Frames<'_, S>) -> (Vec<String>, Vec<u64>) {
    let mut path = Vec::with_capacity(frames.frames.len());
    let mut steps = Vec::with_capacity(frames.frames.len());
    for frame in &frames.frames {
        if let Some(item) = frame.item {
            path.push(format!("[{item}]"));
            steps.push(0);
        }
        path.push(frame.flow.slots[frame.run.current].name.clone());
        steps.push(frame.run.steps);
    }
    (path, steps)
}

/// The name of a node's step in a journaled run: its place (`outer#2 > node#3`).
fn step_name(path: &[String], steps: &[u64]) -> String {
    let parts: Vec<String> = path.iter().zip(steps).map(|(name, step)| format!("{name}#{step}")).collect();
    parts.join(" > ")
}

/// Whether a node's error is an interrupt.
fn interrupted(error: &Error) -> bool {
    match error {
        Error::Node { source, .. } => is_interrupt(&**source),
        _ => false,
    }
}
