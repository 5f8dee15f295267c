//! Flows served on [Restate](https://restate.dev), the durable-execution
//! engine (feature `restate`): a runtime [`Flow`] becomes a Restate workflow
//! named after the flow, whose runs are keyed by their run id. Each node's
//! `exec` (with its retries and fallback) is one journaled step
//! ([`Flow::run_journaled`]): a worker that dies mid-run is replaced, Restate
//! replays the run on another (or the same, restarted) worker, finished steps
//! are read back from the journal, and only the step in flight runs again.
//!
//! Handlers of the workflow `<flow>`:
//!
//! - `run`: the store as JSON in, the store after the run out; the run's id is
//!   the workflow key (`POST /<flow>/<run id>/run`);
//! - `status`: `{"status": "running"}`, `"paused"` (with the `question` a
//!   node's `interrupt` asked), `"finished"` or `"failed: <error>"`;
//! - `answer`: the answer to the question the run waits on (any JSON): a
//!   paused run holds no worker and survives any of them; the answer resumes
//!   it wherever Restate runs it, and `interrupt` returns the answer there.
//!
//! Batch nodes whose items run at the same time (`BatchMode::Parallel`,
//! `AsyncBatchMode::Concurrent`) send their items out as invocations of the
//! service `<flow>-items` (handler `item`), one per item, all at once: Restate
//! spreads them over every worker behind the deployment's address, journals
//! and retries each on its own, and the run gets the results back in the
//! items' order. A worker runs as many items of a node at once as the node's
//! threads (or concurrency limit) say; the others wait their turn there. The
//! items (and outputs) travel as JSON: their types must be plain data (see
//! [`durable::register`](crate::durable::register)). Sequential batch nodes
//! keep their items on the run's worker, one after the other.
//!
//! `prep` and `post` run again on every replay: they must be deterministic
//! (read and write the store, nothing else); anything that talks to the world
//! belongs in `exec`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use restate_sdk::context::ContextPromises;
use restate_sdk::context::RequestTarget;
use restate_sdk::discovery;
use restate_sdk::endpoint::{ContextInternal, Endpoint};
use restate_sdk::errors::{HandlerError, TerminalError};
use restate_sdk::prelude::{Context, ContextClient, SharedWorkflowContext, WorkflowContext};
use restate_sdk::prelude::{ContextReadState, ContextSideEffects, ContextWriteState, HttpServer, Json, RunFuture};
use restate_sdk::service::ServiceDefinition;
use restate_sdk::service::macro_support::{ServiceBoxFuture, service_definition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::sync::oneshot;

use crate::durable::{StepJournal, StepResult, run_journaled_with};
use crate::error::Error;
use crate::events::{Event, EventKind, Sink};
use crate::flow::Flow;
use crate::marker;
use crate::node::block_on_parked;
use crate::typed::{AsyncMachine, AsyncTyped, SyncMachine, SyncTyped};

/// A flow served as a Restate workflow (see the module docs).
pub struct RestateFlow<S: 'static> {
    flow: Arc<dyn Served<S>>,
    tuning: Tuning,
}

/// What [`RestateFlow`]'s settings tell Restate when it is registered; unset
/// ones keep the server's defaults.
#[derive(Debug, Clone, Copy, Default)]
struct Tuning {
    retention: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
    inactivity: Option<Duration>,
}

