//! The one error type of minllm, and the error type of user hooks.

use std::fmt;

/// The error a node's hook returns: any error type converts into it with `?`,
/// and so do `&str` and `String` (`Err("no answer".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of node hooks (`prep`, `exec`, `exec_fallback`, `post`).
pub type NodeResult<T> = Result<T, BoxError>;

/// What went wrong in a checkpoint backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Another process (or another run in this one) holds the run.
    #[error("run `{run}` is being run by another process; wait for it to end, or resume another run id")]
    Busy {
        /// The run id.
        run: String,
    },
    /// The database is damaged or was not written by minllm.
    #[error("checkpoint database {path} cannot be used: {reason}")]
    Damaged {
        /// Where the database is.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint with this number exists already: two writers raced.
    #[error("run `{run}` already has checkpoint {seq}: another process wrote to this run")]
    Conflict {
        /// The run id.
        run: String,
        /// The checkpoint's number.
        seq: u64,
    },
    /// The backend failed (I/O, the database engine).
    #[error("checkpoint backend failed: {0}")]
    Backend(String),
}

/// Which step of a node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// `prep`: reading the store.
    Prep,
    /// `exec`: the work itself, after its last attempt.
    Exec,
    /// `exec_fallback`: the handler that runs after the last failed attempt.
    Fallback,
    /// `post`: writing the store and choosing the action.
    Post,
    /// The preparation of a batch flow's params.
    BatchParams,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Prep => "prep",
            Stage::Exec => "exec",
            Stage::Fallback => "exec_fallback",
            Stage::Post => "post",
            Stage::BatchParams => "batch params",
        })
    }
}

/// Formats ` (item 3)` for batch items and nothing otherwise.
struct ItemSuffix(Option<usize>);

impl fmt::Display for ItemSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, " (item {i})"),
            None => Ok(()),
        }
    }
}

/// Formats ` after 3 attempts` when there was more than one.
struct AttemptsSuffix(u32);

impl fmt::Display for AttemptsSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 | 1 => Ok(()),
            n => write!(f, " after {n} attempts"),
        }
    }
}

