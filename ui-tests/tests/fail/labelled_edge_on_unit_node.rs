use minllm::{flow, node, Action};

#[derive(Default)]
struct State;

#[derive(Clone, Copy, Action)]
enum Decision {
    Search,
    Answer,
}

/// Decides, but has no `post`: its action is `()`, not `Decision`.
#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn exec(&self) -> Decision {
        Decision::Answer
    }
}

#[derive(Default)]
struct Step;

#[node]
impl Step {
    fn exec(&self) {}
    fn post(&self, _: &mut State) {}
}

flow! {
    struct Agent: State {
        node decide: Decide;
        node search: Step;
        start decide;
        decide - Decision::Search >> search;
        decide - Decision::Answer >> end;
    }
}

fn main() {}
