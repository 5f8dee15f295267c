//! The engine's side of a checkpointed run: the journal that writes its
//! checkpoints, and the visit of one node (its recorded `exec` results and
//! the answers to its interrupts).

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use super::outcome::{Outcome, Pause};

use super::interrupted::Interrupted;
use super::kept::Kept;
use super::steps::{NoCheckpoints, StepJournal, StoreCodec};
use super::{Checkpoint, Checkpointer, Field, Status, now_ms};
use crate::error::{BoxError, CheckpointError, Error, NodeResult};
use crate::events::{Emitting, Sink, current_emit};

/// The answers of a node's visit and the question it is asking.
#[derive(Default)]
pub(crate) struct Asks {
    answers: Vec<Vec<u8>>,
    next: usize,
    asked: Option<Vec<u8>>,
    /// Why the node cannot pause, when it cannot (it runs in a parallel
    /// batch flow's item): what `interrupt` fails with.
    refused: Option<String>,
}

thread_local! {
    /// The asks of the node whose hook runs on this thread, in a checkpointed run.
    static ASKING: RefCell<Option<Arc<Mutex<Asks>>>> = const { RefCell::new(None) };
}

/// Pauses a checkpointed run to ask `question` (a draft to approve, a choice
/// to make), or, once the run was resumed with an answer, returns it.
///
/// Call it in a hook of a node (`prep`, `exec` or `post`) and pass its error
/// on with `?`: the run then stops with [`Outcome::Paused`], having
/// checkpointed where it was; nothing waits in memory. Resuming the run with
/// an answer ([`DurableRun::resume_with`](crate::durable::DurableRun::resume_with), in
/// any process) runs the node again from `prep`, and this call returns the
/// answer. A node may ask several times: the n-th call gets the n-th answer.
/// An `exec` that already finished is not run again.
///
/// Outside a checkpointed run it returns an error saying so.
pub fn interrupt<Q: Serialize, A: DeserializeOwned>(question: Q) -> NodeResult<A> {
    let asks = ASKING
        .with(|a| a.borrow().clone())
        .ok_or("interrupt() needs a checkpointed run: run the flow with `Flow::durable(checkpointer, run_id)`")?;
    let mut asks = asks.lock();
    if let Some(why) = &asks.refused {
        return Err(why.clone().into());
    }
    if let Some(answer) = asks.answers.get(asks.next) {
        let answer =
            serde_json::from_slice(answer).map_err(|e| format!("the answer to interrupt() does not fit: {e}"))?;
        asks.next += 1;
        return Ok(answer);
    }
    asks.asked = Some(serde_json::to_vec(&question)?);
    Err(Box::new(Interrupted) as BoxError)
}

/// Sets the thread's asks while a node's hooks run; puts back the old ones.
pub(crate) struct Asking(Option<Arc<Mutex<Asks>>>);

impl Drop for Asking {
    fn drop(&mut self) {
        let old = self.0.take();
        ASKING.with(|a| *a.borrow_mut() = old);
    }
}

/// What a node's hooks reach without arguments in a checkpointed or streamed
/// run: the visit's asks (for [`interrupt`]) and the event sink (for
/// [`emit`](crate::events::emit)). Set on the thread around a sync node, around
/// each poll of an async node's future (which may move between threads), and
/// inside work moved to another thread.
#[derive(Clone, Default)]
pub(crate) struct Ambient {
    asks: Option<Arc<Mutex<Asks>>>,
    emit: Option<(Sink, String, String, Option<usize>)>,
}

/// A node's visit in a run driven node by node, as a `flow!` machine gets it:
/// where its `exec` results are recorded (checkpointed runs), and what its
/// hooks reach (`interrupt`, `emit`).
#[doc(hidden)]
pub struct NodeVisit<'a> {
    pub(crate) visit: Option<Visit<'a>>,
    pub(crate) ambient: Ambient,
}