/// Everything that can stop a flow or a node.
///
/// Each variant names where it happened: `flow` is the path of flows from the
/// outermost one, e.g. `pipeline > per_file[2] > summarize` for item 2 of a batch
/// flow `per_file` inside `pipeline`; `node` is the name the node was added under.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hook returned an error (for `exec`: on its last attempt, and the fallback
    /// re-raised it).
    #[error(
        "{stage} of node `{node}` in flow `{flow}` failed{item}{tries}: {source}",
        item = ItemSuffix(*.item),
        tries = AttemptsSuffix(*.attempts)
    )]
    Node {
        /// The flow path.
        flow: String,
        /// The node's name in its flow.
        node: String,
        /// The hook that failed.
        stage: Stage,
        /// The batch item's index, for batch nodes.
        item: Option<usize>,
        /// How many attempts `exec` made (1 for other stages).
        attempts: u32,
        /// The error the hook returned.
        #[source]
        source: BoxError,
    },
    /// A hook panicked. The panic was caught; the store is not poisoned.
    #[error(
        "{stage} of node `{node}` in flow `{flow}` panicked{item}{tries}: {message}",
        item = ItemSuffix(*.item),
        tries = AttemptsSuffix(*.attempts)
    )]
    Panic {
        /// The flow path.
        flow: String,
        /// The node's name in its flow.
        node: String,
        /// The hook that panicked.
        stage: Stage,
        /// The batch item's index, for batch nodes.
        item: Option<usize>,
        /// How many attempts `exec` made, each failing or panicking (1 for other stages).
        attempts: u32,
        /// The panic's message.
        message: String,
    },
    /// A flow ran more steps than its `max_steps` allows.
    #[error(
        "flow `{flow}` exceeded its step limit of {limit} steps; {}",
        if recent.is_empty() { "no step ran".to_owned() } else { format!("last steps: {recent}") }
    )]
    StepLimit {
        /// The flow path.
        flow: String,
        /// The limit set with [`Flow::max_steps`](crate::Flow::max_steps).
        limit: u64,
        /// The last nodes run, oldest first, as `a -> b -> a`.
        recent: String,
    },
    /// A flow was run without a start node.
    #[error("flow `{flow}` has no start node; call `Flow::start` before running it")]
    NoStart {
        /// The flow path.
        flow: String,
    },
    /// An edge leads to a node of another flow.
    #[error("node `{node}` in flow `{flow}` has an edge on action `{action}` to a node that is not in this flow")]
    UnknownTarget {
        /// The flow path.
        flow: String,
        /// The node the edge starts from.
        node: String,
        /// The edge's action.
        action: String,
    },
    /// `Flow::start` was given a node of another flow.
    #[error("flow `{flow}`: the start node given to `Flow::start` belongs to another flow")]
    ForeignStart {
        /// The flow path.
        flow: String,
    },
    /// A sync run (`Flow::run`) reached an async node.
    #[error("node `{node}` in flow `{flow}` is async; run the flow with `run_async`")]
    AsyncInSyncRun {
        /// The flow path.
        flow: String,
        /// The async node.
        node: String,
    },
    /// A node returned an action that has no edge, while it has edges for
    /// others: a typo, or an end that was not declared with [`End`](crate::End).
    #[error(
        "node `{node}` in flow `{flow}` returned action `{action}`, which has no edge (its edges: {}); add an edge for it, or `>> End` if the flow ends there",
        edges.join(", ")
    )]
    MissingEdge {
        /// The flow path.
        flow: String,
        /// The node.
        node: String,
        /// The action it returned.
        action: String,
        /// The actions it has edges (or ends) for.
        edges: Vec<String>,
    },
    /// The flow cannot run: the problem [`Flow::validate`](crate::Flow::validate)
    /// reports, found before the first node ran.
    #[error("flow `{flow}` cannot run: {problem}")]
    Invalid {
        /// The flow path of the run.
        flow: String,
        /// What is wrong, with the path of the flow it is in.
        problem: Box<crate::graph::Problem>,
    },
    /// Flows nest so deeply through nodes that recurse (batch flows inside
    /// batch flows) that the thread's stack would run out.
    #[error(
        "flow `{flow}` is nested too deeply for the thread's stack ({left} bytes left); nest fewer batch flows, or run on a thread with a bigger stack"
    )]
    TooDeep {
        /// The flow path.
        flow: String,
        /// The bytes of stack that were left.
        left: usize,
    },
    /// The run was cancelled because a parallel branch failed first.
    #[error("flow `{flow}` was cancelled because another branch failed")]
    Cancelled {
        /// The flow path.
        flow: String,
    },
    /// A checkpointed run could not read or write its checkpoints.
    #[error("run `{run}` of flow `{flow}`: {source}")]
    Checkpoint {
        /// The flow path.
        flow: String,
        /// The run id.
        run: String,
        /// What the backend said.
        #[source]
        source: CheckpointError,
    },
    /// A value could not go into a checkpoint (or come back out of one): the
    /// run stopped before anything was lost, at its last checkpoint.
    #[error("run `{run}` of flow `{flow}`: {what} cannot be checkpointed: {reason}")]
    NotCheckpointable {
        /// The flow path.
        flow: String,
        /// The run id.
        run: String,
        /// The value: `the store`, `the exec result of node `n``, ...
        what: String,
        /// Why.
        reason: String,
    },
    /// A run cannot be started or resumed as asked.
    #[error("run `{run}` of flow `{flow}` cannot be resumed: {reason}")]
    Resume {
        /// The flow path.
        flow: String,
        /// The run id.
        run: String,
        /// Why: no such run, a node that is gone from the flow, ...
        reason: String,
    },
}

impl Error {
    /// The node the error happened in, if it happened in one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Error::Node { node, .. }
            | Error::Panic { node, .. }
            | Error::UnknownTarget { node, .. }
            | Error::MissingEdge { node, .. }
            | Error::AsyncInSyncRun { node, .. } => Some(node),
            _ => None,
        }
    }

    /// The flow path the error happened in.
    pub fn flow(&self) -> &str {
        match self {
            Error::Node { flow, .. }
            | Error::Panic { flow, .. }
            | Error::StepLimit { flow, .. }
            | Error::NoStart { flow }
            | Error::ForeignStart { flow }
            | Error::UnknownTarget { flow, .. }
            | Error::AsyncInSyncRun { flow, .. }
            | Error::MissingEdge { flow, .. }
            | Error::Invalid { flow, .. }
            | Error::TooDeep { flow, .. }
            | Error::Cancelled { flow }
            | Error::Checkpoint { flow, .. }
            | Error::NotCheckpointable { flow, .. }
            | Error::Resume { flow, .. } => flow,
        }
    }

    /// The batch item the error happened in, for batch nodes.
    pub fn item(&self) -> Option<usize> {
        match self {
            Error::Node { item, .. } | Error::Panic { item, .. } => *item,
            _ => None,
        }
    }

    /// The stage (hook) that failed, for hook errors and panics.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Error::Node { stage, .. } | Error::Panic { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

