//! A `flow!` machine in a run driven node by node (checkpoints, events): the
//! hook it calls around each node (`NoHook` in plain runs; `DriveHook`, in
//! `hook.rs`, in driven ones), and the adapters that let
//! [`DurableRun`](crate::durable::DurableRun) and streams drive it.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::hook::DriveHook;
use super::{AsyncTypedNode, TypedFlow, TypedNode};
use crate::action::Action;
use crate::context::{FlowPath, NodeCx};
use crate::durable::{Checkpoint, Drive, NodeVisit, Outcome, Plan};
use crate::error::Error;
use crate::params::Params;

/// What a `flow!` machine asks before and after each node: nothing in a plain
/// run ([`NoHook`], which compiles away); checkpoints and events in a run
/// driven through [`DurableRun`](crate::durable::DurableRun) or a stream.
#[doc(hidden)]
pub trait Hook<S> {
    /// Whether the machine calls the hook around its nodes at all (`false`
    /// for [`NoHook`]: its calls compile away).
    const DRIVEN: bool;
    /// The node a resumed run starts at in the machine that asks (each
    /// machine asks once, nested ones too), and the steps taken before it.
    fn resume_at(&mut self) -> Option<(String, u64)>;
    /// Called before node `node` runs: the visit it runs in, if any.
    fn before(&mut self, node: &'static str, store: &S) -> Result<Option<&NodeVisit<'_>>, Error>;
    /// Called after the node returned `action`.
    fn after(&mut self, node: &'static str, action: &str);
    /// The error of a resumed run whose node the flow does not have.
    fn unknown(&self, node: &str) -> Error;
    /// Runs `node`, when it is a `flow!` flow, one level down this hook (its
    /// nodes checkpointed and streamed on their own); `None` for other nodes
    /// and hooks.
    fn nested<M, T: TypedNode<S, M>>(
        &mut self,
        node: &T,
        name: &'static str,
        store: &mut S,
    ) -> Option<Result<T::Action, Error>>;
    /// [`nested`](Hook::nested) in an async machine.
    fn nested_async<'h, M, T: AsyncTypedNode<S, M>>(
        &'h mut self,
        node: &'h Arc<T>,
        name: &'static str,
        store: &'h mut S,
    ) -> Option<BoxFuture<'h, Result<T::Action, Error>>>;
}

/// The hook of a plain run.
#[doc(hidden)]
pub struct NoHook;

impl<S> Hook<S> for NoHook {
    const DRIVEN: bool = false;
    #[inline(always)]
    fn resume_at(&mut self) -> Option<(String, u64)> {
        None
    }
    #[inline(always)]
    fn before(&mut self, _: &'static str, _: &S) -> Result<Option<&NodeVisit<'_>>, Error> {
        Ok(None)
    }
    #[inline(always)]
    fn after(&mut self, _: &'static str, _: &str) {}
    #[cold]
    fn unknown(&self, node: &str) -> Error {
        Error::Resume { flow: String::new(), run: String::new(), reason: format!("no node `{node}`") }
    }
    #[inline(always)]
    fn nested<M, T: TypedNode<S, M>>(&mut self, _: &T, _: &'static str, _: &mut S) -> Option<Result<T::Action, Error>> {
        None
    }
    #[inline(always)]
    fn nested_async<'h, M, T: AsyncTypedNode<S, M>>(
        &'h mut self,
        _: &'h Arc<T>,
        _: &'static str,
        _: &'h mut S,
    ) -> Option<BoxFuture<'h, Result<T::Action, Error>>> {
        None
    }
}

/// Runs a node of a sync machine in a driven run: its visit's ambient set,
/// its context carrying the visit.
#[cold]
#[inline(never)]
pub(super) fn run_visiting<S, M, T: TypedNode<S, M>>(
    node: &T,
    store: &mut S,
    flow: &FlowPath<'_>,
    name: &str,
    params: &Params,
    visit: &NodeVisit<'_>,
) -> Result<T::Action, Error> {
    let _inside = visit.ambient.enter();
    node.run_typed_visiting(store, NodeCx { visit: visit.visit.as_ref(), ..NodeCx::new(flow, name, params, None) })
}

/// A node of a sync machine in a driven run: a nested `flow!` flow one level
/// down the hook, any other node in its visit, the hook told before and after.
#[cold]
#[inline(never)]
pub(super) fn run_driven<S, M, T: TypedNode<S, M>, H: Hook<S>>(
    node: &T,
    store: &mut S,
    flow: &FlowPath<'_>,
    name: &'static str,
    params: &Params,
    hook: &mut H,
) -> Result<T::Action, Error> {
    if let Some(result) = hook.nested(node, name, store) {
        return result;
    }
    let action = match hook.before(name, store)? {
        Some(visit) => run_visiting(node, store, flow, name, params, visit)?,
        None => node.run_typed(store, NodeCx::new(flow, name, params, None))?,
    };
    hook.after(name, action.label());
    Ok(action)
}

/// [`run_driven`] for a node of an async machine (`base` is the node's
/// context of plain runs), boxed: only driven runs make it.
#[doc(hidden)]
pub fn run_typed_node_driven<'a, S, M, T, H>(
    node: &'a Arc<T>,
    store: &'a mut S,
    base: &'a NodeCx<'a>,
    name: &'static str,
    hook: &'a mut H,
) -> BoxFuture<'a, Result<T::Action, Box<Error>>>
where
    S: Send + Sync,
    T: AsyncTypedNode<S, M>,
    H: Hook<S> + Send,
{
    Box::pin(async move {
        if let Some(nested) = hook.nested_async(node, name, store) {
            return Ok(nested.await?);
        }
        let action = match hook.before(name, store)? {
            Some(visit) => run_typed_node_visiting(node, store, base, visit).await?,
            None => T::run_typed_async(node, store, base).await?,
        };
        hook.after(name, action.label());
        Ok(action)
    })
}

