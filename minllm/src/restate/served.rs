//! What the handlers run, whatever the kind of flow: a runtime [`Flow`]
//! journaled in place, an `async struct` flow of `flow!` likewise, and a sync
//! `flow!` flow on a thread of its own whose steps the invocation's task
//! journals ([`Relay`]): Restate's futures move only when that task polls them.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::RestateStore;
use crate::durable::steps::{Outcome, failed_step, outcome_bytes};
use crate::durable::{Journaled, StepJournal, StepResult, StoreCodec, run_journaled_with};
use crate::error::Error;
use crate::events::Sink;
use crate::flow::Flow;
use crate::marker;
use crate::node::block_on_parked;
use crate::params::Params;
use crate::typed::{AsyncMachine, AsyncTyped, SyncMachine, SyncTyped};

/// A flow that [`RestateFlow::new`](super::RestateFlow::new) serves: a runtime [`Flow`], or a flow
/// made by `flow!`. `M` only tells the kinds apart; type inference picks it.
pub trait Servable<S, M> {
    #[doc(hidden)]
    fn into_served(self) -> ServedFlow<S>
    where
        S: RestateStore;
}

/// A flow as [`RestateFlow`] holds it, whatever its kind.
#[doc(hidden)]
pub struct ServedFlow<S>(pub(super) Arc<dyn Served<S>>);

/// What the handlers ask of a flow, whatever its kind.
pub(super) trait Served<S>: Send + Sync {
    fn name(&self) -> &str;
    /// Runs the flow on `store` journaled by `steps`, its events sent to
    /// `events`; the store after it.
    fn run<'a>(
        self: Arc<Self>,
        store: S,
        steps: &'a dyn StepJournal,
        run_id: String,
        events: &'a Sink,
    ) -> BoxFuture<'a, Result<S, Error>>;
    /// The batch nodes whose items fan out, with their limits per worker.
    fn fanned_out_nodes(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
    fn run_batch_item(
        &self,
        node: &str,
        _index: usize,
        _item: &[u8],
    ) -> Result<BoxFuture<'static, StepResult>, String> {
        Err(format!("flow `{}` sends no items of `{node}` out", self.name()))
    }
    /// Runs an item of the parallel batch flow `node` on this worker: its
    /// inner flow on the store and params `item` carries, journaled by
    /// `steps`; the step's result is the store after it. `None` when `node`
    /// is no such batch flow.
    fn run_flow_item<'a>(
        &'a self,
        _node: &str,
        _item: serde_json::Value,
        _steps: &'a dyn StepJournal,
    ) -> Option<BoxFuture<'a, StepResult>> {
        None
    }
}

impl<S: Send + Sync + 'static> Servable<S, marker::Erased> for Flow<S> {
    fn into_served(self) -> ServedFlow<S>
    where
        S: RestateStore,
    {
        ServedFlow(Arc::new(self))
    }
}

impl<S: Serialize + DeserializeOwned + Send + Sync + 'static> Served<S> for Flow<S> {
    fn name(&self) -> &str {
        Flow::name(self)
    }
    fn run<'a>(
        self: Arc<Self>,
        mut store: S,
        steps: &'a dyn StepJournal,
        run_id: String,
        events: &'a Sink,
    ) -> BoxFuture<'a, Result<S, Error>> {
        Box::pin(async move {
            let codec = store_codec::<S>();
            let how = Journaled { steps, run_id: &run_id, events: Some(events), codec: Some(&codec), params: None };
            run_journaled_with(&&*self, &mut store, how).await.map(|_| store)
        })
    }
    fn fanned_out_nodes(&self) -> Vec<(String, usize)> {
        Flow::fanned_out_nodes(self)
    }
    fn run_batch_item(&self, node: &str, index: usize, item: &[u8]) -> Result<BoxFuture<'static, StepResult>, String> {
        Flow::run_batch_item(self, node, index, item)
    }
    fn run_flow_item<'a>(
        &'a self,
        node: &str,
        item: serde_json::Value,
        steps: &'a dyn StepJournal,
    ) -> Option<BoxFuture<'a, StepResult>> {
        let inner = self.fanned_out_flow(node)?;
        let node = node.to_owned();
        Some(Box::pin(async move {
            let (params, store) = match sent_flow_item::<S>(item) {
                Ok(sent) => sent,
                Err(why) => return failed_step(format!("an item of batch flow `{node}` arrived unreadable: {why}"), 1),
            };
            let (mut store, run_id) = (store, format!("{node} item"));
            let how = Journaled { steps, run_id: &run_id, events: None, codec: None, params: Some(&params) };
            match run_journaled_with(&inner, &mut store, how).await {
                Ok(_) => match serde_json::to_vec(&store) {
                    Ok(bytes) => outcome_bytes(Outcome::Done(bytes)),
                    Err(e) => failed_step(format!("the store after an item of `{node}` cannot be sent back: {e}"), 1),
                },
                Err(error) => failed_step(error.to_string(), 1),
            }
        }))
    }
}

/// The store as JSON and back, through its serde impls.
fn store_codec<S: Serialize + DeserializeOwned>() -> StoreCodec<S> {
    StoreCodec {
        save: |store| serde_json::to_value(store).map_err(|e| e.to_string()),
        load: |value| serde_json::from_value(value).map_err(|e| e.to_string()),
    }
}

/// The params and the store an item of a parallel batch flow travels with.
fn sent_flow_item<S: DeserializeOwned>(mut item: serde_json::Value) -> Result<(Params, S), String> {
    let params = Params::from_json(item["params"].take()).ok_or("its params are not a JSON object")?;
    let store = serde_json::from_value(item["store"].take()).map_err(|e| format!("its store: {e}"))?;
    Ok((params, store))
}

