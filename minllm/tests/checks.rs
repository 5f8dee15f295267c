//! Runtime-built flows checked before they run: validation, refusal of
//! graphs that cannot run, and their Mermaid charts.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod common;

use common::{Mark, mark, trace};
use minllm::graph::Problem;
use minllm::{Action, End, Error, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

#[derive(Debug, Clone, Copy)]
enum Decision {
    Search,
    Answer,
}

impl Action for Decision {
    fn label(&self) -> &str {
        match self {
            Decision::Search => "search",
            Decision::Answer => "answer",
        }
    }
    fn declared() -> Option<&'static [&'static str]> {
        Some(&["search", "answer"])
    }
}

struct Decide;

impl Node for Decide {
    type Prep = ();
    type Exec = ();
    type Action = Decision;
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<Decision> {
        Ok(Decision::Answer)
    }
}

#[test]
fn validate_reports_every_kind_of_problem() {
    let mut other = Flow::<SharedStore>::new("other");
    let foreign = other.add("foreign", mark("x"));

    let mut flow = Flow::new("agent");
    let decide = flow.add("decide", Decide);
    let search = flow.add("search", mark("search"));
    let lonely = flow.add("lonely", mark("lonely"));
    let twin = flow.add("search", mark("search again"));
    flow.start(decide)
        .edge(decide.on(Decision::Search) >> search >> decide) // a cycle, no limit
        .edge(decide.on("dance") >> search) // an action Decide never returns
        .edge(search.on("away") >> foreign) // a node of another flow
        .edge(lonely >> twin)
        .edge(lonely >> search); // the same (node, action) twice
    let problems = flow.validate();
    let expected = [
        Problem::DuplicateName { flow: "agent".into(), node: "search".into() },
        Problem::DuplicateEdge { flow: "agent".into(), node: "lonely".into(), action: "default".into() },
        Problem::UnknownTarget { flow: "agent".into(), node: "search".into(), action: "away".into() },
        Problem::MissingEdge {
            flow: "agent".into(),
            node: "decide".into(),
            action: "answer".into(),
            edges: vec!["search".into(), "dance".into()],
        },
        Problem::UnknownAction {
            flow: "agent".into(),
            node: "decide".into(),
            action: "dance".into(),
            declared: vec!["search".into(), "answer".into()],
        },
        Problem::Unreachable { flow: "agent".into(), node: "lonely".into(), start: "decide".into() },
        Problem::Unreachable { flow: "agent".into(), node: "search".into(), start: "decide".into() },
        Problem::UnboundedCycle { flow: "agent".into(), path: vec!["decide".into(), "search".into(), "decide".into()] },
    ];
    for p in &expected {
        assert!(problems.contains(p), "missing {p:?} in {problems:#?}");
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        text.contains(
            &"flow `agent`: node `decide` can return action `answer` but has no edge for it (its edges: search, dance)"
                .to_string()
        ),
        "{text:#?}"
    );

    // A flow with an edge that leads nowhere does not start.
    let mut run = Flow::new("run");
    let s = run.add("s", Mark { name: "s", action: "away" });
    run.edge(s.on("away") >> foreign);
    let mut store = SharedStore::new();
    let err = run.run(&mut store).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { problem, .. } if matches!(**problem, Problem::UnknownTarget { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("`s`") && err.to_string().contains("away"), "{err}");
    assert!(trace(&store).is_empty(), "no node ran");
    let _ = other;
}

#[test]
fn validate_looks_inside_nested_flows() {
    let mut inner = Flow::new("inner");
    let a = inner.add("a", Mark { name: "a", action: "again" });
    inner.edge(a.on("again") >> a);
    let mut outer = Flow::new("outer");
    outer.add("sub", inner);
    assert_eq!(
        outer.validate(),
        [Problem::UnboundedCycle { flow: "outer > sub".into(), path: vec!["a".into(), "a".into()] }]
    );
}

#[test]
fn mermaid_draws_nested_flows_as_subgraphs() {
    let mut inner = Flow::new("inner");
    let x = inner.add("x", mark("x"));
    let y = inner.add("y \"quoted\"", mark("y"));
    inner.edge(x >> y);
    let mut outer = Flow::new("outer");
    let a = outer.add("a", Decide);
    let sub = outer.add("sub", inner);
    let b = outer.add("b", mark("b"));
    outer.edge(a.on(Decision::Search) >> sub >> b).edge(a.on(Decision::Answer) >> b);
    let chart = outer.to_mermaid();
    let expected = r#"flowchart TD
    n0["a"]
    subgraph n1 ["sub"]
        n3["x"]
        n4["y #quot;quoted#quot;"]
        start1(( )) --> n3
        n3 --> n4
    end
    n2["b"]
    start(( )) --> n0
    n0 -->|"search"| n1
    n0 -->|"answer"| n2
    n1 --> n2
"#;
    assert_eq!(chart, expected);
}

#[test]
fn a_start_node_from_another_flow_is_reported_and_refused() {
    let mut other = Flow::<SharedStore>::new("other");
    let foreign = other.add("x", mark("x"));
    let mut flow = Flow::new("f");
    flow.add("a", mark("a"));
    flow.start(foreign);
    assert!(flow.validate().contains(&Problem::ForeignStart { flow: "f".into() }));
    let err = flow.run(&mut SharedStore::new()).unwrap_err();
    assert_eq!(err.to_string(), "flow `f`: the start node given to `Flow::start` belongs to another flow");
    flow.max_steps(0);
    assert!(flow.validate().contains(&Problem::ZeroStepLimit { flow: "f".into() }));
}

/// Says "again" until it ran `times` times, then "done".
struct Loop {
    name: &'static str,
    times: usize,
}

impl Node for Loop {
    type Prep = usize;
    type Exec = ();
    type Action = &'static str;
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<usize> {
        Ok(trace(store).len())
    }
    fn exec(&self, _: &usize, _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, ran: usize, _: ()) -> NodeResult<&'static str> {
        common::push(store, self.name);
        Ok(if ran + 1 < self.times { "again" } else { "done" })
    }
}

