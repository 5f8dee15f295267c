use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn exec(&self) -> String {
        "search".into()
    }
    fn post(&self, _: &mut State, action: String) -> String {
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
        decide - "search" >> search;
    }
}

fn main() {}
