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
    assert!(Agent::MERMAID.starts_with("flowchart TD\n"), "{}", Agent::MERMAID);
    assert!(Agent::MERMAID.contains("n_decide -->|\"Search\"| n_search"), "{}", Agent::MERMAID);
}

#[test]
fn typed_flows_record_spans_when_a_subscriber_listens() {
    let (_, logs) = common::capture_logs(|| Agent::new().run(&mut State::default()).unwrap());
    assert!(logs.contains("flow{flow=Agent}:node{node=decide attempts=1 action=search"), "{logs}");
    assert!(logs.contains("node{node=answer"), "{logs}");
}
