//! The graph rules of `flow!` on parsed flows, with the spans they report on.

use super::*;

fn check(def: FlowDef) -> Vec<String> {
    let mut errors = Errors::default();
    let _ = analyze(&def, &mut errors);
    match errors.finish() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_valid_agent_loop_passes_and_infers_its_outcome() {
    let def: FlowDef = syn::parse_quote! {
        pub struct Agent: State {
            node decide: Decide;
            node search: Search = Search::new(3);
            node answer: Answer;
            start decide;
            max_steps 20;
            decide - Decision::Search >> search >> decide;
            decide - Decision::Answer >> answer >> end(Outcome::Answered);
        }
    };
    let mut errors = Errors::default();
    let model = analyze(&def, &mut errors).expect("valid");
    assert!(errors.is_empty());
    assert_eq!(tokens(&model.outcome), "Outcome");
    assert_eq!(model.start, 0);
    assert_eq!(model.routes[0].labelled.len(), 2);
    assert_eq!(tokens(&model.routes[0].enum_path().expect("an enum")), "Decision");
    assert!(model.routes[1].default.is_some());
}

#[test]
fn reports_every_mistake_at_once() {
    let def: FlowDef = syn::parse_quote! {
        struct F: S {
            node a: A;
            node b: B;
            node b: B2;
            node lonely: L;
            start a;
            a >> b >> a;
            a >> serch;
            b - X::One >> end;
            b - X::One >> a;
        }
    };
    let errors = check(def);
    let expected = [
        "node `b` is declared twice; node names must be unique in a flow",
        "unknown node `serch` (declared: a, b, lonely); declare it with `node serch: Type;`",
        "node `a` already has a default edge (to `b`); a node has one edge per action",
        "node `b` already has an edge for `X::One` (to `end`); a node has one edge per action",
        "node `b` has both a default edge (`b >> ..`) and edges for named actions; a node returns either `()` (one default edge) or an enum (one edge per variant)",
        "node `lonely` is unreachable from the start node `a`; add an edge to it or remove it",
        "this edge closes the cycle `a -> b -> a`, and flow `F` has no step limit; add `max_steps <limit>;` to bound its loops",
    ];
    for e in expected {
        assert!(errors.iter().any(|got| got == e), "missing {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn a_misspelt_target_still_counts_as_reaching_its_node() {
    let def: FlowDef = syn::parse_quote! {
        struct F: S { node a: A; node search: B; start a; a >> serch; }
    };
    assert_eq!(check(def), ["unknown node `serch`; did you mean `search`?"]);
}

#[test]
fn start_is_required_and_checked() {
    let def: FlowDef = syn::parse_quote!(struct F: S { node a: A; });
    assert_eq!(check(def), ["flow `F` has no start node; add `start a;`"]);
    let def: FlowDef = syn::parse_quote!(struct F: S { node a: A; start b; });
    assert_eq!(check(def), ["unknown node `b` (declared: a); declare it with `node b: Type;`"]);
}

#[test]
fn ends_agree_on_the_outcome() {
    let def: FlowDef = syn::parse_quote! {
        struct F: S { node a: A; node b: B; start a; a - D::X >> end(O::Done); a - D::Y >> b >> end; }
    };
    let errors = check(def);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("this `end` gives no outcome"), "{errors:#?}");
    let def: FlowDef = syn::parse_quote! {
        struct F: S { node a: A; node b: B; start a; a - D::X >> end(O::Done); a - D::Y >> b; }
    };
    assert_eq!(
        check(def),
        ["node `b` has no edges, so the flow would end there without an outcome; add `b >> end(...);`"]
    );
}

/// The errors for `source`, with the line each lands on.
fn errors_at(source: &str) -> Vec<(String, usize)> {
    let def: FlowDef = syn::parse_str(source).expect("parses");
    let mut errors = Errors::default();
    let _ = analyze(&def, &mut errors);
    match errors.finish() {
        Ok(()) => Vec::new(),
        Err(e) => e.into_iter().map(|e| (e.to_string(), e.span().start().line)).collect(),
    }
}

#[test]
fn a_mix_of_default_and_named_edges_is_reported_on_the_later_edge() {
    for (edges, line) in
        [("a - D::X >> b;\na >> b;", 3), ("a >> b;\na - D::X >> b;", 3), ("a >> b;\n\na - D::X >> b;", 4)]
    {
        let errors = errors_at(&format!("struct F: S {{ node a: A; node b: B; start a;\n{edges} }}"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].0.starts_with("node `a` has both a default edge"), "{errors:#?}");
        assert_eq!(errors[0].1, line, "{edges}");
    }
}

#[test]
fn outcomes_are_checked_where_they_are_given() {
    let cases = [
        (
            "struct F: S { node a: A; start a; a - D::X >> end(O::Done); a - D::Y >> end(P::Done); }",
            "the flow's ends disagree on the outcome type: `O` elsewhere, `P` here (after `a`)",
        ),
        (
            "struct F: S { node a: A; start a; a - D::X >> end(Done); }",
            "write the outcome with its type, e.g. `Outcome::Done`, or declare it: `struct F: S -> Outcome`",
        ),
        (
            "struct F: S -> O { node a: A; start a; a >> end; }",
            "the flow declares an outcome type, but its ends give no value: write `>> end(value)`",
        ),
        ("struct F: S { start a; }", "unknown node `a`: the flow declares no nodes; declare it with `node a: Type;`"),
    ];
    for (source, message) in cases {
        let errors = errors_at(source);
        assert_eq!(errors.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), [message], "{source}");
    }
    // An outcome type and no end at all: the nodes end the flow, nothing to report.
    assert!(
        errors_at(
            "struct F: S -> O { node a: A; node b: B; start a; a - D::X >> b; a - D::Y >> b; b >> end(O::Done); }"
        )
        .is_empty()
    );
    // Ends that agree.
    assert!(
        errors_at("struct F: S { node a: A; start a; a - D::X >> end(O::One); a - D::Y >> end(O::Two); }").is_empty()
    );
}

#[test]
fn typos_are_similar() {
    assert!(similar("serch", "search"));
    assert!(similar("strat", "start"));
    assert!(!similar("a", "b"), "too short to guess");
    assert!(similar("node", "nodes"));
    assert!(!similar("decide", "answer"));
}

#[test]
fn typos_are_counted_in_edits() {
    // (typed, meant, similar): one edit allowed under five letters, two from five.
    let cases = [
        ("cat", "car", true),
        ("ca", "cb", false),
        ("nade", "node", true),
        ("naoe", "node", false),
        ("odes", "node", false),
        ("decade", "decide", true),
        ("dxcxde", "decide", true),
        ("dxxxde", "decide", false),
        ("xxsearch", "search", true),
        ("xxxsearch", "search", false),
        ("searchxx", "search", true),
        ("searchxxx", "search", false),
        ("sarh", "search", false),
        ("seaarch", "search", true),
    ];
    for (typed, meant, expected) in cases {
        assert_eq!(similar(typed, meant), expected, "{typed} ~ {meant}");
        assert_eq!(similar(meant, typed), expected, "{meant} ~ {typed}");
    }
}
