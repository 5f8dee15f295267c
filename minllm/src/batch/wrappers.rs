//! The batch wrappers of earlier versions, kept so that code written for them
//! still builds (with a deprecation warning that says what to write instead):
//! a batch node now says how its items run in its own `mode()`.

#![allow(deprecated)]

use std::future::Future;
use std::marker::PhantomData;

use super::{AsyncBatchMode, AsyncBatchNode, BatchMode, BatchNode};
use crate::error::{BoxError, Error, NodeResult};
use crate::node::{ExecContext, Retry};
use crate::params::Params;
use crate::store::SharedStore;

/// A [`BatchNode`] with how its items run set from outside.
#[deprecated(
    since = "0.1.0",
    note = "a batch node says how its items run in its `mode()` (`#[node(parallel)]` in `flow!` code): return `BatchMode::Parallel { threads }` there and add the node as it is; `BatchNode::run` runs it alone"
)]
pub struct Batch<N> {
    node: N,
    mode: Option<BatchMode>,
}

impl<N> Batch<N> {
    /// Runs the way the node's [`mode`](BatchNode::mode) says.
    pub fn new(node: N) -> Self {
        Batch { node, mode: None }
    }

    /// Runs `exec` on one item after the other.
    pub fn sequential(node: N) -> Self {
        Batch { node, mode: Some(BatchMode::Sequential) }
    }

    /// Runs `exec` on all cores at once.
    pub fn parallel(node: N) -> Self {
        Batch { node, mode: Some(BatchMode::Parallel { threads: None }) }
    }

    /// Runs `exec` in parallel on `threads` threads of its own.
    pub fn threads(self, threads: usize) -> Self {
        Batch { mode: Some(BatchMode::Parallel { threads: Some(threads.max(1)) }), ..self }
    }

    /// The wrapped node.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// Runs the batch node alone on `store` and returns its action.
    pub fn run<S>(&self, store: &mut S) -> Result<N::Action, Error>
    where
        S: Send + Sync + 'static,
        N: BatchNode<S>,
    {
        BatchNode::run(self, store)
    }
}

impl<S, N: BatchNode<S>> BatchNode<S> for Batch<N> {
    type Item = N::Item;
    type Output = N::Output;
    type Action = N::Action;

    fn prep(&self, store: &S, params: &Params) -> NodeResult<Vec<N::Item>> {
        self.node.prep(store, params)
    }
    fn exec(&self, item: &N::Item, ctx: &ExecContext<'_>) -> NodeResult<N::Output> {
        self.node.exec(item, ctx)
    }
    fn exec_fallback(&self, item: &N::Item, error: BoxError, ctx: &ExecContext<'_>) -> NodeResult<N::Output> {
        self.node.exec_fallback(item, error, ctx)
    }
    fn post(&self, store: &mut S, items: Vec<N::Item>, outputs: Vec<N::Output>) -> NodeResult<N::Action> {
        self.node.post(store, items, outputs)
    }
    fn retry(&self) -> Retry {
        self.node.retry()
    }
    fn mode(&self) -> BatchMode {
        self.mode.unwrap_or_else(|| self.node.mode())
    }
}

/// An [`AsyncBatchNode`] with how its items run set from outside.
#[deprecated(
    since = "0.1.0",
    note = "an async batch node says how its items run in its `mode()` (`#[node(concurrent)]` in `flow!` code): return `AsyncBatchMode::Concurrent { limit }` there and add the node as it is; `AsyncBatchNode::run_async` runs it alone"
)]
pub struct AsyncBatch<N, S = SharedStore> {
    node: N,
    mode: Option<AsyncBatchMode>,
    store: PhantomData<fn(&mut S)>,
}

impl<N, S> AsyncBatch<N, S> {
    /// Runs the way the node's [`mode`](AsyncBatchNode::mode) says.
    pub fn new(node: N) -> Self {
        AsyncBatch { node, mode: None, store: PhantomData }
    }

    /// Awaits each item's `exec` before starting the next.
    pub fn sequential(node: N) -> Self {
        AsyncBatch { node, mode: Some(AsyncBatchMode::Sequential), store: PhantomData }
    }

    /// Runs the items' `exec`s concurrently.
    pub fn concurrent(node: N) -> Self {
        AsyncBatch { node, mode: Some(AsyncBatchMode::Concurrent { limit: None }), store: PhantomData }
    }

    /// Runs concurrently, at most `limit` items in flight at once.
    pub fn limit(self, limit: usize) -> Self {
        AsyncBatch { mode: Some(AsyncBatchMode::Concurrent { limit: Some(limit.max(1)) }), ..self }
    }

    /// The wrapped node.
    pub fn node(&self) -> &N {
        &self.node
    }
}

impl<N: AsyncBatchNode<S>, S: Send + Sync + 'static> AsyncBatch<N, S> {
    /// Runs the batch node alone on `store` and returns its action.
    pub async fn run_async(&self, store: &mut S) -> Result<N::Action, Error> {
        AsyncBatchNode::run_async(self, store).await
    }
}

impl<S: Send + Sync + 'static, N: AsyncBatchNode<S>> AsyncBatchNode<S> for AsyncBatch<N, S> {
    type Item = N::Item;
    type Output = N::Output;
    type Action = N::Action;

    fn prep(&self, store: &S, params: &Params) -> impl Future<Output = NodeResult<Vec<N::Item>>> + Send {
        self.node.prep(store, params)
    }
    fn exec(&self, item: &N::Item, ctx: &ExecContext<'_>) -> impl Future<Output = NodeResult<N::Output>> + Send {
        self.node.exec(item, ctx)
    }
    fn exec_fallback(
        &self,
        item: &N::Item,
        error: BoxError,
        ctx: &ExecContext<'_>,
    ) -> impl Future<Output = NodeResult<N::Output>> + Send {
        self.node.exec_fallback(item, error, ctx)
    }
    fn post(
        &self,
        store: &mut S,
        items: Vec<N::Item>,
        outputs: Vec<N::Output>,
    ) -> impl Future<Output = NodeResult<N::Action>> + Send {
        self.node.post(store, items, outputs)
    }
    fn retry(&self) -> Retry {
        self.node.retry()
    }
    fn mode(&self) -> AsyncBatchMode {
        self.mode.unwrap_or_else(|| self.node.mode())
    }
}