/// A `flow!` flow, served: its batch nodes' items stay in its runs.
struct Typed<F>(F);

impl<S: Send + Sync + 'static, F: SyncMachine<S> + Send + 'static> Servable<S, marker::Flow> for F {
    fn into_served(self) -> ServedFlow<S>
    where
        S: RestateStore,
    {
        ServedFlow(Arc::new(Typed(self)))
    }
}

impl<S: Send + Sync + 'static, F: SyncMachine<S> + Send + 'static> Served<S> for Typed<F> {
    fn name(&self) -> &str {
        F::NAME
    }
    /// On a thread of its own, whose steps this task journals: the steps'
    /// futures are the handler's to poll (see [`Relay`]).
    fn run<'a>(
        self: Arc<Self>,
        mut store: S,
        steps: &'a dyn StepJournal,
        run_id: String,
        events: &'a Sink,
    ) -> BoxFuture<'a, Result<S, Error>> {
        let events = events.clone();
        Box::pin(async move {
            let (relay, mut asked) = tokio::sync::mpsc::unbounded_channel();
            let (done, result) = tokio::sync::oneshot::channel();
            let flow = Arc::clone(&self);
            let run = run_id.clone();
            let spawned = std::thread::Builder::new().name(format!("minllm {}", F::NAME)).spawn(move || {
                let relay = Relay(relay);
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let how =
                        Journaled { steps: &relay, run_id: &run, events: Some(&events), codec: None, params: None };
                    block_on_parked(run_journaled_with(&SyncTyped(&flow.0), &mut store, how))
                }));
                let _ = done.send(match ran {
                    Ok(ran) => ran.map(|_| store),
                    Err(panic) => Err(thread_error(F::NAME, &run, &panic_message(&*panic))),
                });
            });
            if let Err(e) = spawned {
                return Err(thread_error(F::NAME, &run_id, &format!("no thread for it: {e}")));
            }
            // The thread's steps and questions, until it ends (and drops its relay).
            while let Some(ask) = asked.recv().await {
                match ask {
                    Relayed::Step(name, step, reply) => {
                        let _ = reply.send(steps.step(name, step).await);
                    }
                    Relayed::Ask(name, question, reply) => {
                        let _ = reply.send(steps.ask(name, question).await);
                    }
                }
            }
            result.await.unwrap_or_else(|_| Err(thread_error(F::NAME, &run_id, "its thread ended with no result")))
        })
    }
}

/// A step or a question of a sync `flow!` flow's thread, with where its
/// answer goes.
enum Relayed {
    Step(String, BoxFuture<'static, StepResult>, oneshot::Sender<Result<StepResult, String>>),
    Ask(String, Vec<u8>, oneshot::Sender<Result<Vec<u8>, String>>),
}

/// The journal of a sync `flow!` flow run on a thread of its own: it hands
/// each step to the handler's task, the one that may poll Restate's futures,
/// and waits for its result.
struct Relay(tokio::sync::mpsc::UnboundedSender<Relayed>);

impl StepJournal for Relay {
    fn step<'a>(
        &'a self,
        name: String,
        step: BoxFuture<'static, StepResult>,
    ) -> BoxFuture<'a, Result<StepResult, String>> {
        let (reply, result) = oneshot::channel();
        let sent = self.0.send(Relayed::Step(name, step, reply));
        Box::pin(async move {
            sent.map_err(|_| RELAY_GONE.to_owned())?;
            result.await.map_err(|_| RELAY_GONE.to_owned())?
        })
    }

    fn ask<'a>(&'a self, name: String, question: Vec<u8>) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        let (reply, result) = oneshot::channel();
        let sent = self.0.send(Relayed::Ask(name, question, reply));
        Box::pin(async move {
            sent.map_err(|_| RELAY_GONE.to_owned())?;
            result.await.map_err(|_| RELAY_GONE.to_owned())?
        })
    }
}

/// Why a relayed step got no result: the handler stopped (Restate suspended
/// or ended the invocation), and the run ends here to be replayed there.
const RELAY_GONE: &str = "the invocation that journals this run stopped";

/// The error of a sync `flow!` flow's thread.
fn thread_error(flow: &str, run: &str, why: &str) -> Error {
    Error::Resume { flow: flow.to_owned(), run: run.to_owned(), reason: format!("the flow's thread failed: {why}") }
}

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "a panic".to_owned(),
    }
}

/// An `async struct` flow of `flow!`, served.
struct AsyncTypedFlow<F>(F);

impl<S: Send + Sync + 'static, F: AsyncMachine<S> + Send + 'static> Servable<S, marker::AsyncFlow> for F {
    fn into_served(self) -> ServedFlow<S>
    where
        S: RestateStore,
    {
        ServedFlow(Arc::new(AsyncTypedFlow(self)))
    }
}

impl<S: Send + Sync + 'static, F: AsyncMachine<S> + Send + 'static> Served<S> for AsyncTypedFlow<F> {
    fn name(&self) -> &str {
        F::NAME
    }
    fn run<'a>(
        self: Arc<Self>,
        mut store: S,
        steps: &'a dyn StepJournal,
        run_id: String,
        events: &'a Sink,
    ) -> BoxFuture<'a, Result<S, Error>> {
        Box::pin(async move {
            let how = Journaled { steps, run_id: &run_id, events: Some(events), codec: None, params: None };
            run_journaled_with(&AsyncTyped(&self.0), &mut store, how).await.map(|_| store)
        })
    }
}
