//! Durable runs: a run given a [`Checkpointer`] and a run id records where it
//! is and its store at every transition, and each `exec` result before its
//! `post`; it can then be resumed in any process after a crash, paused for a
//! human with [`interrupt`], listed and branched from an earlier checkpoint.
//!
//! ```
//! use minllm::durable::{MemoryCheckpointer, Outcome};
//! use minllm::{ExecContext, Flow, Node, NodeResult, Params};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Order { draft: String, approved: bool }
//!
//! struct Approve;
//! impl Node<Order> for Approve {
//!     type Prep = String;
//!     type Exec = String;
//!     type Action = ();
//!     fn prep(&self, order: &Order, _: &Params) -> NodeResult<String> { Ok(order.draft.clone()) }
//!     fn exec(&self, draft: &String, _: &ExecContext) -> NodeResult<String> {
//!         // Pauses the run the first time; returns the answer once resumed with one.
//!         minllm::durable::interrupt(format!("publish {draft}?"))
//!     }
//!     fn post(&self, order: &mut Order, _: String, answer: String) -> NodeResult<()> {
//!         order.approved = answer == "yes";
//!         Ok(())
//!     }
//! }
//!
//! let mut flow = Flow::new("publish");
//! flow.add("approve", Approve);
//! let checkpoints = MemoryCheckpointer::new();
//! let run = flow.durable(&checkpoints, "order-42");
//!
//! let mut order = Order { draft: "a post".into(), approved: false };
//! let Outcome::Paused(pause) = run.run(&mut order).unwrap() else { panic!("it asks first") };
//! assert_eq!(pause.question::<String>().unwrap(), "publish a post?");
//!
//! // Later, in any process: the store comes back from the checkpoint.
//! let mut order = Order::default();
//! let outcome = run.resume_with(&mut order, "yes").unwrap();
//! assert!(matches!(outcome, Outcome::Finished(_)));
//! assert!(order.approved);
//! ```

mod codec;
mod interrupted;
mod kept;
mod memory;
mod outcome;
pub(crate) mod run;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod steps;
pub(crate) mod visit;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::error::CheckpointError;
pub use codec::{DurableStore, register};
pub(crate) use codec::{ExecRecord, decode_value, encode_value};
pub(crate) use interrupted::is_interrupt;
pub(crate) use kept::{send_kept, with_kept};
pub use memory::MemoryCheckpointer;
pub use run::DurableRun;
pub(crate) use run::{Drive, Mode, Plan, SaveFields, ready, stream_flow, stream_flow_async};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCheckpointer;
pub(crate) use steps::StoreCodec;
#[cfg(feature = "restate")]
pub(crate) use steps::{Journaled, run_journaled_with};
pub use steps::{StepJournal, StepResult, run_journaled};
pub(crate) use visit::NodeVisit;
pub(crate) use visit::{Ambient, Journal, Visit};
pub use visit::{Outcome, Pause, interrupt};

/// How a run stood at one checkpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Status {
    /// About to run the node at [`Checkpoint::path`].
    Running,
    /// Paused by [`interrupt`] in the node at [`Checkpoint::path`], with the
    /// question (JSON).
    Paused {
        /// The value given to `interrupt`, as JSON.
        question: Vec<u8>,
    },
    /// The run ended with this action.
    Finished {
        /// The last node's action.
        action: String,
    },
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused { .. } => "paused",
            Status::Finished { .. } => "finished",
        }
    }
}

/// A field of a checkpointed store, as handed to [`Checkpointer::put`].
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The field's encoded value.
    Value(Vec<u8>),
    /// The same value as in the checkpoint's parent: a backend keeps one copy.
    Unchanged,
}

/// One checkpoint of a run: where it was, how it stood, its store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Its number in the run, from 1; numbers only grow.
    pub seq: u64,
    /// The checkpoint this one follows (`None` for the first), so that a run
    /// branched from an earlier checkpoint keeps its history apart.
    pub parent: Option<u64>,
    /// The checkpoint at which the current node was entered: `exec` results are
    /// recorded under it ([`Checkpointer::put_exec`]).
    pub visit: u64,
    /// The names of the nested flows entered, outermost first, then the node.
    pub path: Vec<String>,
    /// The steps each flow of `path` has taken.
    pub steps: Vec<u64>,
    /// How the run stood.
    pub status: Status,
    /// The answers given to the node's [`interrupt`]s so far (JSON), in order.
    pub answers: Vec<Vec<u8>>,
    /// The store, field by field. Loaded checkpoints hold only [`Field::Value`]s.
    pub fields: Vec<(String, Field)>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl Checkpoint {
    /// A checkpoint, for a backend or a driver outside this crate (the Python
    /// package) that writes one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u64,
        parent: Option<u64>,
        visit: u64,
        path: Vec<String>,
        steps: Vec<u64>,
        status: Status,
        answers: Vec<Vec<u8>>,
        fields: Vec<(String, Field)>,
        created_ms: u64,
    ) -> Self {
        Checkpoint { seq, parent, visit, path, steps, status, answers, fields, created_ms }
    }

    /// The node the checkpoint is at (the last name of its path).
    pub fn node(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }

    /// The fields that hold a value, copied (a loaded checkpoint holds only those).
    pub(crate) fn values(&self) -> Vec<(String, Vec<u8>)> {
        self.fields
            .iter()
            .filter_map(|(n, f)| match f {
                Field::Value(v) => Some((n.clone(), v.clone())),
                Field::Unchanged => None,
            })
            .collect()
    }
}