fn looping(name: &str, times: usize) -> Flow {
    let mut flow = Flow::new(name);
    let step = flow.add("step", Loop { name: "step", times });
    flow.edge(step.on("again") >> step).edge(step.on("done") >> End);
    flow
}

#[test]
fn a_cycle_without_a_limit_is_refused_before_the_first_node_runs() {
    let flow = looping("spin", 3);
    let mut store = SharedStore::new();
    let err = flow.run(&mut store).unwrap_err();
    assert!(trace(&store).is_empty(), "no node ran");
    match &err {
        Error::Invalid { flow, problem } => {
            let Problem::UnboundedCycle { flow: at, path } = &**problem else { panic!("{problem:?}") };
            assert_eq!((flow.as_str(), at.as_str()), ("spin", "spin"));
            assert_eq!(path, &["step", "step"]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "flow `spin` cannot run: flow `spin` has a cycle step -> step and no step limit; set one with `max_steps`, or mark the flow `unbounded`"
    );

    // Deep inside another flow: refused before the outer flow's first node.
    let mut outer = Flow::new("outer");
    let first = outer.add("first", mark("first"));
    let sub = outer.add("sub", looping("spin", 3));
    outer.edge(first >> sub);
    let mut store = SharedStore::new();
    let err = outer.run(&mut store).unwrap_err();
    assert!(trace(&store).is_empty(), "no node ran");
    assert!(
        matches!(&err, Error::Invalid { problem, .. } if matches!(&**problem, Problem::UnboundedCycle { flow, .. } if flow == "outer > sub")),
        "{err:?}"
    );
    // Async runs refuse it the same way.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let err = runtime.block_on(outer.run_async(&mut store)).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(trace(&store).is_empty(), "no node ran");
}

#[test]
fn a_limit_or_unbounded_lets_a_cycle_run() {
    let mut flow = looping("spin", 3);
    flow.unbounded();
    let mut store = SharedStore::new();
    assert_eq!(flow.run(&mut store).unwrap(), "done");
    assert_eq!(trace(&store), ["step", "step", "step"]);
    assert!(flow.validate().is_empty());

    // A limit set after a refused run is seen: what was found is forgotten.
    let mut flow = looping("spin", 3);
    assert!(flow.run(&mut SharedStore::new()).is_err());
    flow.max_steps(3);
    let mut store = SharedStore::new();
    assert_eq!(flow.run(&mut store).unwrap(), "done");
    // Unbounded does not lift a limit that is set.
    flow.max_steps(2).unbounded();
    assert!(matches!(flow.run(&mut SharedStore::new()), Err(Error::StepLimit { limit: 2, .. })));
}

#[test]
fn end_edges_are_drawn_and_count_as_edges() {
    let flow = {
        let mut flow = looping("spin", 2);
        flow.max_steps(5);
        flow
    };
    assert!(flow.validate().is_empty());
    let chart = flow.to_mermaid();
    assert!(chart.contains(r#"n0 -->|"again"| n0"#), "{chart}");
    assert!(chart.contains(r#"n0 -->|"done"| end0(["end"])"#), "{chart}");
}

#[test]
fn nodes_are_found_by_name() {
    let mut flow = Flow::<SharedStore>::new("f");
    let a = flow.add("a", mark("a"));
    let b = flow.add("b", mark("b"));
    let again = flow.add("a", mark("a2"));
    assert_eq!(flow.node("a"), Some(a), "the first node of a name");
    assert_eq!(flow.node("b"), Some(b));
    assert_ne!(flow.node("a"), Some(again));
    assert_eq!(flow.node("c"), None);
    assert!(flow.validate().contains(&Problem::DuplicateName { flow: "f".into(), node: "a".into() }));
}

#[test]
fn a_nested_flow_that_cannot_run_is_named_in_the_refusal() {
    let mut outer = Flow::new("outer");
    let a = outer.add("a", mark("a"));
    let sub = outer.add("sub", Flow::<SharedStore>::new("empty"));
    outer.edge(a >> sub);
    let mut store = SharedStore::new();
    let err = outer.run(&mut store).unwrap_err();
    assert!(trace(&store).is_empty(), "no node ran");
    assert_eq!(err.to_string(), "flow `outer` cannot run: flow `outer > sub` has no start node");
    assert!(
        matches!(&err, Error::Invalid { flow, problem } if flow == "outer" && **problem == Problem::NoStart { flow: "outer > sub".into() }),
        "{err:?}"
    );

    let mut other = Flow::<SharedStore>::new("other");
    let foreign = other.add("x", mark("x"));
    let mut inner = Flow::new("inner");
    inner.add("b", mark("b"));
    inner.start(foreign);
    let mut outer = Flow::new("outer");
    outer.add("sub", inner);
    let err = outer.run(&mut SharedStore::new()).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { problem, .. } if **problem == Problem::ForeignStart { flow: "outer > sub".into() }),
        "{err:?}"
    );
}
