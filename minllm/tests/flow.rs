//! Runtime-built flows: wiring, params, nesting, warnings, limits, errors. What
//! is checked before a run (validation, refusals, charts) is in `checks.rs`.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use common::{Mark, capture_logs, mark, trace};
use minllm::graph::Problem;
use minllm::{End, Error, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

/// Records the params it sees under `seen:<name>`.
struct SeeParams(&'static str);

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
        store.set(format!("seen:{}", self.0), params);
        Ok(())
    }
}

#[test]
fn follows_default_and_labelled_edges_and_returns_the_last_action() {
    let mut flow = Flow::new("f");
    let a = flow.add("a", Mark { name: "a", action: "right" });
    let b = flow.add("b", mark("b"));
    let c = flow.add("c", Mark { name: "c", action: "done" });
    flow.start(a).edge(a.on("left") >> b).edge(a.on("right") >> c);
    let mut store = SharedStore::new();
    let last = flow.run(&mut store).unwrap();
    assert_eq!(last, "done");
    assert_eq!(trace(&store), ["a", "c"]);
}

#[test]
fn the_first_node_added_starts_unless_told_otherwise() {
    let mut flow = Flow::new("f");
    let a = flow.add("a", mark("a"));
    let b = flow.add("b", mark("b"));
    flow.edge(a >> b);
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(trace(&store), ["a", "b"]);

    flow.start(b);
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(trace(&store), ["b"]);
}

#[test]
fn params_reach_nested_nodes_and_parents_override() {
    let mut inner = Flow::new("inner");
    inner.add("deep", SeeParams("deep"));
    inner.params(Params::new().with("lang", "fr").with("own", 1));

    let mut outer = Flow::new("outer");
    let top = outer.add("top", SeeParams("top"));
    let sub = outer.add("sub", inner);
    outer.start(top).edge(top >> sub).params(Params::new().with("lang", "en").with("user", "ann"));

    let mut store = SharedStore::new();
    outer.run(&mut store).unwrap();
    let top: Params = store.get("seen:top").unwrap();
    assert_eq!(top, Params::new().with("lang", "en").with("user", "ann"));
    let deep: Params = store.get("seen:deep").unwrap();
    assert_eq!(deep.get_str("lang"), Some("en"), "the parent's params win");
    assert_eq!(deep.get_str("user"), Some("ann"));
    assert_eq!(deep.get::<i32>("own").unwrap(), 1, "the nested flow keeps its own other params");
}

#[test]
fn a_parent_branches_on_how_a_nested_flow_ended() {
    fn child(ending: &'static str) -> Flow {
        let mut f = Flow::new("child");
        let a = f.add("work", mark("work"));
        let b = f.add("finish", Mark { name: "finish", action: ending });
        f.edge(a >> b);
        f
    }
    for (ending, expected) in [("ok", "celebrate"), ("failed", "apologise")] {
        let mut parent = Flow::new("parent");
        let sub = parent.add("child", child(ending));
        let yes = parent.add("celebrate", mark("celebrate"));
        let no = parent.add("apologise", mark("apologise"));
        parent.edge(sub.on("ok") >> yes).edge(sub.on("failed") >> no);
        // What a nested flow ends with is not known before it runs: no problem.
        assert!(parent.validate().is_empty(), "{:?}", parent.validate());
        let mut store = SharedStore::new();
        parent.run(&mut store).unwrap();
        assert_eq!(trace(&store), ["work", "finish", expected]);
    }
}

