//! minllm: LLM applications as graphs.
//!
//! A [`Node`] does one step of work in three parts: `prep` reads the store, `exec`
//! does the work (an LLM call, a computation) without seeing the store, `post`
//! writes the store and returns an [`Action`]. A [`Flow`] connects nodes with
//! labelled edges and runs them, following each node's action, until a node
//! returns an action with no edge. The store is [`SharedStore`] (a string-keyed
//! map of typed values) or any struct of your own.
//!
//! Beyond single nodes: a [`BatchNode`] runs `exec` once per item (sequentially
//! or on all cores), [`AsyncNode`] and [`AsyncBatchNode`] run on tokio (thousands of
//! concurrent calls), [`BatchFlow`] runs a whole flow once per params, and flows
//! nest. [`Flow::validate`] finds wiring mistakes, [`Flow::to_mermaid`] draws the
//! graph, and every failure is an [`Error`] that names the flow, node and item.
//!
//! ```
//! use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
//!
//! struct Decide;
//! impl Node for Decide {
//!     type Prep = usize;
//!     type Exec = &'static str;
//!     type Action = &'static str;
//!     fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<usize> {
//!         Ok(store.get::<Vec<String>>("notes").map_or(0, |n| n.len()))
//!     }
//!     fn exec(&self, notes: &usize, _: &ExecContext) -> NodeResult<&'static str> {
//!         Ok(if *notes < 2 { "search" } else { "answer" })
//!     }
//!     fn post(&self, _: &mut SharedStore, _: usize, action: &'static str) -> NodeResult<&'static str> {
//!         Ok(action)
//!     }
//! }
//!
//! struct Search;
//! impl Node for Search {
//!     type Prep = ();
//!     type Exec = String;
//!     type Action = ();
//!     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
//!     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> { Ok("a fact".into()) }
//!     fn post(&self, store: &mut SharedStore, _: (), fact: String) -> NodeResult<()> {
//!         store.update_or_insert("notes", Vec::new, |n: &mut Vec<String>| n.push(fact))?;
//!         Ok(())
//!     }
//! }
//!
//! struct Answer;
//! impl Node for Answer {
//!     type Prep = Vec<String>;
//!     type Exec = String;
//!     type Action = ();
//!     fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<Vec<String>> {
//!         Ok(store.try_get("notes")?)
//!     }
//!     fn exec(&self, notes: &Vec<String>, _: &ExecContext) -> NodeResult<String> {
//!         Ok(format!("based on {} notes", notes.len()))
//!     }
//!     fn post(&self, store: &mut SharedStore, _: Vec<String>, answer: String) -> NodeResult<()> {
//!         store.set("answer", answer);
//!         Ok(())
//!     }
//! }
//!
//! let mut agent = Flow::new("agent");
//! let decide = agent.add("decide", Decide);
//! let search = agent.add("search", Search);
//! let answer = agent.add("answer", Answer);
//! agent
//!     .start(decide)
//!     .edge(decide.on("search") >> search >> decide)
//!     .edge(decide.on("answer") >> answer)
//!     .max_steps(20);
//! assert!(agent.validate().is_empty());
//!
//! let mut store = SharedStore::new();
//! agent.run(&mut store).unwrap();
//! assert_eq!(store.get::<String>("answer").unwrap(), "based on 2 notes");
//! ```
//!
//! Tracing: each flow run and node run is a `tracing` span (`flow`, `node`, with
//! the action, the attempts and the duration recorded on it); without a
//! subscriber they cost next to nothing.

mod access;
mod action;
mod batch;
mod batch_flow;
mod checks;
mod context;
pub mod durable;
mod error;
pub mod events;
mod flow;
#[doc(hidden)]
pub mod marker;
mod node;
mod params;
#[cfg(feature = "restate")]
pub mod restate;
mod store;
mod typed;
mod wire;

pub use action::{Action, DEFAULT_ACTION, Label};
#[doc(hidden)]
#[allow(deprecated)]
pub use batch::{AsyncBatch, Batch};
pub use batch::{AsyncBatchMode, AsyncBatchNode, BatchMode, BatchNode, DEFAULT_CONCURRENCY, DEFAULT_THREADS};
pub use batch_flow::BatchFlow;
#[doc(hidden)]
pub use error::STEP_TRAIL;
pub use error::{BoxError, Error, NodeResult, Panicked, Stage};
pub use flow::{Flow, IntoNode, NodeKind};
/// The name of [`NodeKind`] before it was renamed.
#[deprecated(since = "0.1.0", note = "renamed `NodeKind`")]
#[doc(hidden)]
pub type StepKind = NodeKind;
#[doc(hidden)]
pub use flow::IntoNode as IntoStep;
pub use node::{AsyncNode, ExecContext, Node, Retry, Step, step};
pub use params::{ParamError, Params, Value};
pub use store::{SharedStore, StoreError};
pub use wire::{Edge, End, Ended, NodeId, PendingEdge, Wire};

/// A flow's shape and the rules it is checked by: validation problems and
/// Mermaid diagrams (the `minllm-graph` crate).
pub use minllm_graph as graph;

pub use minllm_macros::{Action, flow, node};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Items the macros' generated code uses. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::access::{AsyncStoreRef, StoreGuard, StoreRef};
    pub use crate::batch::{Spread, default_threads};
    pub use crate::checks::{
        DefaultEdge, DefaultNode, ExecInput, ExecItem, FallbackError, ImplicitEnd, PostExec, PostPrep, PostStore,
        Routable, as_str, assert_store, default_edge, default_node, exec_input, exec_item, fallback_error,
        implicit_end, missing_edge, post_exec, post_prep, post_store, routed,
    };
    pub use crate::context::{FlowPath, NodeCx, flow_span, tracing_on};
    pub use crate::durable::run::{Drive, Mode, Plan, stream_flow, stream_flow_async};
    pub use crate::durable::visit::NodeVisit;
    pub use crate::node::wait_between_attempts;
    pub use crate::typed::{
        AsyncMachine, AsyncTyped, AsyncTypedFlow, AsyncTypedNode, DriveHook, Hook, NoHook, StepLimit, SyncKind,
        SyncMachine, SyncTyped, TypedFlow, TypedNode, run_typed_node, run_typed_node_async, run_typed_node_driven,
        run_typed_node_traced, run_typed_node_visiting,
    };
    pub use futures_util::future::BoxFuture;
    pub use tracing::Instrument;
}
