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
        #[cfg(feature = "search")]
        node search: Search;
        start search;
    }
}

fn main() {}