/// The error `exec_fallback` receives when the last attempt of `exec` panicked
/// (a panicking attempt is retried like a failing one). If the fallback returns
/// it, the node fails with [`Error::Panic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(pub String);

/// Why a hook call failed, before the flow adds where it happened.
#[derive(Debug)]
pub(crate) enum Failure {
    Returned { source: BoxError, attempts: u32 },
    Panicked { message: String, attempts: u32 },
}

impl Failure {
    /// A panic in a hook that was called once.
    pub(crate) fn panicked(payload: Box<dyn std::any::Any + Send>) -> Failure {
        Failure::Panicked { message: panic_message(payload), attempts: 1 }
    }

    /// The failure an error from a fallback stands for: a panic when it is the
    /// [`Panicked`] the fallback was given.
    pub(crate) fn from_fallback(source: BoxError, attempts: u32) -> Failure {
        match source.downcast::<Panicked>() {
            Ok(panicked) => Failure::Panicked { message: panicked.0, attempts },
            Err(source) => Failure::Returned { source, attempts },
        }
    }

    /// The error an attempt's failure gives to the next step (retry or fallback).
    pub(crate) fn into_source(self) -> BoxError {
        match self {
            Failure::Returned { source, .. } => source,
            Failure::Panicked { message, .. } => Box::new(Panicked(message)),
        }
    }

    /// The error of node `node` in flow `flow` (a path, as it prints).
    pub(crate) fn into_error(self, flow: String, node: String, stage: Stage, item: Option<usize>) -> Error {
        match self {
            Failure::Returned { source, attempts } => Error::Node { flow, node, stage, item, attempts, source },
            Failure::Panicked { message, attempts } => Error::Panic { flow, node, stage, item, attempts, message },
        }
    }
}

/// How many of the last steps a step-limit error names.
#[doc(hidden)]
pub const STEP_TRAIL: usize = 8;

impl Error {
    /// The error of flow `flow` (a path) reaching its step limit after `taken`
    /// steps, the last of which went into `last` (oldest first, at most
    /// [`STEP_TRAIL`] of them). Every engine (runtime flows, `flow!`, the
    /// Python package) words it with this.
    #[doc(hidden)]
    pub fn step_limit<'a>(flow: String, limit: u64, taken: u64, last: impl IntoIterator<Item = &'a str>) -> Error {
        let names: Vec<&str> = last.into_iter().collect();
        let prefix = if taken > names.len() as u64 { "... -> " } else { "" };
        let recent = if names.is_empty() { String::new() } else { format!("{prefix}{}", names.join(" -> ")) };
        Error::StepLimit { flow, limit, recent }
    }
}

/// A hook failure tagged with its stage and batch item.
#[derive(Debug)]
pub(crate) struct HookError {
    pub(crate) stage: Stage,
    pub(crate) item: Option<usize>,
    pub(crate) failure: Failure,
}

impl HookError {
    pub(crate) fn new(stage: Stage, item: Option<usize>, failure: Failure) -> Self {
        HookError { stage, item, failure }
    }

    /// The error of node `node` in flow `flow` (a path, as it prints).
    pub(crate) fn into_error(self, flow: String, node: String) -> Error {
        self.failure.into_error(flow, node, self.stage, self.item)
    }
}

/// Turns a caught panic payload into its message.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_step_limit_error_names_the_last_steps_or_says_none_ran() {
        let none = Error::step_limit("f".into(), 0, 0, []);
        assert_eq!(none.to_string(), "flow `f` exceeded its step limit of 0 steps; no step ran");
        let all = Error::step_limit("f".into(), 2, 2, ["a", "b"]);
        assert_eq!(all.to_string(), "flow `f` exceeded its step limit of 2 steps; last steps: a -> b");
        let cut = Error::step_limit("f".into(), 9, 9, ["b", "a"]);
        assert_eq!(cut.to_string(), "flow `f` exceeded its step limit of 9 steps; last steps: ... -> b -> a");
    }
}
