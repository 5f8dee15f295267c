//! `BatchFlow`: an inner flow run once per params.

use std::fmt;

use crate::access::{AsyncStoreRef, StoreRef, locked};
use crate::action::{Action, Label};
use crate::batch::{DEFAULT_THREADS, branches_on_threads, concurrent_map, default_threads};
use crate::context::{Cancel, NodeCx, Root, is_cancelled};
use crate::durable::steps::{Outcome, read_outcome};
use crate::durable::{Ambient, StepJournal, StoreCodec, Visit, ready};
use crate::error::{Error, HookError, NodeResult, Stage};
use crate::flow::{AsyncRun, Driven, ErasedNode, Flow, NodeKind, Place, Sealed};
use crate::node::{call_stage, journal_error};
use crate::params::Params;
use crate::store::SharedStore;

type ParamsFn<S> = dyn Fn(&S, &Params) -> NodeResult<Vec<Params>> + Send + Sync;
type PostFn<S> = dyn Fn(&mut S, Vec<Params>) -> NodeResult<Label> + Send + Sync;

/// Runs an inner [`Flow`] once per params: a function of the store and the
/// parent's params returns the list, and each run gets its entry merged over the
/// parent's params (the entry wins).
///
/// Sequential by default; [`parallel`](BatchFlow::parallel) runs the inner flows
/// at the same time: on threads of their own in [`Flow::run`] (one per run, up
/// to [`DEFAULT_THREADS`](crate::DEFAULT_THREADS), or
/// [`limit`](BatchFlow::limit)), as concurrent futures in [`Flow::run_async`]
/// ([`DEFAULT_CONCURRENCY`](crate::DEFAULT_CONCURRENCY) at most, or `limit`).
/// Their `exec`s overlap; the `prep`s and `post`s of
/// different runs never overlap on the store. The first failing run cancels the
/// others and its error names the item: `outer > batch[3] > node`.
///
/// A flow made by `flow!` and added to the inner flow runs on the store as a
/// whole, holding it for its run: parallel branches then take turns with it.
///
/// In a checkpointed run ([`Flow::durable`]) a sequential batch flow is
/// checkpointed inside each item's run and resumes at the item it stopped in.
/// A parallel one records every `exec` of its items' runs; resumed, it runs
/// again from its checkpoint with those results read back, so that only the
/// calls in flight at a crash are made again. Its items cannot
/// [`interrupt`](crate::durable::interrupt): they run at the same time.
///
/// Served on Restate (feature `restate`), a parallel batch flow sends each
/// item's run to a worker with the item's params and a copy of the store;
/// what the runs changed in the store comes back and is merged in the items'
/// order (objects field by field, lists that grew appended, other changes
/// replacing the value, a later item winning over an earlier one).
///
/// ```
/// use minllm::{BatchFlow, ExecContext, Flow, Node, NodeResult, Params, SharedStore};
///
/// struct Greet;
/// impl Node for Greet {
///     type Prep = String;
///     type Exec = String;
///     type Action = ();
///     fn prep(&self, _: &SharedStore, p: &Params) -> NodeResult<String> {
///         Ok(p.get("name")?)
///     }
///     fn exec(&self, name: &String, _: &ExecContext) -> NodeResult<String> {
///         Ok(format!("hello {name}"))
///     }
///     fn post(&self, s: &mut SharedStore, _: String, line: String) -> NodeResult<()> {
///         s.update_or_insert("lines", Vec::new, |v: &mut Vec<String>| v.push(line))?;
///         Ok(())
///     }
/// }
///
/// let mut inner = Flow::new("greet");
/// inner.add("greet", Greet);
/// let batch = BatchFlow::new(inner, |store: &SharedStore, _: &Params| {
///     let names: Vec<String> = store.try_get("names")?;
///     Ok(names.into_iter().map(|n| Params::new().with("name", n)).collect())
/// });
///
/// let mut store = SharedStore::new();
/// store.set("names", vec!["ann".to_string(), "bob".to_string()]);
/// batch.run(&mut store).unwrap();
/// assert_eq!(store.get::<Vec<String>>("lines").unwrap(), ["hello ann", "hello bob"]);
/// ```
pub struct BatchFlow<S: 'static = SharedStore> {
    flow: Flow<S>,
    params: Box<ParamsFn<S>>,
    post: Option<Box<PostFn<S>>>,
    parallel: bool,
    limit: Option<usize>,
}