/// Puts back the thread's previous ambient when dropped.
pub(crate) struct InAmbient(#[allow(dead_code)] Asking, #[allow(dead_code)] Option<Emitting>);

impl Ambient {
    /// The ambient of a node: its visit's asks, and the sink of its events as
    /// node `node` of flow `flow`.
    pub(crate) fn new(visit: Option<&Visit<'_>>, sink: Option<&Sink>, flow: &str, node: &str) -> Self {
        Ambient {
            asks: visit.map(|v| Arc::clone(&v.asks)),
            emit: sink.map(|s| (s.clone(), flow.to_owned(), node.to_owned(), None)),
        }
    }

    /// The ambient set on this thread now (to carry to another thread).
    pub(crate) fn current() -> Self {
        Ambient { asks: ASKING.with(|a| a.borrow().clone()), emit: current_emit() }
    }

    /// Sets this ambient on the thread until the guard drops.
    pub(crate) fn enter(&self) -> InAmbient {
        let asks = self.asks.clone();
        let asking = Asking(ASKING.with(|a| std::mem::replace(&mut *a.borrow_mut(), asks)));
        let emitting = self.emit.as_ref().map(|(sink, flow, node, item)| sink.enter(flow, node, *item));
        InAmbient(asking, emitting)
    }

    /// The event sink of a streamed run.
    pub(crate) fn sink(&self) -> Option<&Sink> {
        self.emit.as_ref().map(|(sink, ..)| sink)
    }

    /// Whether there is nothing to set (a plain run).
    pub(crate) fn is_empty(&self) -> bool {
        self.asks.is_none() && self.emit.is_none()
    }

    /// This ambient for a journaled step: what its hooks emit is kept (the
    /// events returned) for the step's result instead of sent, so that the
    /// run sends it on whether the step ran or was replayed.
    pub(crate) fn keeping(&self) -> (Ambient, Option<Kept>) {
        let Some((_, flow, node, item)) = &self.emit else { return (self.clone(), None) };
        let kept = Kept::default();
        let emit = Some((Sink::Kept(Arc::clone(&kept.0)), flow.clone(), node.clone(), *item));
        (Ambient { asks: self.asks.clone(), emit }, Some(kept))
    }

    /// This ambient for batch item `item`: its emitted values say so.
    pub(crate) fn with_item(&self, item: usize) -> Ambient {
        let mut ambient = self.clone();
        if let Some((_, _, _, at)) = &mut ambient.emit {
            *at = Some(item);
        }
        ambient
    }

    /// `future`, with this ambient set on the thread during each of its polls.
    pub(crate) fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped { ambient: self, future: Box::pin(future) }
    }
}

/// A future polled inside an [`Ambient`].
pub(crate) struct Scoped<F> {
    ambient: Ambient,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _inside = self.ambient.enter();
        self.future.as_mut().poll(cx)
    }
}

/// One visit of a node in a checkpointed run: where its `exec` results are
/// recorded and what its interrupts were answered.
pub(crate) struct Visit<'a> {
    checkpointer: &'a dyn Checkpointer,
    run: &'a str,
    /// The checkpoint the node was entered at.
    seq: u64,
    /// The node's name: part of the key of its records, so that a record is
    /// never taken for another node's (see [`Journal`]).
    node: String,
    asks: Arc<Mutex<Asks>>,
    /// The node's checkpoint, when it is not written yet: it goes with the
    /// first record, in one write.
    staged: Staged,
    /// Whether the visit is a node's first try (not a resumed one): it has
    /// no records to look up.
    fresh: bool,
    /// In a journaled run, the journal each `exec` runs through as a step.
    steps: Option<&'a dyn StepJournal>,
    /// Whether the items of a batch node may go to the journal's workers
    /// ([`StepJournal::fan_out`]): only where a worker finds the node by its
    /// key (a runtime flow's nodes).
    fan_out: bool,
    /// The run's `StoreCodec<S>`, its type erased: how the store goes to the
    /// workers that run a parallel batch flow's items.
    codec: Option<&'a (dyn Any + Send + Sync)>,
}

/// A checkpoint waiting to be written with the next `exec` record.
type Staged = Arc<Mutex<Option<Checkpoint>>>;

impl<'a> Visit<'a> {
    /// The key of the record of the node's `exec` (`item` for a batch item).
    fn key(&self, item: Option<usize>) -> String {
        match item {
            Some(i) => format!("{}[{i}]", self.node),
            None => self.node.clone(),
        }
    }

    /// The `exec` result (of batch item `item`) recorded by an earlier try of
    /// this visit.
    pub(crate) fn recorded(&self, item: Option<usize>) -> Result<Option<Vec<u8>>, CheckpointError> {
        if self.fresh {
            return Ok(None);
        }
        self.checkpointer.get_exec(self.run, self.seq, &self.key(item))
    }