/// Milliseconds, as Restate's manifest counts them.
fn millis(d: Duration) -> Option<u64> {
    Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<S> RestateFlow<S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The workflow of `flow`, named after it: a runtime [`Flow`] or a flow
    /// made by `flow!` (sync or `async struct`; a sync one needs the
    /// multi-thread tokio runtime that `#[tokio::main]` starts).
    pub fn new<M>(flow: impl Servable<S, M>) -> Self {
        RestateFlow { flow: flow.into_served().0, tuning: Tuning::default() }
    }

    /// The workflow's name: the flow's.
    pub fn name(&self) -> &str {
        self.flow.name()
    }

    /// How long Restate keeps a run's state, journal and result after it
    /// ends (24 hours unless set): the `status`, `events` and `attach` of a
    /// finished run answer until then, and its id cannot start a new run.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.tuning.retention = Some(retention);
        self
    }

    /// How soon Restate tries a run (or an item) again after its worker went
    /// away: first after `first`, then twice as long each time up to `most`.
    /// The server's defaults wait up to a minute between tries, which a run
    /// whose worker is back pays in full.
    pub fn retry_backoff(mut self, first: Duration, most: Duration) -> Self {
        self.tuning.backoff = Some((first, most));
        self
    }

    /// How long an invocation may go without journaling anything before
    /// Restate suspends or retries it (a minute unless set): raise it above
    /// the longest `exec` that makes no other step, and above the time a
    /// batch item may wait for its turn on a busy worker.
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.tuning.inactivity = Some(timeout);
        self
    }

    /// The services to bind to a Restate endpoint: the workflow, and the
    /// service `<flow>-items` when batch nodes send their items out. An error
    /// when the flow's name is not a valid service name (letters, digits,
    /// `_`, `-`, `.`).
    pub fn definitions(self) -> Result<Vec<ServiceDefinition>, String> {
        let name = self.flow.name().to_owned();
        let workflow = workflow_discovery(&name, self.tuning)?;
        let mut services = vec![service_definition(Serve { flow: Arc::clone(&self.flow) }, workflow)];
        let fanned = self.flow.fanned_out_nodes();
        if !fanned.is_empty() {
            let limits = fanned.into_iter().map(|(node, n)| (node, Arc::new(Semaphore::new(n)))).collect();
            let items = Items { flow: self.flow, limits: Arc::new(limits) };
            services.push(service_definition(items, items_discovery(&items_service(&name), self.tuning)?));
        }
        Ok(services)
    }
}

/// Serves `services` (those of one or more [`RestateFlow`]s) on `addr`
/// (HTTP/2, as Restate calls its deployments) until the future is dropped.
pub async fn serve(addr: SocketAddr, services: impl IntoIterator<Item = ServiceDefinition>) {
    let mut endpoint = Endpoint::builder();
    for service in services {
        endpoint = endpoint.bind(service);
    }
    HttpServer::new(endpoint.build()).listen_and_serve(addr).await;
}

/// A flow that [`RestateFlow::new`] serves: a runtime [`Flow`], or a flow
/// made by `flow!`. `M` only tells the kinds apart; type inference picks it.
pub trait Servable<S, M> {
    #[doc(hidden)]
    fn into_served(self) -> ServedFlow<S>;
}

/// A flow as [`RestateFlow`] holds it, whatever its kind.
#[doc(hidden)]
pub struct ServedFlow<S>(Arc<dyn Served<S>>);

/// What the handlers ask of a flow, whatever its kind.
trait Served<S>: Send + Sync {
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
}

impl<S: Send + Sync + 'static> Servable<S, marker::Erased> for Flow<S> {
    fn into_served(self) -> ServedFlow<S> {
        ServedFlow(Arc::new(self))
    }
}

impl<S: Send + Sync + 'static> Served<S> for Flow<S> {
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
        Box::pin(
            async move { run_journaled_with(&&*self, &mut store, steps, &run_id, Some(events)).await.map(|_| store) },
        )
    }
    fn fanned_out_nodes(&self) -> Vec<(String, usize)> {
        Flow::fanned_out_nodes(self)
    }
    fn run_batch_item(&self, node: &str, index: usize, item: &[u8]) -> Result<BoxFuture<'static, StepResult>, String> {
        Flow::run_batch_item(self, node, index, item)
    }
}

/// A `flow!` flow, served: its batch nodes' items stay in its runs.
struct Typed<F>(F);

