use minllm::{flow, node, Action};

#[derive(Default)]
struct State;

#[derive(Clone, Copy, Action)]
enum Decision {
    Search,
    Answer,
}
use Decision::*;

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn exec(&self) -> Decision {
        Answer
    }
    fn post(&self, _: &mut State, d: Decision) -> Decision {
        d
    }
}

flow! {
    struct Agent: State {
        node decide: Decide;
        start decide;
        decide - Search >> end;
        decide - Decision::Answer >> end;
    }
}

fn main() {}