    /// Records an `exec` result (of batch item `item`) before `post` runs,
    /// with the node's checkpoint when that is not written yet. Records made at
    /// the same time (items on several threads) wait until that checkpoint is
    /// written: none is stored under a checkpoint that a crash could lose.
    pub(crate) fn record(&self, item: Option<usize>, value: &[u8]) -> Result<(), CheckpointError> {
        let mut staged = self.staged.lock();
        if let Some(checkpoint) = staged.take() {
            let written =
                self.checkpointer.put_with_exec(self.run, Some(&checkpoint), self.seq, &self.key(item), value);
            if written.is_err() {
                *staged = Some(checkpoint);
            }
            return written;
        }
        drop(staged);
        self.checkpointer.put_exec(self.run, self.seq, &self.key(item), value)
    }

    /// The visit of a node in item `item` of batch flow `batch`, whose visit
    /// this is, at `place` in the item's run (see `flow/items.rs`): its records
    /// are kept under this visit's checkpoint, with a key of their own; it
    /// cannot pause, as the items run at the same time.
    pub(crate) fn within_item(&self, batch: &str, item: usize, place: &str) -> Visit<'a> {
        let refused = self.asks.lock().refused.clone().unwrap_or_else(|| {
            format!(
                "interrupt() cannot pause inside the items of batch flow `{batch}`, which run at the same time: \
                 make the batch flow sequential, or ask before or after it"
            )
        });
        let asks = Asks { refused: Some(refused), ..Asks::default() };
        self.derived(format!("{}[{item}] > {place}", self.node), Arc::new(Mutex::new(asks)))
    }

    /// The visit of a node at `place` in the `flow!` flow whose visit this is
    /// (a `flow!` flow in a runtime flow): its records are kept under this
    /// visit's checkpoint, with a key of their own, and its interrupts take
    /// this visit's answers, in the order the flow asks them.
    pub(crate) fn within_flow(&self, place: &str) -> Visit<'a> {
        self.derived(format!("{} > {place}", self.node), Arc::clone(&self.asks))
    }

    fn derived(&self, node: String, asks: Arc<Mutex<Asks>>) -> Visit<'a> {
        Visit {
            checkpointer: self.checkpointer,
            run: self.run,
            seq: self.seq,
            node,
            asks,
            staged: Arc::clone(&self.staged),
            fresh: self.fresh,
            steps: self.steps,
            fan_out: self.fan_out,
            codec: self.codec,
        }
    }

    /// The visit of node `node` (its place in the run: `outer > node#3`) in a
    /// run journaled by `steps`: no checkpoints; its `exec` is a step. A batch
    /// node's items may go to the journal's workers when `fan_out` says so.
    pub(crate) fn stepped(steps: &'a dyn StepJournal, run: &'a str, node: String, fan_out: bool) -> Visit<'a> {
        Visit {
            checkpointer: &NoCheckpoints,
            run,
            seq: 0,
            node,
            asks: Arc::default(),
            staged: Staged::default(),
            fresh: true,
            steps: Some(steps),
            fan_out,
            codec: None,
        }
    }

    /// This visit, with the run's store codec (see [`StoreCodec`]).
    pub(crate) fn with_codec(mut self, codec: Option<&'a (dyn Any + Send + Sync)>) -> Self {
        self.codec = codec;
        self
    }

    /// The run's store codec, when the run has one for stores of type `S`.
    pub(crate) fn store_codec<S: 'static>(&self) -> Option<&'a StoreCodec<S>> {
        self.codec.and_then(|codec| codec.downcast_ref())
    }

    /// Whether a batch node's items may go to the journal's workers.
    pub(crate) fn may_fan_out(&self) -> bool {
        self.fan_out
    }

    /// The journal the node's `exec` runs through, in a journaled run.
    pub(crate) fn steps(&self) -> Option<&'a dyn StepJournal> {
        self.steps
    }

    /// The name of the node's step (its place in the run).
    pub(crate) fn step_name(&self) -> &str {
        &self.node
    }

    /// How many answers the node's interrupts have taken so far.
    pub(crate) fn answers_taken(&self) -> usize {
        self.asks.lock().next
    }

    /// Skips `n` answers: those an `exec` took before its result was recorded,
    /// when the record is used instead of running it again.
    pub(crate) fn skip_answers(&self, n: usize) {
        self.asks.lock().next += n;
    }

    /// The question an `interrupt` asked during a step of this visit (a
    /// journaled run), taken: what the step journals.
    pub(crate) fn asked_in(asks: &Mutex<Asks>) -> Option<Vec<u8>> {
        asks.lock().asked.take()
    }

    /// This visit's asks, for a step that runs on another thread or task.
    pub(crate) fn asks_handle(&self) -> Arc<Mutex<Asks>> {
        Arc::clone(&self.asks)
    }

    /// A journaled run got the answer to its node's next question: the node
    /// runs again and its interrupts, from the first, take the answers so far.
    pub(crate) fn answered(&self, answer: Vec<u8>) {
        let mut asks = self.asks.lock();
        asks.answers.push(answer);
        asks.next = 0;
        asks.asked = None;
    }

    /// The checkpoint the node was entered at.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The run id, for errors.
    pub(crate) fn run(&self) -> &'a str {
        self.run
    }

    /// The question asked by the interrupt that stopped the node, and the
    /// answers it had.
    fn asked(&self) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        let mut asks = self.asks.lock();
        (asks.asked.take(), asks.answers.clone())
    }
}