impl<S: Send + Sync + 'static> BatchFlow<S> {
    /// A batch flow running `flow` once per params returned by `params`.
    pub fn new(flow: Flow<S>, params: impl Fn(&S, &Params) -> NodeResult<Vec<Params>> + Send + Sync + 'static) -> Self {
        BatchFlow { flow, params: Box::new(params), post: None, parallel: false, limit: None }
    }

    /// Runs the inner flows at the same time (see the type's docs).
    pub fn parallel(self) -> Self {
        BatchFlow { parallel: true, ..self }
    }

    /// At most `limit` inner flows at once (implies [`parallel`](Self::parallel)).
    pub fn limit(self, limit: usize) -> Self {
        BatchFlow { parallel: true, limit: Some(limit.max(1)), ..self }
    }

    /// Runs `post` after every inner flow finished, with the list of params; its
    /// action is the batch flow's action (by default `"default"`).
    pub fn post<A: Action>(self, post: impl Fn(&mut S, Vec<Params>) -> NodeResult<A> + Send + Sync + 'static) -> Self {
        let post: Box<PostFn<S>> = Box::new(move |s, p| post(s, p).map(Action::into_label));
        BatchFlow { post: Some(post), ..self }
    }

    /// The inner flow.
    pub fn inner(&self) -> &Flow<S> {
        &self.flow
    }

    /// Runs the batch flow alone on `store`.
    pub fn run(&self, store: &mut S) -> Result<Label, Error> {
        let root = Root::new(self.flow.name());
        ErasedNode::run(self, StoreRef::exclusive(store), root.cx("batch"))
    }

    /// Runs the batch flow alone on `store`, on the current tokio runtime.
    pub async fn run_async(&self, store: &mut S) -> Result<Label, Error> {
        let root = Root::new(self.flow.name());
        ErasedNode::run_async(self, AsyncStoreRef::exclusive(store), &root.cx("batch")).await.map_err(|e| *e)
    }

    fn finish(&self, store: &mut S, list: Vec<Params>) -> NodeResult<Label> {
        match &self.post {
            Some(post) => post(store, list),
            None => Ok(Label::DEFAULT),
        }
    }
}

impl<S> Sealed for BatchFlow<S> {}

impl<S: Send + Sync + 'static> ErasedNode<S> for BatchFlow<S> {
    fn run(&self, store: StoreRef<'_, S>, cx: NodeCx<'_>) -> Result<Label, Error> {
        self.run_sync(store, &cx, None)
    }

    fn run_visiting(&self, store: StoreRef<'_, S>, cx: NodeCx<'_>) -> Result<Label, Error> {
        let ambient = Ambient::current();
        self.run_sync(store, &cx, Driven::of(&cx, &ambient))
    }

    fn run_async<'a>(&'a self, store: AsyncStoreRef<'a, S>, cx: &'a NodeCx<'a>) -> AsyncRun<'a> {
        Box::pin(async move {
            // Set around each poll of a driven run's node, so read in the future.
            let ambient = Ambient::current();
            self.run_async_in(store, cx, Driven::of(cx, &ambient)).await
        })
    }

    /// A parallel batch flow's items fan out in journaled runs (see `fan_out`).
    fn item_limit(&self) -> Option<usize> {
        self.parallel.then(|| self.limit.unwrap_or(DEFAULT_THREADS).max(1))
    }

    fn batch_items(&self, store: &S, cx: &NodeCx<'_>) -> Option<Result<Vec<Params>, Error>> {
        (!self.parallel)
            .then(|| call_stage(Stage::BatchParams, || (self.params)(store, cx.params)).map_err(|h| cx.error(h)))
    }

    fn batch_post(&self, store: &mut S, list: Vec<Params>, cx: &NodeCx<'_>) -> Result<Label, Error> {
        call_stage(Stage::Post, || self.finish(store, list)).map_err(|h| cx.error(h))
    }

    fn kind(&self) -> NodeKind {
        NodeKind::BatchFlow
    }

    fn declared_actions(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn inner_flow(&self) -> Option<&Flow<S>> {
        Some(&self.flow)
    }

    fn detach_inner(&mut self, into: &mut Vec<std::sync::Arc<dyn ErasedNode<S>>>) {
        self.flow.detach_inner(into);
    }
}

