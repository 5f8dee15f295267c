//! `flow!` on valid flows.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]

mod common;

use minllm::{Action, ExecContext, Params, flow, node};

#[derive(Default, Debug)]
struct State {
    notes: Vec<String>,
    answer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Action)]
enum Decision {
    Search,
    Answer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Action)]
enum Outcome {
    Answered,
}

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn prep(&self, s: &State) -> usize {
        s.notes.len()
    }
    fn exec(&self, n: &usize) -> Decision {
        if *n < 3 { Decision::Search } else { Decision::Answer }
    }
    fn post(&self, _: &mut State, d: Decision) -> Decision {
        d
    }
}

#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn prep(&self, s: &State, params: &Params) -> String {
        format!("{} {}", params.get_str("topic").unwrap_or("?"), s.notes.len())
    }
    fn exec(&self, q: &str, ctx: &ExecContext) -> String {
        format!("note on {q} (attempt {})", ctx.attempt())
    }
    fn post(&self, s: &mut State, note: String) {
        s.notes.push(note);
    }
}

#[derive(Default)]
struct Answer;

#[node]
impl Answer {
    fn prep(&self, s: &State) -> Vec<String> {
        s.notes.clone()
    }
    fn exec(&self, notes: &[String]) -> String {
        format!("answer from {} notes", notes.len())
    }
    fn post(&self, s: &mut State, a: String) {
        s.answer = Some(a);
    }
}

flow! {
    /// The agent loop.
    pub struct Agent: State {
        node decide: Decide;
        node search: Search = Search;
        node answer: Answer;
        start decide;
        max_steps 20;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer >> end(Outcome::Answered);
    }
}

#[test]
fn the_agent_loop_runs_to_its_outcome() {
    let agent = Agent::new();
    let mut state = State::default();
    let outcome = agent.run_with(&mut state, &Params::new().with("topic", "rust")).unwrap();
    assert_eq!(outcome, Outcome::Answered);
    assert_eq!(state.notes, ["note on rust 0 (attempt 1)", "note on rust 1 (attempt 1)", "note on rust 2 (attempt 1)"]);
    assert_eq!(state.answer.as_deref(), Some("answer from 3 notes"));
    assert_eq!(
        Agent::MERMAID,
        "flowchart TD\n    n0[\"decide\"]\n    n1[\"search\"]\n    n2[\"answer\"]\n    start(( )) --> n0\n    \
         n0 -->|\"search\"| n1\n    n0 -->|\"answer\"| n2\n    n1 --> n0\n    n2 --> end0_0([\"end: Outcome::Answered\"])\n"
    );
}

#[test]
fn typed_flows_record_spans_when_a_subscriber_listens() {
    let (_, logs) = common::capture_logs(|| Agent::new().run(&mut State::default()).unwrap());
    assert!(logs.contains("flow{flow=Agent}:node{node=decide attempts=1 action=search"), "{logs}");
    assert!(logs.contains("node{node=answer"), "{logs}");
}

flow! {
    /// The agent loop with a tight step limit.
    struct Hasty: State {
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 4;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer >> end(Outcome::Answered);
    }
}

flow! {
    /// The agent loop with room for five steps.
    struct Five: State {
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 5;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer >> end(Outcome::Answered);
    }
}

#[test]
fn a_typed_flow_past_its_step_limit_lists_exactly_the_steps_that_ran() {
    let err = Hasty::new().run(&mut State::default()).unwrap_err();
    match err {
        minllm::Error::StepLimit { flow, limit, recent } => {
            assert_eq!((flow.as_str(), limit), ("Hasty", 4));
            assert_eq!(recent, "decide -> search -> decide -> search");
        }
        other => panic!("expected a step limit, got {other:?}"),
    }
    // Three searches, four decisions and the answer need eight steps.
    let err = Five::new().run(&mut State::default()).unwrap_err().to_string();
    assert!(err.ends_with("last steps: decide -> search -> decide -> search -> decide"), "{err}");
    // With two notes already, four steps: within the limit.
    let mut state = State { notes: vec!["a".into(), "b".into()], answer: None };
    assert_eq!(Five::new().run(&mut state).unwrap(), Outcome::Answered);
}

#[derive(Default)]
struct Stubborn;

#[node]
impl Stubborn {
    fn exec(&self) -> Decision {
        Decision::Search
    }
    fn post(&self, _: &mut State, d: Decision) -> Decision {
        d
    }
}

flow! {
    /// A loop that never answers.
    struct Endless: State {
        node decide: Stubborn;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 11;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer;
    }
}

#[test]
fn a_long_step_limit_trail_shows_the_last_eight_steps() {
    let err = Endless::new().run(&mut State::default()).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "last steps: ... -> search -> decide -> search -> decide -> search -> decide -> search -> decide"
        ),
        "{err}"
    );
}

flow! {
    /// The agent loop, run on tokio.
    async struct AsyncAgent: State {
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 20;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer >> end(Outcome::Answered);
    }
}

#[test]
fn async_typed_flows_record_node_spans_with_their_duration() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (outcome, logs) = common::capture_logs(|| runtime.block_on(AsyncAgent::new().run(&mut State::default())));
    assert_eq!(outcome.unwrap(), Outcome::Answered);
    assert!(logs.contains("node{node=decide attempts=1 action=search elapsed_us="), "{logs}");
}

#[test]
fn a_typed_flow_in_a_runtime_flow_declares_its_outcomes() {
    let mut outer = minllm::Flow::<State>::new("outer");
    let agent = outer.add("agent", Agent::new());
    let after = outer.add("after", Answer);
    outer.edge(agent.on(Outcome::Answered) >> after);
    assert!(outer.validate().is_empty(), "{:?}", outer.validate());
    outer.edge(agent.on("gave_up") >> after);
    assert_eq!(
        outer.validate(),
        [minllm::graph::Problem::UnknownAction {
            flow: "outer".into(),
            node: "agent".into(),
            action: "gave_up".into(),
            declared: vec!["answered".into()],
        }]
    );

    let mut outer = minllm::Flow::<State>::new("outer");
    let agent = outer.add("agent", AsyncAgent::new());
    let after = outer.add("after", Answer);
    outer.edge(agent.on("gave_up") >> after);
    assert!(matches!(
        &outer.validate()[..],
        [minllm::graph::Problem::MissingEdge { action, .. }, minllm::graph::Problem::UnknownAction { .. }] if action == "answered"
    ));
}