/// Runs a node of an async machine in a driven run (see [`run_visiting`]).
#[doc(hidden)]
pub async fn run_typed_node_visiting<S, M, T: AsyncTypedNode<S, M>>(
    node: &Arc<T>,
    store: &mut S,
    base: &NodeCx<'_>,
    visit: &NodeVisit<'_>,
) -> Result<T::Action, Box<Error>> {
    let cx = NodeCx { visit: visit.visit.as_ref(), ..*base };
    visit.ambient.clone().scope(T::run_typed_visiting(node, store, &cx)).await
}

/// A sync `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait SyncMachine<S>: TypedFlow<S> {
    /// What the flow's name is.
    const NAME: &'static str;
    /// Runs the machine at `path` with `params` (a `flow!` flow in a runtime flow).
    fn run_machine_in(
        &self,
        store: &mut S,
        path: &FlowPath<'_>,
        params: &Params,
        hook: &mut DriveHook<'_, S>,
    ) -> Result<Self::Outcome, Error>;
    /// Runs the machine as a flow of its own.
    fn run_machine(&self, store: &mut S, hook: &mut DriveHook<'_, S>) -> Result<Self::Outcome, Error> {
        self.run_machine_in(store, &FlowPath::root(Self::NAME), &Params::new(), hook)
    }
}

/// An async `flow!` flow's machine, driven with a hook (generated).
#[doc(hidden)]
pub trait AsyncMachine<S>: Sync {
    /// What the flow's name is.
    const NAME: &'static str;
    /// What a run ends with (its `AsyncTypedFlow::Outcome`).
    type Outcome: Action;
    /// Runs the machine as a flow of its own.
    fn run_machine<'a>(
        &'a self,
        store: &'a mut S,
        hook: &'a mut DriveHook<'_, S>,
    ) -> impl Future<Output = Result<Self::Outcome, Error>> + Send + 'a;
    /// Runs the machine at `path` with `params` (a `flow!` flow in a runtime flow).
    fn run_machine_in<'a>(
        &'a self,
        store: &'a mut S,
        path: &'a FlowPath<'a>,
        params: &'a Params,
        hook: &'a mut DriveHook<'_, S>,
    ) -> impl Future<Output = Result<Self::Outcome, Error>> + Send + 'a;
}

/// A sync `flow!` flow, for [`DurableRun`](crate::durable::DurableRun) and streams.
#[doc(hidden)]
pub struct SyncTyped<'f, T>(pub &'f T);

/// An async `flow!` flow, for [`DurableRun`](crate::durable::DurableRun) and streams.
#[doc(hidden)]
pub struct AsyncTyped<'f, T>(pub &'f T);

impl<S: Send + Sync + 'static, T: SyncMachine<S>> Drive<S> for SyncTyped<'_, T> {
    fn flow_name(&self) -> &str {
        T::NAME
    }

    async fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> Result<Outcome, Error> {
        let mut hook = DriveHook::new(T::NAME, plan, from, answers);
        let result = self.0.run_machine(store, &mut hook);
        hook.finish(result, store)
    }
}

impl<S: Send + Sync + 'static, T: AsyncMachine<S>> Drive<S> for AsyncTyped<'_, T> {
    fn flow_name(&self) -> &str {
        T::NAME
    }

    async fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> Result<Outcome, Error> {
        let mut hook = DriveHook::new(T::NAME, plan, from, answers);
        if let Some(refused) = hook.refuse_sync() {
            return Err(refused);
        }
        let result = self.0.run_machine(store, &mut hook).await;
        hook.finish(result, store)
    }
}
