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
//! `prep` and `post` run again on every replay: they must be deterministic
//! (read and write the store, nothing else); anything that talks to the world
//! belongs in `exec`.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use restate_sdk::context::ContextPromises;
use restate_sdk::discovery;
use restate_sdk::endpoint::{ContextInternal, Endpoint};
use restate_sdk::errors::{HandlerError, TerminalError};
use restate_sdk::prelude::{ContextReadState, ContextSideEffects, ContextWriteState, HttpServer, Json, RunFuture};
use restate_sdk::prelude::{SharedWorkflowContext, WorkflowContext};
use restate_sdk::service::ServiceDefinition;
use restate_sdk::service::macro_support::{ServiceBoxFuture, service_definition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::durable::StepJournal;
use crate::flow::Flow;

/// A runtime flow served as a Restate workflow (see the module docs).
pub struct RestateFlow<S: 'static> {
    flow: Arc<Flow<S>>,
}

impl<S> RestateFlow<S>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The workflow of `flow`, named after it.
    pub fn new(flow: Flow<S>) -> Self {
        RestateFlow { flow: Arc::new(flow) }
    }

    /// The workflow's name: the flow's.
    pub fn name(&self) -> &str {
        self.flow.name()
    }

    /// The definition to bind to a Restate endpoint; an error when the flow's
    /// name is not a valid service name (letters, digits, `_`, `-`, `.`).
    pub fn definition(self) -> Result<ServiceDefinition, String> {
        let name = self.flow.name().to_owned();
        let discovery = workflow_discovery(&name)?;
        Ok(service_definition(Serve { flow: self.flow }, discovery))
    }
}

/// Serves `flows` on `addr` (HTTP/2, as Restate calls its deployments) until
/// the future is dropped.
pub async fn serve(addr: SocketAddr, flows: Vec<ServiceDefinition>) {
    let mut endpoint = Endpoint::builder();
    for flow in flows {
        endpoint = endpoint.bind(flow);
    }
    HttpServer::new(endpoint.build()).listen_and_serve(addr).await;
}

/// The handlers' dispatcher.
struct Serve<S: 'static> {
    flow: Arc<Flow<S>>,
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
                    let result = run(&flow, (&ctx, metadata).into(), input.into_inner()).await;
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

/// The `run` handler: the flow on the input store, each `exec` a step.
async fn run<S>(
    flow: &Flow<S>,
    ctx: WorkflowContext<'_>,
    input: serde_json::Value,
) -> Result<Json<serde_json::Value>, HandlerError>
where
    S: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let run_id = ctx.key().to_owned();
    let mut store: S = serde_json::from_value(input)
        .map_err(|e| TerminalError::new(format!("the input is not a store of flow `{}`: {e}", flow.name())))?;
    ctx.set("status", "running".to_owned());
    let journal = Steps { ctx: &ctx };
    if let Err(error) = flow.run_journaled(&mut store, &journal, &run_id).await {
        // A node's error ends the run: it was journaled and would come back.
        ctx.set("status", format!("failed: {error}"));
        return Err(TerminalError::new(error.to_string()).into());
    }
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
}

impl StepJournal for Steps<'_, '_> {
    fn step<'b>(&'b self, name: String, step: BoxFuture<'static, Vec<u8>>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let journaled = self.ctx.run(move || async move { Ok(step.await) }).name(name);
            journaled.await.map_err(|e| e.to_string())
        })
    }

    /// A durable promise named `name`, which the `answer` handler resolves;
    /// the run is `paused` meanwhile, its question in the run's state.
    fn ask<'b>(&'b self, name: String, question: Vec<u8>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
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
}

/// What Restate learns of the workflow when it is registered.
fn workflow_discovery(name: &str) -> Result<discovery::Service, String> {
    let handler = |handler: &str, ty: discovery::HandlerType, input: discovery::InputPayload| {
        Ok::<_, String>(discovery::Handler {
            name: discovery::HandlerName::try_from(handler.to_owned()).map_err(|e| e.to_string())?,
            input: Some(input),
            output: Some(discovery::OutputPayload::from_metadata::<Json<serde_json::Value>>()),
            ty: Some(ty),
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
    };
    let run = handler(
        "run",
        discovery::HandlerType::Workflow,
        discovery::InputPayload::from_metadata::<Json<serde_json::Value>>(),
    )?;
    let status = handler("status", discovery::HandlerType::Shared, discovery::InputPayload::empty())?;
    let answer = handler(
        "answer",
        discovery::HandlerType::Shared,
        discovery::InputPayload::from_metadata::<Json<serde_json::Value>>(),
    )?;
    Ok(discovery::Service {
        ty: discovery::ServiceType::Workflow,
        name: discovery::ServiceName::try_from(name.to_owned())
            .map_err(|e| format!("flow `{name}` cannot be a Restate service name: {e}"))?,
        handlers: vec![run, status, answer],
        documentation: None,
        metadata: Default::default(),
        abort_timeout: None,
        inactivity_timeout: None,
        journal_retention: None,
        idempotency_retention: None,
        enable_lazy_state: None,
        ingress_private: None,
        retry_policy_initial_interval: None,
        retry_policy_max_interval: None,
        retry_policy_max_attempts: None,
        retry_policy_exponentiation_factor: None,
        retry_policy_on_max_attempts: None,
    })
}