impl<S: Send + Sync + 'static> BatchFlow<S> {
    /// Runs the items and `post` in a sync run; a checkpointed or streamed
    /// run (`driven`) runs each item node by node (`flow/items.rs`).
    fn run_sync(
        &self,
        mut store: StoreRef<'_, S>,
        cx: &NodeCx<'_>,
        driven: Option<Driven<'_>>,
    ) -> Result<Label, Error> {
        let list =
            store.with(|s| call_stage(Stage::BatchParams, || (self.params)(s, cx.params))).map_err(|h| cx.error(h))?;
        let base = self.flow_params(cx.params);
        let one = |store: StoreRef<'_, S>, i: usize, item: &Params, cancel: Option<&Cancel<'_>>| {
            let path = cx.flow.child(cx.node, Some(i));
            let params = base.merged(item);
            match driven {
                None => self.flow.orchestrate(store, &path, &params, cancel),
                Some(driven) => ready(self.flow.run_item(Place::Sync(store), &path, &params, cancel, driven, i)),
            }
        };
        if self.parallel {
            let share = store.reborrow().share();
            let access = share.access();
            let threads = self.limit.unwrap_or_else(|| default_threads(list.len()));
            branches_on_threads(&list, threads, cx.cancel, |i, item, cancel| {
                one(StoreRef::shared(access), i, item, Some(cancel))
            })
            .map_err(|e| e.unwrap_or_else(|| Error::Cancelled { flow: cx.flow.to_string() }))?;
        } else {
            for (i, item) in list.iter().enumerate() {
                if is_cancelled(cx.cancel) {
                    return Err(Error::Cancelled { flow: cx.flow.to_string() });
                }
                one(store.reborrow(), i, item, cx.cancel)?;
            }
        }
        store.with(|s| call_stage(Stage::Post, || self.finish(s, list))).map_err(|h| cx.error(h))
    }

    /// [`run_sync`](Self::run_sync) in an async run.
    async fn run_async_in(
        &self,
        mut store: AsyncStoreRef<'_, S>,
        cx: &NodeCx<'_>,
        driven: Option<Driven<'_>>,
    ) -> Result<Label, Box<Error>> {
        let list = {
            let guard = locked!(store);
            call_stage(Stage::BatchParams, || (self.params)(&guard, cx.params))
        }
        .map_err(|h| cx.error(h))?;
        if self.parallel
            && let Some(visit) = cx.visit
            && let Some(steps) = visit.steps()
            && let Some(codec) = visit.store_codec::<S>()
            && visit.may_fan_out()
            && steps.fans_out()
        {
            return self.fan_out(store, cx, (visit, steps, codec), list).await;
        }
        // A run journaled by a durable-execution engine asks for its steps in
        // the same order on every replay: the items run one after the other there.
        let parallel = self.parallel && cx.visit.and_then(|v| v.steps()).is_none();
        let base = &self.flow_params(cx.params);
        let one = async |store: AsyncStoreRef<'_, S>, i: usize, item: &Params, cancel: Option<&Cancel<'_>>| {
            let path = cx.flow.child(cx.node, Some(i));
            let params = base.merged(item);
            match driven {
                None => self.flow.orchestrate_async(store, &path, &params, cancel).await,
                Some(driven) => {
                    self.flow.run_item(Place::Async(store), &path, &params, cancel, driven, i).await.map_err(Box::new)
                }
            }
        };
        if parallel {
            let share = store.reborrow().share();
            let access = share.access();
            let list = &list;
            let one = &one;
            concurrent_map(list.len(), self.limit, |i| async move {
                let cancel = Cancel::new(cx.cancel);
                one(AsyncStoreRef::shared(access), i, &list[i], Some(&cancel)).await
            })
            .await?;
        } else {
            for (i, item) in list.iter().enumerate() {
                one(store.reborrow(), i, item, cx.cancel).await?;
            }
        }
        let mut guard = locked!(store);
        call_stage(Stage::Post, || self.finish(&mut guard, list)).map_err(|h| cx.fail(h))
    }

    /// The items of a parallel batch flow in a journaled run whose journal
    /// fans out: each item's run goes to a worker with the item's params and
    /// the store as it is now, all at once; what each run changed in the
    /// store comes back and is applied in the items' order
    /// ([`merge_changes`]), then `post` runs.
    async fn fan_out(
        &self,
        mut store: AsyncStoreRef<'_, S>,
        cx: &NodeCx<'_>,
        (visit, steps, codec): (&Visit<'_>, &dyn StepJournal, &StoreCodec<S>),
        list: Vec<Params>,
    ) -> Result<Label, Box<Error>> {
        let journal_error = |why: String| journal_error(visit, cx, why);
        let before = {
            let guard = locked!(store);
            (codec.save)(&guard)
        }
        .map_err(|why| journal_error(format!("the store cannot go to the workers: {why}")))?;
        let base = self.flow_params(cx.params);
        let mut items = Vec::with_capacity(list.len());
        for item in &list {
            let sent = serde_json::json!({ "params": base.merged(item).to_json(), "store": before });
            items.push(serde_json::to_vec(&sent).map_err(|e| journal_error(e.to_string()))?);
        }
        let outcomes = steps.fan_out(cx.flow.node_key(cx.node), visit.step_name().to_owned(), items).await;
        let outcomes = outcomes.map_err(journal_error)?;
        if outcomes.len() != list.len() {
            return Err(journal_error(format!("{} items went out and {} came back", list.len(), outcomes.len())));
        }
        let mut merged = before.clone();
        for (i, bytes) in outcomes.iter().enumerate() {
            match read_outcome(bytes) {
                Some(Outcome::Done(after)) => {
                    let after = serde_json::from_slice(&after).map_err(|e| journal_error(e.to_string()))?;
                    merge_changes(&mut merged, &before, after);
                }
                Some(Outcome::Failed(failure)) => return Err(cx.fail(HookError::new(Stage::Exec, Some(i), failure))),
                Some(Outcome::Asked(_)) | None => {
                    return Err(journal_error("a journaled step this engine did not write".to_owned()));
                }
            }
        }
        let after = (codec.load)(merged)
            .map_err(|why| journal_error(format!("the items' stores do not make a store together: {why}")))?;
        let mut guard = locked!(store);
        *guard = after;
        call_stage(Stage::Post, || self.finish(&mut guard, list)).map_err(|h| cx.fail(h))
    }

    /// The params every inner run starts from: the inner flow's own, under the parent's.
    fn flow_params(&self, parent: &Params) -> Params {
        self.flow.own_params().merged(parent)
    }
}

