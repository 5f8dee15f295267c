//! The wiring rules hold for every kind of step, not only sync nodes: an action
//! without an edge is an error at run time and a problem for `validate`, an
//! edge for an action a node never returns is a problem, and validation and
//! diagrams look inside batch flows.
#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use common::{mark, trace};
use minllm::graph::Problem;
use minllm::{
    Action, AsyncBatchNode, AsyncNode, BatchFlow, BatchNode, End, Error, ExecContext, Flow, Node, NodeResult, Params,
    SharedStore,
};

#[derive(Clone, Copy, Action)]
enum Verdict {
    Accept,
    Reject,
}

/// An async node that returns `Verdict::Reject`.
struct Judge;

impl AsyncNode for Judge {
    type Prep = ();
    type Exec = ();
    type Action = Verdict;
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: &ExecContext<'_>) -> NodeResult<()> {
        Ok(())
    }
    async fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<Verdict> {
        common::push(store, "judge");
        Ok(Verdict::Reject)
    }
}

/// A batch node that returns `Verdict::Reject` after doubling its items.
struct Double;

impl BatchNode for Double {
    type Item = u32;
    type Output = u32;
    type Action = Verdict;
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok(vec![1, 2])
    }
    fn exec(&self, n: &u32, _: &ExecContext) -> NodeResult<u32> {
        Ok(n * 2)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<u32>, out: Vec<u32>) -> NodeResult<Verdict> {
        store.set("doubled", out);
        Ok(Verdict::Reject)
    }
}

/// An async batch node that returns the string `"rejectt"` (a typo).
struct Typo;

impl AsyncBatchNode for Typo {
    type Item = u32;
    type Output = u32;
    type Action = &'static str;
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok(vec![1])
    }
    async fn exec(&self, n: &u32, _: &ExecContext<'_>) -> NodeResult<u32> {
        Ok(*n)
    }
    async fn post(&self, _: &mut SharedStore, _: Vec<u32>, _: Vec<u32>) -> NodeResult<&'static str> {
        Ok("rejectt")
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap().block_on(future)
}

/// A flow refused before its first node because a node declares an action
/// with no edge: the error names the node and the action, and nothing ran.
fn refused_for_missing_edge(err: &Error, node: &str, action: &str) {
    assert!(
        matches!(err, Error::Invalid { problem, .. }
            if matches!(&**problem, Problem::MissingEdge { node: n, action: a, .. } if n == node && a == action)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("`{node}`")) && text.contains(&format!("`{action}`")), "{text}");
}

#[test]
fn a_flow_whose_async_node_can_return_an_action_without_an_edge_does_not_start() {
    let mut flow = Flow::new("review");
    let judge = flow.add("judge", Judge);
    let accepted = flow.add("accepted", mark("accepted"));
    flow.edge(judge.on(Verdict::Accept) >> accepted);
    assert_eq!(
        flow.validate(),
        [Problem::MissingEdge {
            flow: "review".into(),
            node: "judge".into(),
            action: "reject".into(),
            edges: vec!["accept".into()],
        }]
    );
    let mut store = SharedStore::new();
    let err = block_on(flow.run_async(&mut store)).unwrap_err();
    refused_for_missing_edge(&err, "judge", "reject");
    assert!(trace(&store).is_empty(), "no node ran");

    flow.edge(judge.on(Verdict::Reject) >> End);
    assert!(flow.validate().is_empty());
    assert_eq!(block_on(flow.run_async(&mut SharedStore::new())).unwrap(), "reject");
}

#[test]
fn a_flow_whose_batch_node_can_return_an_action_without_an_edge_does_not_start_sync_or_async() {
    let mut flow = Flow::new("numbers");
    let double = flow.add("double", Double);
    let next = flow.add("next", mark("next"));
    flow.edge(double.on(Verdict::Accept) >> next);
    assert!(matches!(&flow.validate()[..], [Problem::MissingEdge { action, .. }] if action == "reject"));
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    refused_for_missing_edge(&err, "double", "reject");
    let err = block_on(flow.run_async(&mut SharedStore::new())).unwrap_err();
    refused_for_missing_edge(&err, "double", "reject");
}

#[test]
fn an_async_batch_node_with_a_typo_in_its_action_fails_the_run() {
    let mut flow = Flow::new("typo");
    let typo = flow.add("typo", Typo);
    let next = flow.add("next", mark("next"));
    flow.edge(typo.on("reject") >> next);
    // A string action: nothing is known before the run.
    assert!(flow.validate().is_empty());
    let err = block_on(flow.run_async(&mut SharedStore::new())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `typo` in flow `typo` returned action `rejectt`, which has no edge (its edges: reject); add an edge for it, or `>> End` if the flow ends there"
    );
}

