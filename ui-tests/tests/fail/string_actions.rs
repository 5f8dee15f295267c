use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn exec(&self) -> &'static str {
        "search"
    }
    fn post(&self, _: &mut State, action: &'static str) -> &'static str {
        action
    }
}

#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn exec(&self) {}
}

flow! {
    struct Agent: State {
        node decide: Decide;
        node search: Search;
        start decide;
        decide >> search;
    }
}

fn main() {}
