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
        /// Looks the question up.
        #[allow(dead_code)]
        node search: Search;
        start search;
        #[inline]
        search >> end;
    }
}

fn main() {}
