//! A run's journal on Restate: each step a `ctx.run`, each question a durable
//! promise, the items of batch nodes invocations of the items' service, and
//! the run's events kept in its state before each step.

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use restate_sdk::context::{ContextPromises, RequestTarget};
use restate_sdk::prelude::{
    Context, ContextClient, ContextSideEffects, ContextWriteState, Json, RunFuture, WorkflowContext,
};

use super::handlers::{SentItem, event_json};
use super::items_service;
use crate::durable::StepJournal;
use crate::events::Event;

/// The run's journal: Restate's, through `ctx.run`.
pub(super) struct Steps<'a, 'ctx> {
    pub(super) ctx: &'a WorkflowContext<'ctx>,
    /// The flow's name (its items' service is named after it).
    pub(super) flow: &'a str,
    /// The run's events not kept in its state yet, and how many are.
    pub(super) events: Mutex<(tokio::sync::mpsc::UnboundedReceiver<Event>, u64)>,
}

impl Steps<'_, '_> {
    /// Keeps the events sent so far in the run's state (`event/<n>`, and
    /// their count in `events`), for the `events` handler. Called before
    /// each step and at the end: the engine sends the same events at the
    /// same places on every replay, so the state writes are the same too.
    pub(super) fn keep_events(&self) {
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

/// The journal of a parallel batch flow's item run on a worker: each step a
/// `ctx.run` of the item's invocation, which Restate retries on its own.
pub(super) struct ItemSteps<'a, 'ctx> {
    pub(super) ctx: &'a Context<'ctx>,
}

impl StepJournal for ItemSteps<'_, '_> {
    fn step<'b>(&'b self, name: String, step: BoxFuture<'static, Vec<u8>>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let journaled = self.ctx.run(move || async move { Ok(step.await) }).name(name);
            journaled.await.map_err(|e| e.to_string())
        })
    }

    fn ask<'b>(&'b self, _: String, _: Vec<u8>) -> BoxFuture<'b, Result<Vec<u8>, String>> {
        Box::pin(async {
            Err("interrupt() cannot pause inside the items of a parallel batch flow, which run on workers of \
                 their own: make the batch flow sequential, or ask before or after it"
                .to_owned())
        })
    }

    fn blocks_anywhere(&self) -> bool {
        false
    }
}
