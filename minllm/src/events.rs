//! What happens in a run, as it happens: each node's start and end, and the
//! custom values hooks [`emit`] (the tokens of an LLM answer, progress).
//! [`Flow::stream`](crate::Flow::stream) hands them to the caller as an
//! iterator while the flow runs.

use std::cell::RefCell;
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The flows the node runs in, outermost first (`outer > inner`, with
    /// `[i]` for a batch flow's item).
    pub flow: String,
    /// The node's name in its flow.
    pub node: String,
    /// For a value a batch node's item emitted: the item's index.
    pub item: Option<usize>,
}

/// What an [`Event`] says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The node started (its `prep` is about to run).
    NodeStarted,
    /// The node finished with this action, after this long.
    NodeFinished {
        /// The action its `post` returned.
        action: String,
        /// How long the node took.
        elapsed: Duration,
    },
    /// A value a hook gave to [`emit`].
    Custom(serde_json::Value),
}

impl EventKind {
    /// `node_started`, `node_finished` or `custom`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::NodeStarted => "node_started",
            EventKind::NodeFinished { .. } => "node_finished",
            EventKind::Custom(_) => "custom",
        }
    }
}

/// Where a streamed run sends its events: to a thread (sync) or a task (async).
#[derive(Clone)]
pub(crate) enum Sink {
    Thread(mpsc::Sender<Event>),
    Task(tokio::sync::mpsc::UnboundedSender<Event>),
    /// Kept for a journaled step's result, which a replay sends on.
    Kept(std::sync::Arc<parking_lot::Mutex<Vec<Event>>>),
}

impl Sink {
    pub(crate) fn new() -> (Sink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        (Sink::Thread(tx), rx)
    }

    pub(crate) fn new_async() -> (Sink, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Sink::Task(tx), rx)
    }

    /// Sends an event; a consumer that stopped listening is not an error.
    pub(crate) fn send(&self, kind: EventKind, flow: &str, node: &str) {
        self.send_item(kind, flow, node, None);
    }

    /// [`send`](Sink::send) for batch item `item`.
    pub(crate) fn send_item(&self, kind: EventKind, flow: &str, node: &str, item: Option<usize>) {
        let event = Event { kind, flow: flow.to_owned(), node: node.to_owned(), item };
        let _ = match self {
            Sink::Thread(tx) => tx.send(event).map_err(drop),
            Sink::Task(tx) => tx.send(event).map_err(drop),
            Sink::Kept(kept) => {
                kept.lock().push(event);
                Ok(())
            }
        };
    }

    /// Makes [`emit`] send to this sink, as node `node` of `flow` (its item
    /// `item`), on this thread until the guard drops.
    pub(crate) fn enter(&self, flow: &str, node: &str, item: Option<usize>) -> Emitting {
        let here = Some((self.clone(), flow.to_owned(), node.to_owned(), item));
        Emitting(EMITTING.with(|e| std::mem::replace(&mut *e.borrow_mut(), here)))
    }
}

pub(crate) type Here = Option<(Sink, String, String, Option<usize>)>;

thread_local! {
    /// The sink, flow and node of the hook running on this thread, in a streamed run.
    static EMITTING: RefCell<Here> = const { RefCell::new(None) };
}

/// The sink set on this thread now, with its flow and node.
pub(crate) fn current_emit() -> Here {
    EMITTING.with(|e| e.borrow().clone())
}

/// Puts back the thread's previous sink when dropped.
pub(crate) struct Emitting(Here);

impl Drop for Emitting {
    fn drop(&mut self) {
        let old = self.0.take();
        EMITTING.with(|e| *e.borrow_mut() = old);
    }
}

/// Sends `value` to the caller of a streamed run as a
/// [`Custom`](EventKind::Custom) event, from any hook: each token of an LLM
/// answer, a progress note. Outside a streamed run, and from threads a hook
/// starts itself, it does nothing.
///
/// ```
/// use minllm::events::emit;
///
/// fn on_token(token: &str) {
///     emit(token);
/// }
/// on_token("Hello"); // not in a streamed run: nothing happens
/// ```
pub fn emit<T: Serialize>(value: T) {
    EMITTING.with(|e| {
        if let Some((sink, flow, node, item)) = &*e.borrow() {
            let value = serde_json::to_value(value).unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
            sink.send_item(EventKind::Custom(value), flow, node, *item);
        }
    });
}

/// The events of a streamed run, as they happen: see
/// [`Flow::stream`](crate::Flow::stream).
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

/// The events of a streamed async run, as a [`Stream`](futures_util::Stream):
/// see [`Flow::stream_async`](crate::Flow::stream_async).
pub struct AsyncEvents {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

impl AsyncEvents {
    /// The next event; `None` once the run ended and every event was taken.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for AsyncEvents {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for AsyncEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncEvents")
    }
}
