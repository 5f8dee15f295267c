//! An agent loop bounded by `max_steps`: runs to its end, and a runaway loop stops
//! with a step-limit error.
use minllm::{flow, node, Action, Error};

#[derive(Default)]
struct State {
    searches: u32,
    give_up_after: u32,
}

#[derive(Clone, Copy, Action)]
enum Decision {
    Search,
    Answer,
}

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn prep(&self, s: &State) -> (u32, u32) {
        (s.searches, s.give_up_after)
    }
    fn exec(&self, counts: &(u32, u32)) -> Decision {
        if counts.0 < counts.1 { Decision::Search } else { Decision::Answer }
    }
    fn post(&self, _: &mut State, d: Decision) -> Decision {
        d
    }
}

#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn exec(&self) {}
    fn post(&self, s: &mut State) {
        s.searches += 1;
    }
}

flow! {
    struct Agent: State {
        node decide: Decide;
        node search: Search;
        start decide;
        max_steps 10;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> end;
    }
}

fn main() {
    let agent = Agent::new();
    let mut state = State { searches: 0, give_up_after: 3 };
    agent.run(&mut state).unwrap();
    assert_eq!(state.searches, 3);

    let mut runaway = State { searches: 0, give_up_after: 100 };
    match agent.run(&mut runaway) {
        Err(Error::StepLimit { flow, limit, recent }) => {
            assert_eq!((flow.as_str(), limit), ("Agent", 10));
            assert!(recent.ends_with("search -> decide -> search"), "{recent}");
        }
        other => panic!("expected a step-limit error, got {other:?}"),
    }
}
