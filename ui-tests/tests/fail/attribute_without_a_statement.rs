use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn exec(&self) {}
}

flow! {
    struct Agent: State {
        node search: Search;
        start search;
        /// The end.
    }
}

fn main() {}
