//! What a journaled step's hooks emit, kept in the step's result instead of
//! sent (see `Ambient::keeping`), so that the run sends the same values
//! whether the step ran or was replayed.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::events::{Event, EventKind, current_emit};

/// The values a journaled step emitted (see [`Ambient::keeping`]).
#[derive(Default)]
pub(crate) struct Kept(pub(super) Arc<Mutex<Vec<Event>>>);

impl Kept {
    /// The step's result `outcome` with the values kept, as the journal
    /// keeps it: `"events": [{"item": .., "value": ..}, ..]` beside it.
    pub(crate) fn into_outcome(self, outcome: Vec<u8>) -> Vec<u8> {
        let events: Vec<serde_json::Value> = self
            .0
            .lock()
            .drain(..)
            .filter_map(|event| match event.kind {
                EventKind::Custom(value) => Some(serde_json::json!({ "item": event.item, "value": value })),
                _ => None,
            })
            .collect();
        if events.is_empty() {
            return outcome;
        }
        match serde_json::from_slice::<serde_json::Value>(&outcome) {
            Ok(serde_json::Value::Object(mut fields)) => {
                fields.insert("events".to_owned(), serde_json::Value::Array(events));
                serde_json::to_vec(&fields).unwrap_or(outcome)
            }
            _ => outcome,
        }
    }
}

/// `outcome` with what `kept` kept, if anything (see [`Kept::into_outcome`]).
pub(crate) fn with_kept(kept: Option<Kept>, outcome: Vec<u8>) -> Vec<u8> {
    match kept {
        Some(kept) => kept.into_outcome(outcome),
        None => outcome,
    }
}

/// Sends on the values a journaled step's result kept (run or replayed), to
/// the sink of the run's node on this thread, if any.
pub(crate) fn send_kept(outcome: &[u8]) {
    let Some((sink, flow, node, _)) = current_emit() else { return };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(outcome) else { return };
    let Some(events) = value.get("events").and_then(|e| e.as_array()) else { return };
    for event in events {
        let item = event.get("item").and_then(serde_json::Value::as_u64).and_then(|i| usize::try_from(i).ok());
        let value = event.get("value").cloned().unwrap_or(serde_json::Value::Null);
        sink.send_item(EventKind::Custom(value), &flow, &node, item);
    }
}