/// Writes a run's checkpoints: numbers them, and sends a field again only
/// when it changed since the checkpoint before.
pub(crate) struct Journal<'a> {
    checkpointer: &'a dyn Checkpointer,
    run: &'a str,
    flow: &'a str,
    /// The newest checkpoint of the run (the parent of the next).
    last: u64,
    /// The number the next checkpoint gets (above every one the run has).
    next: u64,
    /// The fields of the checkpoint `last`, as written.
    fields: Vec<(String, Vec<u8>)>,
    /// The newest checkpoint of a node, when it waits to be written with the
    /// node's first `exec` record: one write per transition instead of two. A
    /// crash before that write resumes from the checkpoint before, whose
    /// node's `exec` is recorded: its `post` runs again, nothing is paid twice.
    staged: Staged,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(checkpointer: &'a dyn Checkpointer, run: &'a str, flow: &'a str, next: u64) -> Self {
        Journal { checkpointer, run, flow, last: 0, next, fields: Vec::new(), staged: Staged::default() }
    }

    /// Continues after checkpoint `from` (its fields are what the next
    /// checkpoint compares with).
    pub(crate) fn follow(&mut self, from: &Checkpoint) {
        self.last = from.seq;
        self.fields = from.values();
    }

    pub(crate) fn error(&self, source: CheckpointError) -> Error {
        Error::Checkpoint { flow: self.flow.to_owned(), run: self.run.to_owned(), source }
    }

    /// Writes a checkpoint at `path` with the store's `fields`; returns its number.
    pub(crate) fn write(
        &mut self,
        path: Vec<String>,
        steps: Vec<u64>,
        status: Status,
        visit: Option<u64>,
        answers: Vec<Vec<u8>>,
        fields: Vec<(String, Vec<u8>)>,
    ) -> Result<u64, Error> {
        self.flush()?;
        let seq = self.next;
        let marked = fields
            .iter()
            .map(|(name, value)| {
                let same = self.fields.iter().any(|(n, v)| n == name && v == value);
                (name.clone(), if same { Field::Unchanged } else { Field::Value(value.clone()) })
            })
            .collect();
        let checkpoint = Checkpoint {
            seq,
            parent: (self.last > 0).then_some(self.last),
            visit: visit.unwrap_or(seq),
            path,
            steps,
            status,
            answers,
            fields: marked,
            created_ms: now_ms(),
        };
        if checkpoint.status == Status::Running {
            *self.staged.lock() = Some(checkpoint);
        } else {
            self.checkpointer.put(self.run, &checkpoint).map_err(|e| self.error(e))?;
        }
        self.last = seq;
        self.next = seq + 1;
        self.fields = fields;
        Ok(seq)
    }

    /// Writes the staged checkpoint, if any: before the next one, and when a
    /// node fails.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        let staged = self.staged.lock().take();
        match staged {
            Some(checkpoint) => self.checkpointer.put(self.run, &checkpoint).map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }

    /// The visit of the node entered at checkpoint `seq`, with the answers
    /// its interrupts have; `fresh` when it is the node's first try, which has
    /// no records yet.
    pub(crate) fn visit(&self, seq: u64, node: &str, answers: Vec<Vec<u8>>, fresh: bool) -> Visit<'a> {
        let asks = Asks { answers, ..Asks::default() };
        Visit {
            checkpointer: self.checkpointer,
            run: self.run,
            seq,
            node: node.to_owned(),
            asks: Arc::new(Mutex::new(asks)),
            staged: Arc::clone(&self.staged),
            fresh,
            steps: None,
            fan_out: false,
            codec: None,
        }
    }

    /// The fields of the newest checkpoint.
    pub(crate) fn last_fields(&self) -> &[(String, Vec<u8>)] {
        &self.fields
    }

    /// The question a visit stopped on, and its answers so far.
    pub(crate) fn asked(visit: &Visit<'_>) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        visit.asked()
    }
}
