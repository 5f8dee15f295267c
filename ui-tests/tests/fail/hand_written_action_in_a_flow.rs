use minllm::{Action, flow, node};

#[derive(Default)]
struct State;

#[derive(Clone, Copy)]
enum Decision {
    Search,
    Answer,
}

// Fine for runtime flows; `flow!` needs the derive, which lists the variants.
impl Action for Decision {
    fn label(&self) -> &str {
        match self {
            Decision::Search => "search",
            Decision::Answer => "answer",
        }
    }
}

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn exec(&self) -> Decision {
        Decision::Answer
    }
    fn post(&self, _: &mut State, d: Decision) -> Decision {
        d
    }
}

#[derive(Default)]
struct Step;

#[node]
impl Step {
    fn exec(&self) {}
}

flow! {
    struct Agent: State {
        node decide: Decide;
        node search: Step;
        node answer: Step;
        start decide;
        decide - Decision::Search >> search;
        decide - Decision::Answer >> answer;
    }
}

fn main() {}
