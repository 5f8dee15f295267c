use minllm::{flow, node};

#[derive(Default)]
struct State {
    total: usize,
}

#[derive(Default)]
struct Count;

#[node(batch)]
impl Count {
    fn prep(&self, _: &State) -> String {
        String::new()
    }
    fn exec(&self, word: &String) -> usize {
        word.len()
    }
    fn post(&self, store: &mut State, counts: Vec<usize>) {
        store.total = counts.iter().sum();
    }
}

// The node's one error is all: the flow that uses it reports nothing.
flow! {
    struct Pipeline: State {
        node count: Count;
        start count;
    }
}

fn main() {}
