//! Validation and diagrams of hand-made graphs, well-formed or not.

use super::*;

fn node(name: &str, edges: &[(&str, usize)]) -> GraphNode {
    GraphNode {
        name: name.into(),
        edges: edges
            .iter()
            .map(|(a, t)| GraphEdge { action: (*a).into(), to: Target::Node(*t), doc: Vec::new() })
            .collect(),
        ..GraphNode::default()
    }
}

fn one(name: &str, nodes: Vec<GraphNode>) -> Graph {
    Graph { flows: vec![GraphFlow { name: name.into(), nodes, start: Some(Target::Node(0)), ..GraphFlow::default() }] }
}

#[test]
fn finds_each_cycle_once_as_a_path() {
    let mut g = one(
        "agent",
        vec![node("decide", &[("search", 1), ("answer", 2)]), node("search", &[("default", 0)]), node("answer", &[])],
    );
    assert_eq!(
        g.validate(),
        [Problem::UnboundedCycle {
            flow: "agent".into(),
            path: vec!["decide".into(), "search".into(), "decide".into()]
        }]
    );
    assert_eq!(
        g.validate()[0].to_string(),
        "flow `agent` has a cycle decide -> search -> decide and no step limit; set one with `max_steps`, or mark the flow `unbounded`"
    );
    g.flows[0].max_steps = Some(10);
    assert!(g.validate().is_empty());
    g.flows[0].max_steps = None;
    g.flows[0].unbounded = true;
    assert!(g.validate().is_empty());
}

#[test]
fn self_loop_and_unreachable() {
    let g = one("f", vec![node("a", &[("again", 0)]), node("b", &[])]);
    let p = g.validate();
    assert!(p.contains(&Problem::Unreachable { flow: "f".into(), node: "b".into(), start: "a".into() }));
    assert!(p.contains(&Problem::UnboundedCycle { flow: "f".into(), path: vec!["a".into(), "a".into()] }));
}

