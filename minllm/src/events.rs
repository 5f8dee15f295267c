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

/// Where a streamed run sends its events.
#[derive(Clone)]
pub(crate) struct Sink {
    tx: mpsc::Sender<Event>,
}

impl Sink {
    pub(crate) fn new() -> (Sink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        (Sink { tx }, rx)
    }

    /// Sends an event; a consumer that stopped listening is not an error.
    pub(crate) fn send(&self, kind: EventKind, flow: &str, node: &str) {
        let _ = self.tx.send(Event { kind, flow: flow.to_owned(), node: node.to_owned() });
    }

    /// Makes [`emit`] send to this sink, as node `node` of `flow`, on this
    /// thread until the guard drops.
    pub(crate) fn enter(&self, flow: &str, node: &str) -> Emitting {
        let here = Some((self.clone(), flow.to_owned(), node.to_owned()));
        Emitting(EMITTING.with(|e| std::mem::replace(&mut *e.borrow_mut(), here)))
    }
}

type Here = Option<(Sink, String, String)>;

thread_local! {
    /// The sink, flow and node of the hook running on this thread, in a streamed run.
    static EMITTING: RefCell<Here> = const { RefCell::new(None) };
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
        if let Some((sink, flow, node)) = &*e.borrow() {
            let value = serde_json::to_value(value).unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
            sink.send(EventKind::Custom(value), flow, node);
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