#[test]
fn an_action_without_an_edge_is_an_error_unless_declared_an_end() {
    let mut flow = Flow::new("agent");
    let a = flow.add("decide", Mark { name: "decide", action: "dance" });
    let b = flow.add("search", mark("search"));
    let c = flow.add("answer", mark("answer"));
    flow.edge(a.on("search") >> b).edge(a.on("answer") >> c);
    let mut store = SharedStore::new();
    let err = flow.run(&mut store).unwrap_err();
    assert_eq!(trace(&store), ["decide"]);
    match &err {
        Error::MissingEdge { flow, node, action, edges } => {
            assert_eq!((flow.as_str(), node.as_str(), action.as_str()), ("agent", "decide", "dance"));
            assert_eq!(edges, &["search", "answer"]);
        }
        other => panic!("expected a missing edge, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "node `decide` in flow `agent` returned action `dance`, which has no edge (its edges: search, answer); add an edge for it, or `>> End` if the flow ends there"
    );

    flow.edge(a.on("dance") >> End);
    let mut store = SharedStore::new();
    assert_eq!(flow.run(&mut store).unwrap(), "dance");
    assert_eq!(trace(&store), ["decide"]);
}

#[test]
fn a_node_without_edges_ends_quietly() {
    let mut flow = Flow::new("f");
    flow.add("only", Mark { name: "only", action: "whatever" });
    let (result, logs) = capture_logs(|| flow.run(&mut SharedStore::new()));
    assert_eq!(result.unwrap(), "whatever");
    assert!(!logs.contains("WARN"), "{logs}");
}

#[test]
fn spans_record_flow_node_action_attempts_and_duration() {
    let mut flow = Flow::new("traced");
    let a = flow.add("first", mark("first"));
    let b = flow.add("second", Mark { name: "second", action: "bye" });
    flow.edge(a >> b);
    let (_, logs) = capture_logs(|| flow.run(&mut SharedStore::new()));
    assert!(logs.contains("node{node=first attempts=1 action=default elapsed_us="), "{logs}");
    assert!(logs.contains("node{node=second attempts=1 action=bye elapsed_us="), "{logs}");
    assert!(logs.contains("flow{flow=traced steps=2}: minllm::flow::run: close time.busy="), "{logs}");

    // A nested flow has a span of its own, inside the span of the node that holds it.
    let mut outer = Flow::new("outer");
    outer.add("sub", flow);
    let (_, logs) = capture_logs(|| outer.run(&mut SharedStore::new()));
    assert!(logs.contains("node{node=sub action=bye"), "{logs}");
    assert!(logs.contains("flow{flow=outer > sub steps=2}"), "{logs}");

    // A checkpointed run has its node spans too.
    let checkpoints = minllm::durable::MemoryCheckpointer::new();
    let (_, logs) = capture_logs(|| outer.durable(&checkpoints, "t").run(&mut SharedStore::new()).map(drop));
    assert!(logs.contains("node{node=first attempts=1 action=default elapsed_us="), "{logs}");
    assert!(logs.contains("node{node=second attempts=1 action=bye elapsed_us="), "{logs}");
}

struct Forever;

impl Node for Forever {
    type Prep = ();
    type Exec = ();
    type Action = &'static str;
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<&'static str> {
        Ok("again")
    }
}

