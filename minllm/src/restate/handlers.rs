//! The handlers of a flow's workflow (`run`, `status`, `answer`, `events`)
//! and of its items' service (`item`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use restate_sdk::context::ContextPromises;
use restate_sdk::endpoint::ContextInternal;
use restate_sdk::errors::{HandlerError, TerminalError};
use restate_sdk::prelude::{Context, ContextReadState, ContextSideEffects, ContextWriteState, Json, RunFuture};
use restate_sdk::prelude::{SharedWorkflowContext, WorkflowContext};
use restate_sdk::service::macro_support::ServiceBoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::journal::{ItemSteps, Steps};
use super::served::Served;
use crate::events::{Event, EventKind, Sink};

/// The handlers' dispatcher.
pub(super) struct Serve<S: 'static> {
    pub(super) flow: Arc<dyn Served<S>>,
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
pub(super) struct Items<S: 'static> {
    pub(super) flow: Arc<dyn Served<S>>,
    pub(super) limits: Arc<HashMap<String, Arc<Semaphore>>>,
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
pub(super) struct SentItem {
    /// The batch node's key in the flow.
    pub(super) node: String,
    /// The item's place in the batch.
    pub(super) index: usize,
    /// The item, as JSON.
    pub(super) item: serde_json::Value,
}

/// The `item` handler: a batch node's item's `exec` (with its retries and
/// fallback) as a journaled step, or a parallel batch flow's item's run (each
/// of its `exec`s a step of this invocation), once a place under its node's
/// limit is free here.
async fn item<S: Send + Sync + 'static>(
    flow: &dyn Served<S>,
    limits: &HashMap<String, Arc<Semaphore>>,
    ctx: Context<'_>,
    sent: SentItem,
) -> Result<Json<serde_json::Value>, HandlerError> {
    let limit = limits.get(&sent.node).cloned();
    let steps = ItemSteps { ctx: &ctx };
    if let Some(run) = flow.run_flow_item(&sent.node, sent.item.clone(), &steps) {
        let _turn = match &limit {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        let outcome = serde_json::from_slice(&run.await).map_err(|e| TerminalError::new(e.to_string()))?;
        return Ok(Json(outcome));
    }
    let bytes = serde_json::to_vec(&sent.item).map_err(|e| TerminalError::new(e.to_string()))?;
    let step = flow.run_batch_item(&sent.node, sent.index, &bytes).map_err(TerminalError::new)?;
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
pub(super) fn event_json(event: &Event) -> serde_json::Value {
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