impl<S: Send + Sync + 'static, F: SyncMachine<S> + Send + 'static> Servable<S, marker::Flow> for F {
    fn into_served(self) -> ServedFlow<S> {
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
                    block_on_parked(run_journaled_with(&SyncTyped(&flow.0), &mut store, &relay, &run, Some(&events)))
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
    fn into_served(self) -> ServedFlow<S> {
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
            run_journaled_with(&AsyncTyped(&self.0), &mut store, steps, &run_id, Some(events)).await.map(|_| store)
        })
    }
}

/// The name of the service that runs the items of flow `flow`'s batch nodes.
fn items_service(flow: &str) -> String {
    format!("{flow}-items")
}

/// The handlers' dispatcher.
struct Serve<S: 'static> {
    flow: Arc<dyn Served<S>>,
}

impl<S> restate_sdk::service::Service for Serve<S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Future = ServiceBoxFuture;

    fn handle(&self, ctx: ContextInternal) -> Self::Future {
        let flow = Arc::clone(&self.flow);
        Box::pin(async move {
            match ctx.handler_name() {
                "run" => {
                    let (input, metadata) = ctx.input::<Json<serde_json::Value>>().await;
                    let result = run(Arc::clone(&flow), (&ctx, metadata).into(), input.into_inner()).await;
                    ctx.handle_handler_result(result);
                    ctx.end();
                    Ok(())
                }
                "status" => {
                    let (_, metadata) = ctx.input::<()>().await;
                    let result = status((&ctx, metadata).into()).await;
                    ctx.handle_handler_result(result);
                    ctx.end();
                    Ok(())
                }
                "events" => {
                    let (input, metadata) = ctx.input::<Option<Json<serde_json::Value>>>().await;
                    let input = input.map_or(serde_json::Value::Null, Json::into_inner);
                    let result = events_from((&ctx, metadata).into(), input).await;
                    ctx.handle_handler_result(result);
                    ctx.end();
                    Ok(())
                }
                "answer" => {
                    let (input, metadata) = ctx.input::<Json<serde_json::Value>>().await;
                    let result = answer((&ctx, metadata).into(), input.into_inner()).await;
                    ctx.handle_handler_result(result);
                    ctx.end();
                    Ok(())
                }
                other => Err(restate_sdk::endpoint::Error::unknown_handler(ctx.service_name(), other)),
            }
        })
    }
}

/// The service `<flow>-items`: each invocation of its handler `item` runs one
/// item of a batch node of the flow, under the node's limit on this worker.
struct Items<S: 'static> {
    flow: Arc<dyn Served<S>>,
    limits: Arc<HashMap<String, Arc<Semaphore>>>,
}

impl<S: Send + Sync + 'static> restate_sdk::service::Service for Items<S> {
    type Future = ServiceBoxFuture;

    fn handle(&self, ctx: ContextInternal) -> Self::Future {
        let (flow, limits) = (Arc::clone(&self.flow), Arc::clone(&self.limits));
        Box::pin(async move {
            match ctx.handler_name() {
                "item" => {
                    let (input, metadata) = ctx.input::<Json<SentItem>>().await;
                    let result = item(&*flow, &limits, (&ctx, metadata).into(), input.into_inner()).await;
                    ctx.handle_handler_result(result);
                    ctx.end();
                    Ok(())
                }
                other => Err(restate_sdk::endpoint::Error::unknown_handler(ctx.service_name(), other)),
            }
        })
    }
}

/// One item as the run sends it to the items' service.
#[derive(Serialize, Deserialize)]
struct SentItem {
    /// The batch node's key in the flow.
    node: String,
    /// The item's place in the batch.
    index: usize,
    /// The item, as JSON.
    item: serde_json::Value,
}