/// Applies to `merged` what one item's run changed in the store, from
/// `before` (the store it started from) to `after`: a field of an object
/// (at any depth) is merged field by field, a list that only grew gets the
/// new entries appended, anything else that changed replaces what `merged`
/// has; a field the run removed is removed. Applied in the items' order,
/// the changes of later items win where two items changed the same value.
fn merge_changes(merged: &mut serde_json::Value, before: &serde_json::Value, after: serde_json::Value) {
    use serde_json::Value;
    match (merged, before, after) {
        (Value::Object(merged), Value::Object(before), Value::Object(after)) => {
            for key in before.keys().filter(|k| !after.contains_key(*k)) {
                merged.remove(key);
            }
            for (key, value) in after {
                match (merged.get_mut(&key), before.get(&key)) {
                    (Some(into), Some(was)) => merge_changes(into, was, value),
                    (_, Some(was)) if *was == value => {}
                    _ => {
                        merged.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(merged), Value::Array(before), Value::Array(after))
            if after.len() > before.len() && after.starts_with(before) =>
        {
            merged.extend(after.into_iter().skip(before.len()));
        }
        (merged, before, after) => {
            if *before != after {
                *merged = after;
            }
        }
    }
}

impl<S: 'static> fmt::Debug for BatchFlow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFlow")
            .field("flow", &self.flow)
            .field("parallel", &self.parallel)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::merge_changes;
    use serde_json::json;

    fn merged(before: serde_json::Value, afters: Vec<serde_json::Value>) -> serde_json::Value {
        let mut merged = before.clone();
        for after in afters {
            merge_changes(&mut merged, &before, after);
        }
        merged
    }

    #[test]
    fn what_items_added_to_lists_and_maps_all_stays_in_the_items_order() {
        let before = json!({ "lines": ["intro"], "by_topic": {}, "total": 0, "title": "t" });
        let afters = vec![
            json!({ "lines": ["intro", "one"], "by_topic": { "a": 1 }, "total": 1, "title": "t" }),
            json!({ "lines": ["intro", "two", "three"], "by_topic": { "b": 2 }, "total": 2, "title": "t" }),
        ];
        let expected = json!({ "lines": ["intro", "one", "two", "three"], "by_topic": { "a": 1, "b": 2 }, "total": 2, "title": "t" });
        assert_eq!(merged(before, afters), expected);
    }

    #[test]
    fn a_replaced_list_or_value_wins_in_order_and_removed_fields_go() {
        let before = json!({ "list": [1, 2], "gone": true, "kept": "x", "nested": { "deep": [1] } });
        let afters = vec![
            json!({ "list": [9], "kept": "x", "nested": { "deep": [1, 2] } }),
            json!({ "list": [1, 2], "gone": true, "kept": "y", "nested": { "deep": [1, 3] } }),
        ];
        let expected = json!({ "list": [9], "kept": "y", "nested": { "deep": [1, 2, 3] } });
        assert_eq!(merged(before, afters), expected);
    }
}
