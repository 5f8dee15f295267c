//! What a checkpointed run ends with: finished, or paused for an answer.

use serde::de::DeserializeOwned;

use crate::action::Label;

/// How a checkpointed run ended.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// The flow finished with this action.
    Finished(Label),
    /// A node called [`interrupt`](super::interrupt): the run waits, in its checkpoints only,
    /// for an answer.
    Paused(Pause),
}

/// A run paused by [`interrupt`](super::interrupt): what it asks, and where.
#[derive(Debug, Clone)]
pub struct Pause {
    pub(crate) run: String,
    pub(crate) node: String,
    pub(crate) question: Vec<u8>,
}

impl Pause {
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The node that asked, with the nested flows around it (`outer > node`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The question, as the type it was asked with (or any type it fits).
    pub fn question<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.question)
    }

    /// The question as JSON.
    pub fn question_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.question).unwrap_or(serde_json::Value::Null)
    }
}