/// The `item` handler: the item's `exec` (with its retries and fallback) as a
/// journaled step, once a place under its node's limit is free here.
async fn item<S: Send + Sync + 'static>(
    flow: &dyn Served<S>,
    limits: &HashMap<String, Arc<Semaphore>>,
    ctx: Context<'_>,
    sent: SentItem,
) -> Result<Json<serde_json::Value>, HandlerError> {
    let bytes = serde_json::to_vec(&sent.item).map_err(|e| TerminalError::new(e.to_string()))?;
    let step = flow.run_batch_item(&sent.node, sent.index, &bytes).map_err(TerminalError::new)?;
    let limit = limits.get(&sent.node).cloned();
    let name = format!("{}[{}]", sent.node, sent.index);
    let outcome = ctx
        .run(move || async move {
            // A closed semaphore never happens: the service holds it.
            let _turn = match &limit {
                Some(limit) => Some(limit.acquire().await),
                None => None,
            };
            Ok(step.await)
        })
        .name(name)
        .await?;
    let outcome = serde_json::from_slice(&outcome).map_err(|e| TerminalError::new(e.to_string()))?;
    Ok(Json(outcome))
}

/// The `run` handler: the flow on the input store, each `exec` a step.
async fn run<S>(
    flow: Arc<dyn Served<S>>,
    ctx: WorkflowContext<'_>,
    input: serde_json::Value,
) -> Result<Json<serde_json::Value>, HandlerError>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let run_id = ctx.key().to_owned();
    let store: S = serde_json::from_value(input)
        .map_err(|e| TerminalError::new(format!("the input is not a store of flow `{}`: {e}", flow.name())))?;
    ctx.set("status", "running".to_owned());
    let (sink, events) = Sink::new_async();
    let journal = Steps { ctx: &ctx, flow: flow.name(), events: Mutex::new((events, 0)) };
    let ran = Arc::clone(&flow).run(store, &journal, run_id, &sink).await;
    journal.keep_events();
    let store = match ran {
        Ok(store) => store,
        Err(error) => {
            // A node's error ends the run: it was journaled and would come back.
            ctx.set("status", format!("failed: {error}"));
            return Err(TerminalError::new(error.to_string()).into());
        }
    };
    ctx.set("status", "finished".to_owned());
    let output =
        serde_json::to_value(&store).map_err(|e| TerminalError::new(format!("the store cannot be sent: {e}")))?;
    Ok(Json(output))
}

/// The `status` handler: `running`, `paused` (with the question), `finished`
/// or `failed: <error>`.
async fn status(ctx: SharedWorkflowContext<'_>) -> Result<Json<serde_json::Value>, HandlerError> {
    let status = ctx.get::<String>("status").await?.unwrap_or_else(|| "unknown".to_owned());
    let question = ctx.get::<Json<serde_json::Value>>("question").await?.map(Json::into_inner);
    Ok(Json(match question {
        Some(question) if status == "paused" => serde_json::json!({ "status": status, "question": question }),
        _ => serde_json::json!({ "status": status }),
    }))
}

/// The `events` handler: the run's events from number `from` (0 when the
/// input has none) as far as they go, with the number to ask from next time
/// and the run's status: `{"events": [..], "next": n, "status": ".."}`.
async fn events_from(
    ctx: SharedWorkflowContext<'_>,
    input: serde_json::Value,
) -> Result<Json<serde_json::Value>, HandlerError> {
    let from = input.get("from").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let count = ctx.get::<u64>("events").await?.unwrap_or(0);
    let mut list = Vec::new();
    for n in from..count {
        if let Some(event) = ctx.get::<Json<serde_json::Value>>(&format!("event/{n}")).await? {
            list.push(event.into_inner());
        }
    }
    let status = ctx.get::<String>("status").await?.unwrap_or_else(|| "unknown".to_owned());
    Ok(Json(serde_json::json!({ "events": list, "next": count.max(from), "status": status })))
}

/// An event as the run's state keeps it: plain JSON, the same on every
/// replay (no durations).
fn event_json(event: &Event) -> serde_json::Value {
    let mut json = serde_json::json!({ "kind": event.kind.name(), "flow": event.flow, "node": event.node });
    match &event.kind {
        EventKind::NodeFinished { action, .. } => json["action"] = serde_json::Value::String(action.clone()),
        EventKind::Custom(value) => {
            json["value"] = value.clone();
            if let Some(item) = event.item {
                json["item"] = serde_json::Value::from(item);
            }
        }
        _ => {}
    }
    json
}