#[test]
fn the_step_limit_stops_a_loop_with_an_error_naming_flow_and_path() {
    let mut flow = Flow::new("looper");
    let decide = flow.add("decide", Forever);
    let search = flow.add("search", Forever);
    flow.edge(decide.on("again") >> search.on("again") >> decide).max_steps(5);
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    match &err {
        Error::StepLimit { flow, limit, recent } => {
            assert_eq!(flow, "looper");
            assert_eq!(*limit, 5);
            assert_eq!(recent, "decide -> search -> decide -> search -> decide");
        }
        other => panic!("expected a step limit error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "flow `looper` exceeded its step limit of 5 steps; last steps: decide -> search -> decide -> search -> decide"
    );

    flow.max_steps(100);
    let err = flow.run(&mut SharedStore::new()).unwrap_err().to_string();
    assert!(err.contains("last steps: ... -> "), "long paths are shortened: {err}");
    // Exactly as many steps as are shown: nothing is left out.
    flow.max_steps(8);
    let err = flow.run(&mut SharedStore::new()).unwrap_err().to_string();
    assert!(
        err.ends_with("last steps: decide -> search -> decide -> search -> decide -> search -> decide -> search"),
        "{err}"
    );
    assert!(
        format!("{flow:?}").starts_with(r#"Flow { name: "looper", nodes: ["decide", "search"], max_steps: Some(8)"#)
    );
}

#[test]
fn a_limit_that_is_not_reached_changes_nothing() {
    let mut flow = Flow::new("f");
    let a = flow.add("a", mark("a"));
    let b = flow.add("b", mark("b"));
    flow.edge(a >> b).max_steps(2);
    let mut store = SharedStore::new();
    assert_eq!(flow.run(&mut store).unwrap(), "default");
    assert_eq!(trace(&store), ["a", "b"]);
}

#[test]
fn a_flow_without_nodes_has_no_start() {
    let flow: Flow = Flow::new("empty");
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    assert!(matches!(err, Error::NoStart { ref flow } if flow == "empty"));
    assert_eq!(flow.validate(), [Problem::NoStart { flow: "empty".into() }]);
}

/// A typed store: any struct works.
#[derive(Default)]
struct Counter {
    count: u32,
    log: Vec<String>,
}

struct Incr;

impl Node<Counter> for Incr {
    type Prep = u32;
    type Exec = u32;
    type Action = &'static str;
    fn prep(&self, store: &Counter, _: &Params) -> NodeResult<u32> {
        Ok(store.count)
    }
    fn exec(&self, n: &u32, _: &ExecContext) -> NodeResult<u32> {
        Ok(n + 1)
    }
    fn post(&self, store: &mut Counter, _: u32, n: u32) -> NodeResult<&'static str> {
        store.count = n;
        store.log.push(format!("count={n}"));
        Ok(if n < 3 { "more" } else { "stop" })
    }
}

#[test]
fn a_user_struct_is_the_store() {
    let mut flow = Flow::<Counter>::new("typed");
    let incr = flow.add("incr", Incr);
    flow.edge(incr.on("more") >> incr).edge(incr.on("stop") >> End).max_steps(10);
    let mut store = Counter::default();
    assert_eq!(flow.run(&mut store).unwrap(), "stop");
    assert_eq!(store.count, 3);
    assert_eq!(store.log, ["count=1", "count=2", "count=3"]);
}

/// A prep that fails on a missing key, with the store's own error.
struct NeedsKey;

impl Node for NeedsKey {
    type Prep = String;
    type Exec = ();
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("question")?)
    }
    fn exec(&self, _: &String, _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: String, _: ()) -> NodeResult<()> {
        Ok(())
    }
}

#[test]
fn errors_name_the_flow_path_node_and_stage() {
    let mut inner = Flow::new("inner");
    inner.add("ask", NeedsKey);
    let mut outer = Flow::new("outer");
    outer.add("research", inner);
    let err = outer.run(&mut SharedStore::new()).unwrap_err();
    assert_eq!(err.to_string(), "prep of node `ask` in flow `outer > research` failed: store has no key `question`");
    assert_eq!(err.node(), Some("ask"));
    assert_eq!(err.flow(), "outer > research");
    assert_eq!(err.stage(), Some(minllm::Stage::Prep));
    let source = std::error::Error::source(&err).unwrap();
    assert!(source.downcast_ref::<minllm::StoreError>().is_some());
}

#[test]
fn a_node_runs_alone() {
    let mut store = SharedStore::new();
    let action = Mark { name: "solo", action: "next" }.run(&mut store).unwrap();
    assert_eq!(action, "next");
    assert_eq!(trace(&store), ["solo"]);
    let err = NeedsKey.run(&mut store).unwrap_err().to_string();
    assert_eq!(err, "prep of node `NeedsKey` in flow `(no flow)` failed: store has no key `question`");
}