/// A line of a run's history: [`Checkpointer::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// The checkpoint's number.
    pub seq: u64,
    /// The checkpoint it follows.
    pub parent: Option<u64>,
    /// The transitions the run had taken (the outermost flow's steps).
    pub step: u64,
    /// The nested flows and the node, as `outer > inner > node`.
    pub node: String,
    /// `running`, `paused` or `finished`.
    pub status: &'static str,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl fmt::Display for CheckpointInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} step {} at {} ({})", self.seq, self.step, self.node, self.status)
    }
}

impl From<&Checkpoint> for CheckpointInfo {
    fn from(c: &Checkpoint) -> Self {
        CheckpointInfo {
            seq: c.seq,
            parent: c.parent,
            step: c.steps.first().copied().unwrap_or(0),
            node: c.path.join(" > "),
            status: c.status.name(),
            created_ms: c.created_ms,
        }
    }
}

/// Held while a process runs a run id; dropping it lets others take the run.
pub struct RunLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl RunLock {
    /// A lock that releases by dropping `guard`.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        RunLock(Box::new(guard))
    }
}

impl fmt::Debug for RunLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunLock")
    }
}

/// Where checkpoints live. The engine calls it; users pick an implementation
/// ([`MemoryCheckpointer`], `SqliteCheckpointer`) and pass it to
/// [`Flow::durable`](crate::Flow::durable).
///
/// The contract a backend keeps (a Postgres table shared by many machines, or a
/// durable-execution engine, can keep it too):
///
/// - [`lock`](Checkpointer::lock) gives one holder at a time per run id, at
///   once or with [`CheckpointError::Busy`], and the lock goes away with the
///   process that held it (a crashed holder must not block a resume).
/// - [`put`](Checkpointer::put) stores a checkpoint atomically: after a crash
///   a reader sees it whole or not at all. A [`Field::Unchanged`] field takes
///   the parent checkpoint's value. A `seq` that exists already is a
///   [`CheckpointError::Conflict`].
/// - [`put_exec`](Checkpointer::put_exec) (and
///   [`put_with_exec`](Checkpointer::put_with_exec)) is durable before it
///   returns: the engine runs the node's `post` only after it.
/// - Reads never run code: what is stored is bytes, decoded by the engine as
///   plain data.
pub trait Checkpointer: Send + Sync {
    /// Takes the run `run` for the caller until the lock is dropped.
    fn lock(&self, run: &str) -> Result<RunLock, CheckpointError>;
    /// Stores a checkpoint of run `run`.
    fn put(&self, run: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    /// Records an `exec` result of the node entered at checkpoint `visit`;
    /// `key` tells the items of a batch apart (`""` for a plain node).
    fn put_exec(&self, run: &str, visit: u64, key: &str, value: &[u8]) -> Result<(), CheckpointError>;
    /// [`put`](Checkpointer::put) of `checkpoint` (when given) and
    /// [`put_exec`](Checkpointer::put_exec), in this order. The engine writes a
    /// node's checkpoint with its first `exec` record this way: a backend that
    /// can should write both at once (the SQLite backend does, in one
    /// transaction).
    fn put_with_exec(
        &self,
        run: &str,
        checkpoint: Option<&Checkpoint>,
        visit: u64,
        key: &str,
        value: &[u8],
    ) -> Result<(), CheckpointError> {
        if let Some(checkpoint) = checkpoint {
            self.put(run, checkpoint)?;
        }
        self.put_exec(run, visit, key, value)
    }
    /// An `exec` result recorded by [`put_exec`](Checkpointer::put_exec).
    fn get_exec(&self, run: &str, visit: u64, key: &str) -> Result<Option<Vec<u8>>, CheckpointError>;
    /// Checkpoint `seq` of run `run`, with every field's value.
    fn get(&self, run: &str, seq: u64) -> Result<Option<Checkpoint>, CheckpointError>;
    /// The newest checkpoint of run `run`.
    fn latest(&self, run: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    /// Every checkpoint of run `run`, oldest first.
    fn history(&self, run: &str) -> Result<Vec<CheckpointInfo>, CheckpointError>;
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