/// The `answer` handler: resolves the question the run waits on.
async fn answer(ctx: SharedWorkflowContext<'_>, answer: serde_json::Value) -> Result<Json<String>, HandlerError> {
    let Some(pending) = ctx.get::<String>("pending").await? else {
        return Err(TerminalError::new("the run is not waiting for an answer").into());
    };
    ctx.resolve_promise::<Json<serde_json::Value>>(&pending, Json(answer));
    Ok(Json(pending))
}

/// The run's journal: Restate's, through `ctx.run`.
struct Steps<'a, 'ctx> {
    ctx: &'a WorkflowContext<'ctx>,
    /// The flow's name (its items' service is named after it).
    flow: &'a str,
    /// The run's events not kept in its state yet, and how many are.
    events: Mutex<(tokio::sync::mpsc::UnboundedReceiver<Event>, u64)>,
}

impl Steps<'_, '_> {
    /// Keeps the events sent so far in the run's state (`event/<n>`, and
    /// their count in `events`), for the `events` handler. Called before
    /// each step and at the end: the engine sends the same events at the
    /// same places on every replay, so the state writes are the same too.
    fn keep_events(&self) {
        let mut events = self.events.lock();
        let (received, count) = &mut *events;
        let before = *count;
        while let Ok(event) = received.try_recv() {
            self.ctx.set(&format!("event/{count}"), Json(event_json(&event)));
            *count += 1;
        }
        if *count != before {
            self.ctx.set("events", *count);
        }
    }
}

impl StepJournal for Steps<'_, '_> {
    fn step<'b>(&'b self, name: String, step: BoxFuture<'static, Vec<u8>>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
        self.keep_events();
        Box::pin(async move {
            let journaled = self.ctx.run(move || async move { Ok(step.await) }).name(name);
            journaled.await.map_err(|e| e.to_string())
        })
    }

    /// A durable promise named `name`, which the `answer` handler resolves;
    /// the run is `paused` meanwhile, its question in the run's state.
    fn ask<'b>(&'b self, name: String, question: Vec<u8>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
        self.keep_events();
        Box::pin(async move {
            let question: serde_json::Value = serde_json::from_slice(&question).unwrap_or(serde_json::Value::Null);
            self.ctx.set("question", Json(question));
            self.ctx.set("pending", name.clone());
            self.ctx.set("status", "paused".to_owned());
            let answer = self.ctx.promise::<Json<serde_json::Value>>(&name).await.map_err(|e| e.to_string())?;
            self.ctx.clear("pending");
            self.ctx.clear("question");
            self.ctx.set("status", "running".to_owned());
            serde_json::to_vec(&answer.into_inner()).map_err(|e| e.to_string())
        })
    }

    fn fans_out(&self) -> bool {
        true
    }

    /// Restate's futures move only when the invocation's task polls them.
    fn blocks_anywhere(&self) -> bool {
        false
    }

    /// Each item an invocation of `<flow>-items/item`, all sent before the
    /// first result is awaited.
    fn fan_out<'b>(
        &'b self,
        node: String,
        _name: String,
        items: Vec<Vec<u8>>,
    ) -> BoxFuture<'b, Result<Vec<Vec<u8>>, String>> {
        self.keep_events();
        Box::pin(async move {
            let service = items_service(self.flow);
            let mut calls = Vec::with_capacity(items.len());
            for (index, bytes) in items.into_iter().enumerate() {
                let item = serde_json::from_slice(&bytes).map_err(|e| format!("item {index}: {e}"))?;
                let sent = Json(SentItem { node: node.clone(), index, item });
                let target = RequestTarget::service(service.clone(), "item");
                calls.push(self.ctx.request::<_, Json<serde_json::Value>>(target, sent).call());
            }
            let mut outcomes = Vec::with_capacity(calls.len());
            for (index, call) in calls.into_iter().enumerate() {
                let outcome = call.await.map_err(|e| format!("item {index}: {e}"))?;
                outcomes.push(serde_json::to_vec(&outcome.into_inner()).map_err(|e| e.to_string())?);
            }
            Ok(outcomes)
        })
    }
}

