//! Checkpointed and streamed runs of a runtime [`Flow`] (see
//! [`crate::durable`] and [`crate::events`]); the loop is in `drive.rs`.

use std::future::Future;

use futures_util::future::BoxFuture;

use super::drive::drive;
use super::{Flow, NodeKind, Slot};
use crate::action::Label;
use crate::durable::{
    Checkpoint, Checkpointer, Drive, DurableRun, Outcome, Plan, StepJournal, StepResult, stream_flow, stream_flow_async,
};
use crate::error::Error;
use crate::events::{AsyncEvents, Events};

impl<S: Send + Sync + 'static> Flow<S> {
    /// This flow's run `run_id`, checkpointed in `checkpointer`: start it with
    /// [`run`](DurableRun::run), and after a crash, a pause or an error,
    /// finish it with [`resume`](DurableRun::resume) in any process. See
    /// [`crate::durable`].
    pub fn durable<'f>(
        &'f self,
        checkpointer: &'f dyn Checkpointer,
        run_id: impl Into<String>,
    ) -> DurableRun<'f, &'f Self, S> {
        DurableRun::new(self, checkpointer, run_id)
    }

    /// Runs the flow on `store` while `consume` gets its [`Events`] as they
    /// happen: each node's start and end, and what its hooks
    /// [`emit`](crate::events::emit). The flow runs on a thread of its own,
    /// `consume` on the caller's; the run's result comes back once both are
    /// done (a `consume` that stops early lets the run finish unheard).
    ///
    /// ```
    /// use minllm::events::{EventKind, emit};
    /// use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
    ///
    /// struct Answer;
    /// impl Node for Answer {
    ///     type Prep = ();
    ///     type Exec = String;
    ///     type Action = ();
    ///     fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> { Ok(()) }
    ///     fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
    ///         let mut answer = String::new();
    ///         for token in ["Hello", ", ", "world"] {
    ///             emit(token); // each token reaches the caller as it comes
    ///             answer.push_str(token);
    ///         }
    ///         Ok(answer)
    ///     }
    ///     fn post(&self, store: &mut SharedStore, _: (), answer: String) -> NodeResult<()> {
    ///         store.set("answer", answer);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut flow = Flow::new("chat");
    /// flow.add("answer", Answer);
    /// let mut printed = String::new();
    /// flow.stream(&mut SharedStore::new(), |events| {
    ///     for event in events {
    ///         if let EventKind::Custom(token) = &event.kind {
    ///             printed.push_str(token.as_str().unwrap_or_default());
    ///         }
    ///     }
    /// })
    /// .unwrap();
    /// assert_eq!(printed, "Hello, world");
    /// ```
    pub fn stream(&self, store: &mut S, consume: impl FnOnce(Events)) -> Result<Label, Error> {
        stream_flow(&self, store, consume)
    }

    /// [`stream`](Flow::stream) on the current tokio runtime: `consume` (an
    /// async closure) gets the events as an async
    /// [`Stream`](futures_util::Stream) and runs alongside the flow; the
    /// result comes back once both are done.
    ///
    /// ```
    /// # use minllm::{Flow, SharedStore};
    /// # async fn demo(flow: Flow<SharedStore>) -> Result<(), minllm::Error> {
    /// let mut store = SharedStore::new();
    /// flow.stream_async(&mut store, async |mut events| {
    ///     while let Some(event) = events.next().await {
    ///         println!("{} {}", event.kind.name(), event.node);
    ///     }
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stream_async(&self, store: &mut S, consume: impl AsyncFnOnce(AsyncEvents)) -> Result<Label, Error> {
        stream_flow_async(&self, store, consume).await
    }

    /// Runs the flow on `store` as run `run_id` of a durable-execution engine
    /// whose journal is `steps` (see [`StepJournal`]): each node's `exec`,
    /// with its retries and fallback, is one journaled step, run once and read
    /// back when the engine replays the run after a crash; `prep` and `post`
    /// run again on every replay, so they must be deterministic. Nothing is
    /// checkpointed here: the engine keeps the journal. An async run.
    ///
    /// Nodes and async nodes, nested flows, batch nodes and batch flows run.
    /// Each item of a batch node is a step of its own: the items of a batch
    /// node that runs them at the same time go to the journal all at once
    /// when it [fans out](StepJournal::fans_out) (to the workers of a
    /// cluster, each running [`run_batch_item`](Flow::run_batch_item)); other
    /// items run here one after the other, so that every replay asks for the
    /// same steps. A batch flow's items run one after the other, node by
    /// node. `flow!` flows as nodes are an error naming the node, for now. An
    /// `interrupt` waits for its answer through the journal
    /// ([`StepJournal::ask`]).
    pub async fn run_journaled(&self, store: &mut S, steps: &dyn StepJournal, run_id: &str) -> Result<Label, Error> {
        crate::durable::run_journaled(&self, store, steps, run_id).await
    }

    /// The worker's side of [`StepJournal::fan_out`]: runs item `index` of
    /// the batch node whose key is `node`, from the item's bytes, and returns
    /// the step's result for the run that sent it (the item's output, or how
    /// its `exec` failed after its retries and fallback).
    ///
    /// An error when the flow has no batch node whose items fan out under
    /// that key (the worker runs another version of the flow).
    pub fn run_batch_item(
        &self,
        node: &str,
        index: usize,
        item: &[u8],
    ) -> Result<BoxFuture<'static, StepResult>, String> {
        let slot = self.fanned_out(node).ok_or_else(|| {
            format!("flow `{}` has no batch node `{node}` whose items run at the same time", self.name)
        })?;
        slot.node.run_item(slot.name.clone(), index, item).ok_or_else(|| format!("`{node}` is not a batch node"))
    }

    /// The batch nodes whose items fan out in journaled runs (see
    /// [`run_journaled`](Flow::run_journaled)), in this flow and the flows
    /// it holds, and its parallel batch flows (whose items fan out on
    /// Restate, which ships the store to the workers): each one's key (as
    /// [`StepJournal::fan_out`] names it) and how many of its items one
    /// worker runs at once (its threads or its concurrency limit).
    pub fn fanned_out_nodes(&self) -> Vec<(String, usize)> {
        self.keyed_slots().into_iter().filter_map(|(key, slot)| slot.node.item_limit().map(|n| (key, n))).collect()
    }

    /// The inner flow of the parallel batch flow whose items fan out under
    /// `key`: what a worker runs for each of its items.
    #[cfg_attr(not(feature = "restate"), allow(dead_code))]
    pub(crate) fn fanned_out_flow(&self, key: &str) -> Option<&Flow<S>> {
        let found = self.keyed_slots().into_iter().find(|(at, slot)| {
            at == key && slot.node.kind() == NodeKind::BatchFlow && slot.node.item_limit().is_some()
        });
        found.and_then(|(_, slot)| slot.node.inner_flow())
    }

    /// The slot of the batch node whose items fan out under `key`.
    fn fanned_out(&self, key: &str) -> Option<&Slot<S>> {
        let found = self.keyed_slots().into_iter().find(|(at, slot)| at == key && slot.node.item_limit().is_some());
        found.map(|(_, slot)| slot)
    }

    /// Every slot of this flow and of the flows it holds, with its key: the
    /// names of the slots of the flows in between, then its own, joined by
    /// ` > ` (as a run's paths name them, without item numbers).
    fn keyed_slots(&self) -> Vec<(String, &Slot<S>)> {
        let mut found = Vec::new();
        let mut todo: Vec<(String, &Flow<S>)> = vec![(String::new(), self)];
        while let Some((prefix, flow)) = todo.pop() {
            for slot in &flow.slots {
                let key = if prefix.is_empty() { slot.name.clone() } else { format!("{prefix} > {}", slot.name) };
                if let Some(inner) = slot.node.inner_flow() {
                    todo.push((key.clone(), inner));
                }
                found.push((key, slot));
            }
        }
        found
    }
}

impl<S: Send + Sync + 'static> Drive<S> for &Flow<S> {
    fn flow_name(&self) -> &str {
        &self.name
    }

    fn drive<'a>(
        &'a self,
        store: &'a mut S,
        plan: Plan<'a, S>,
        from: Option<&'a Checkpoint>,
        answers: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send + 'a {
        drive(*self, store, plan, from, answers)
    }
}