#[test]
fn mermaid_escapes_labels() {
    let g = one("f", vec![node("say \"hi\" <b>", &[("a|b", 1)]), node("end#1", &[])]);
    let m = g.to_mermaid();
    assert!(m.contains(r#"n0["say #quot;hi#quot; #lt;b#gt;"]"#), "{m}");
    assert!(m.contains(r#"n0 -->|"a#124;b"| n1"#), "{m}");
    assert!(m.contains(r#"n1["end#35;1"]"#), "{m}");
}

#[test]
fn edges_that_lead_nowhere_are_drawn_and_reported() {
    let mut g = one("f", vec![node("a", &[]), node("b", &[])]);
    g.flows[0].nodes[0].edges = vec![
        GraphEdge { action: "go".into(), to: Target::NotANode("5".into()), doc: Vec::new() },
        GraphEdge { action: "away".into(), to: Target::Foreign, doc: Vec::new() },
        GraphEdge { action: "done".into(), to: Target::End, doc: Vec::new() },
        GraphEdge { action: "default".into(), to: Target::Node(1), doc: Vec::new() },
    ];
    let m = g.to_mermaid();
    assert!(m.contains(r#"n0 -.->|"go"| x0["5: not a node"]"#), "{m}");
    assert!(m.contains(r#"n0 -.->|"away"| x1["a node of another flow"]"#), "{m}");
    assert!(m.contains(r#"n0 -->|"done"| end0(["end"])"#), "{m}");
    let p = g.validate();
    assert_eq!(
        p,
        [
            Problem::NotANode { flow: "f".into(), node: "a".into(), action: "go".into(), target: "5".into() },
            Problem::UnknownTarget { flow: "f".into(), node: "a".into(), action: "away".into() },
        ]
    );
    assert_eq!(p[0].to_string(), "flow `f`: the successor of `a` for action `go` is `5`, and `5` is not a node");
}

#[test]
fn malformed_graphs_are_reported_not_trusted() {
    // An edge to an index past the nodes, and a flow that names itself as its parent.
    let mut g = one("f", vec![node("a", &[("go", 1)])]);
    g.flows[0].parent = Some((0, 0));
    assert_eq!(g.path(0), "f");
    assert_eq!(g.validate(), [Problem::UnknownTarget { flow: "f".into(), node: "a".into(), action: "go".into() }]);
    assert!(g.to_mermaid().contains(r#"n0 -.->|"go"| x0["a node of another flow"]"#));
    assert_eq!(g.root().map(|f| f.name.as_str()), Some("f"));
    // A start past the nodes, and a node that holds a flow that is not there.
    let mut g = one("f", vec![node("a", &[])]);
    g.flows[0].start = Some(Target::Node(1));
    g.flows[0].nodes[0].inner = Some(7);
    assert_eq!(g.validate(), [Problem::NoStart { flow: "f".into() }]);
    assert!(g.to_mermaid().contains(r#"n0["a"]"#));
    // A flow index just past the last one is not there either.
    g.flows[0].nodes[0].inner = Some(g.flows.len());
    assert!(g.to_mermaid().contains(r#"n0["a"]"#));
    // Two nodes hold flow 1, which names the second as its place: drawn there, once.
    let mut g = one("f", vec![node("a", &[("default", 1)]), node("b", &[])]);
    g.flows[0].nodes[0].inner = Some(1);
    g.flows[0].nodes[1].inner = Some(1);
    g.flows.push(GraphFlow {
        name: "sub".into(),
        parent: Some((0, 1)),
        ..one("sub", vec![node("x", &[])]).flows[0].clone()
    });
    let chart = g.to_mermaid();
    assert_eq!(chart.matches("subgraph").count(), 1, "{chart}");
    assert!(chart.contains(r#"subgraph n1 ["b"]"#), "{chart}");
    assert!(chart.contains(r#"n0["a: the flow f #gt; sub, drawn once"]"#), "{chart}");
    assert_eq!(Graph::default().root(), None);
    assert_eq!(Graph::default().to_mermaid(), "flowchart TD\n");
}

#[test]
fn starts_that_are_not_nodes() {
    let mut g = one("f", vec![node("a", &[])]);
    g.flows[0].start = Some(Target::NotANode("'x'".into()));
    assert_eq!(g.validate(), [Problem::StartNotANode { flow: "f".into(), start: "'x'".into() }]);
    g.flows[0].start = Some(Target::Foreign);
    assert_eq!(g.validate(), [Problem::ForeignStart { flow: "f".into() }]);
    g.flows[0].start = None;
    assert_eq!(g.validate(), [Problem::NoStart { flow: "f".into() }]);
    assert!(g.validate()[0].is_fatal());
}

/// `depth` flows, each holding the next as its only node.
fn nested(depth: usize) -> Graph {
    let flows = (0..depth)
        .map(|f| GraphFlow {
            name: format!("f{f}"),
            parent: f.checked_sub(1).map(|p| (p, 0)),
            nodes: vec![GraphNode {
                name: format!("f{}", f + 1),
                inner: (f + 1 < depth).then_some(f + 1),
                ..GraphNode::default()
            }],
            start: Some(Target::Node(0)),
            ..GraphFlow::default()
        })
        .collect();
    Graph { flows }
}

#[test]
fn a_flow_that_contains_itself_is_reported_once() {
    let mut g = nested(3);
    g.flows[2].nodes[0].inner = Some(0);
    assert_eq!(
        g.validate(),
        [Problem::ContainsItself { flow: "f0 > f1 > f2".into(), node: "f3".into(), contained: "f0".into() }]
    );
    let m = g.to_mermaid();
    assert!(m.contains(r#"n2["f3: the flow f0, drawn once"]"#), "{m}");
}

#[test]
fn deep_nesting_is_linear_and_needs_no_stack() {
    // Run on a small stack: any recursion per level would overflow it.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let g = nested(100_000);
            assert!(g.validate().is_empty());
            let chart = g.to_mermaid();
            (chart.len(), chart.lines().count())
        })
        .expect("spawn");
    let (bytes, lines) = handle.join().expect("no stack overflow");
    // Per level: `subgraph`, `end` and the start edge.
    assert_eq!(lines, 1 + 3 * 100_000 - 1);
    assert!(bytes < 200 * 100_000, "{bytes} bytes for 100k levels");
}

#[test]
fn doc_lines_are_comments_and_each_outcome_is_its_own_end() {
    let edge = |action: &str, to: Target, doc: &[&str]| GraphEdge {
        action: action.into(),
        to,
        doc: doc.iter().map(|l| (*l).to_owned()).collect(),
    };
    let review = GraphNode {
        name: "review".into(),
        doc: vec!["Reads the draft.".into()],
        edges: vec![
            edge("ok", Target::Outcome("Verdict::Approved".into()), &["Good enough."]),
            edge("bad", Target::Outcome("Verdict::Rejected".into()), &[]),
            edge("again", Target::Outcome("Verdict::Approved".into()), &[]),
            edge("stop", Target::End, &[]),
        ],
        ..GraphNode::default()
    };
    let mut g = one("review", vec![review]);
    g.flows[0].doc = vec!["Reviews once.".into()];
    // An outcome ends the flow as `End` does: nothing to report.
    assert_eq!(g.validate(), []);
    assert_eq!(
        g.to_mermaid(),
        "flowchart TD\n    %% Reviews once.\n    %% Reads the draft.\n    n0[\"review\"]\n    start(( )) --> n0\n    \
         %% Good enough.\n    n0 -->|\"ok\"| end0_0([\"end: Verdict::Approved\"])\n    \
         n0 -->|\"bad\"| end0_1([\"end: Verdict::Rejected\"])\n    n0 -->|\"again\"| end0_0\n    \
         n0 -->|\"stop\"| end0([\"end\"])\n"
    );
}

#[test]
fn problems_say_their_kind_flow_and_node() {
    let g = one("agent", vec![node("decide", &[("again", 0)]), node("orphan", &[])]);
    let problems = g.validate();
    let described: Vec<(&str, &str, Option<&str>)> = problems.iter().map(|p| (p.kind(), p.flow(), p.node())).collect();
    assert_eq!(described, [("unreachable", "agent", Some("orphan")), ("unbounded_cycle", "agent", Some("decide"))]);
    assert_eq!(Problem::NoStart { flow: "f".into() }.node(), None);
}