/// What Restate learns of the workflow when it is registered.
fn workflow_discovery(name: &str, tuning: Tuning) -> Result<discovery::Service, String> {
    let json = discovery::InputPayload::from_metadata::<Json<serde_json::Value>>;
    let handlers = vec![
        handler("run", Some(discovery::HandlerType::Workflow), json())?,
        handler("status", Some(discovery::HandlerType::Shared), discovery::InputPayload::empty())?,
        handler("answer", Some(discovery::HandlerType::Shared), json())?,
        handler("events", Some(discovery::HandlerType::Shared), optional_json())?,
    ];
    let mut workflow = service(name, discovery::ServiceType::Workflow, handlers, tuning)?;
    if let Some(run) = workflow.handlers.first_mut() {
        run.workflow_completion_retention = tuning.retention.and_then(millis);
    }
    Ok(workflow)
}

/// A JSON input that may be left out.
fn optional_json() -> discovery::InputPayload {
    discovery::InputPayload {
        required: Some(false),
        ..discovery::InputPayload::from_metadata::<Json<serde_json::Value>>()
    }
}

/// What Restate learns of the items' service when it is registered.
fn items_discovery(name: &str, tuning: Tuning) -> Result<discovery::Service, String> {
    let input = discovery::InputPayload::from_metadata::<Json<serde_json::Value>>();
    service(name, discovery::ServiceType::Service, vec![handler("item", None, input)?], tuning)
}

/// A handler taking `input` and answering JSON.
fn handler(
    name: &str,
    ty: Option<discovery::HandlerType>,
    input: discovery::InputPayload,
) -> Result<discovery::Handler, String> {
    Ok(discovery::Handler {
        name: discovery::HandlerName::try_from(name.to_owned()).map_err(|e| e.to_string())?,
        input: Some(input),
        output: Some(discovery::OutputPayload::from_metadata::<Json<serde_json::Value>>()),
        ty,
        documentation: None,
        metadata: Default::default(),
        abort_timeout: None,
        inactivity_timeout: None,
        journal_retention: None,
        idempotency_retention: None,
        workflow_completion_retention: None,
        enable_lazy_state: None,
        ingress_private: None,
        retry_policy_initial_interval: None,
        retry_policy_max_interval: None,
        retry_policy_max_attempts: None,
        retry_policy_exponentiation_factor: None,
        retry_policy_on_max_attempts: None,
    })
}

/// A service of type `ty` named `name` (the flow's name, checked here),
/// tuned as `tuning` says.
fn service(
    name: &str,
    ty: discovery::ServiceType,
    handlers: Vec<discovery::Handler>,
    tuning: Tuning,
) -> Result<discovery::Service, String> {
    Ok(discovery::Service {
        ty,
        name: discovery::ServiceName::try_from(name.to_owned())
            .map_err(|e| format!("flow `{name}` cannot be a Restate service name: {e}"))?,
        handlers,
        documentation: None,
        metadata: Default::default(),
        abort_timeout: None,
        inactivity_timeout: tuning.inactivity.and_then(millis),
        journal_retention: tuning.retention.and_then(millis),
        idempotency_retention: None,
        enable_lazy_state: None,
        ingress_private: None,
        retry_policy_initial_interval: tuning.backoff.and_then(|(first, _)| millis(first)),
        retry_policy_max_interval: tuning.backoff.and_then(|(_, most)| millis(most)),
        retry_policy_max_attempts: None,
        retry_policy_exponentiation_factor: None,
        retry_policy_on_max_attempts: None,
    })
}