#[test]
fn edges_for_actions_a_node_never_returns_are_reported_for_every_kind() {
    let mut flow = Flow::new("f");
    let judge = flow.add("judge", Judge);
    let double = flow.add("double", Double);
    flow.edge(judge.on(Verdict::Accept) >> double)
        .edge(judge.on(Verdict::Reject) >> double)
        .edge(judge.on("maybe") >> double)
        .edge(double.on(Verdict::Accept) >> End)
        .edge(double.on(Verdict::Reject) >> End)
        .edge(double.on("retry") >> judge)
        .max_steps(10);
    let unknown: Vec<_> = flow
        .validate()
        .into_iter()
        .filter_map(|p| match p {
            Problem::UnknownAction { node, action, declared, .. } => Some((node, action, declared)),
            _ => None,
        })
        .collect();
    assert_eq!(
        unknown,
        [
            ("judge".to_owned(), "maybe".to_owned(), vec!["accept".to_owned(), "reject".to_owned()]),
            ("double".to_owned(), "retry".to_owned(), vec!["accept".to_owned(), "reject".to_owned()]),
        ]
    );
}

/// A flow with a problem (a node nobody reaches), run once per name.
fn batch_with_a_problem() -> BatchFlow {
    let mut inner = Flow::new("inner");
    let a = inner.add("a", mark("a"));
    inner.add("orphan", mark("orphan"));
    inner.start(a);
    BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new(), Params::new()]))
}

#[test]
fn validation_and_diagrams_look_inside_batch_flows() {
    let mut outer = Flow::new("outer");
    let first = outer.add("first", mark("first"));
    let each = outer.add("each", batch_with_a_problem());
    outer.edge(first >> each);
    assert_eq!(
        outer.validate(),
        [Problem::Unreachable { flow: "outer > each".into(), node: "orphan".into(), start: "a".into() }]
    );
    let chart = outer.to_mermaid();
    assert!(chart.contains(r#"subgraph n1 ["each (batch flow)"]"#), "{chart}");
    assert!(chart.contains(r#"n3["orphan"]"#), "{chart}");
    let mut store = SharedStore::new();
    outer.run(&mut store).unwrap();
    assert_eq!(trace(&store), ["first", "a", "a"]);
}

/// Records the params it sees.
struct SeeParams;

impl Node for SeeParams {
    type Prep = Params;
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<Params> {
        Ok(params.clone())
    }
    fn exec(&self, _: &Params, _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, params: Params, _: ()) -> NodeResult<()> {
        store.update_or_insert("seen", Vec::new, |v: &mut Vec<String>| {
            v.push(format!("{}/{}", params.get_str("lang").unwrap_or("-"), params.get_str("file").unwrap_or("-")))
        })?;
        Ok(())
    }
}

#[test]
fn a_batch_flows_inner_flow_keeps_its_own_params_under_the_items() {
    let mut inner = Flow::new("inner");
    inner.add("see", SeeParams);
    inner.params(Params::new().with("lang", "en").with("file", "default.txt"));
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
        Ok(vec![Params::new().with("file", "a.txt"), Params::new().with("lang", "fr")])
    });
    let mut store = SharedStore::new();
    batch.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<String>>("seen").unwrap(), ["en/a.txt", "fr/default.txt"]);
}

/// An async batch node that returns `Verdict::Accept`.
struct Vote;

impl AsyncBatchNode for Vote {
    type Item = u32;
    type Output = u32;
    type Action = Verdict;
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok(vec![1, 2, 3])
    }
    async fn exec(&self, n: &u32, _: &ExecContext<'_>) -> NodeResult<u32> {
        Ok(*n)
    }
    async fn post(&self, _: &mut SharedStore, _: Vec<u32>, _: Vec<u32>) -> NodeResult<Verdict> {
        Ok(Verdict::Accept)
    }
}

#[test]
fn an_async_batch_node_declares_its_actions() {
    let mut flow = Flow::new("votes");
    let vote = flow.add("vote", Vote);
    let next = flow.add("next", mark("next"));
    flow.edge(vote.on(Verdict::Accept) >> next);
    assert_eq!(
        flow.validate(),
        [Problem::MissingEdge {
            flow: "votes".into(),
            node: "vote".into(),
            action: "reject".into(),
            edges: vec!["accept".into()],
        }]
    );
}

#[test]
fn a_batch_flow_may_end_with_any_action_and_shows_in_debug() {
    let mut inner = Flow::new("inner");
    inner.add("a", mark("a"));
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new()]))
        .post(|_: &mut SharedStore, _: Vec<Params>| Ok("checked"))
        .limit(3);
    assert_eq!(
        format!("{batch:?}"),
        r#"BatchFlow { flow: Flow { name: "inner", nodes: ["a"], max_steps: None, .. }, parallel: true, limit: Some(3), .. }"#
    );
    let mut outer = Flow::new("outer");
    let each = outer.add("each", batch);
    let done = outer.add("done", mark("done"));
    outer.edge(each.on("checked") >> done);
    // Nothing is known of what a batch flow's `post` returns: no problem.
    assert!(outer.validate().is_empty(), "{:?}", outer.validate());
    let mut store = SharedStore::new();
    assert_eq!(outer.run(&mut store).unwrap(), "default");
    assert_eq!(trace(&store), ["a", "done"]);
}
