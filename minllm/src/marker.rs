//! Types that tell apart the implementations of [`IntoNode`](crate::IntoNode)
//! and of the traits `flow!` code dispatches on, one per kind of node. Type
//! inference picks them; nobody names them.

/// A [`Node`](crate::Node).
pub struct Node;
/// An [`AsyncNode`](crate::AsyncNode).
pub struct AsyncNode;
/// A [`BatchNode`](crate::BatchNode).
pub struct Batch;
/// An [`AsyncBatchNode`](crate::AsyncBatchNode).
pub struct AsyncBatch;
/// A flow made by `flow!`.
pub struct Flow;
/// An async flow made by `flow!`.
pub struct AsyncFlow;
/// A node that a runtime flow holds as it is (a nested flow, a batch flow).
pub struct Erased;
