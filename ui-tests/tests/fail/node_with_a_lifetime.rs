use minllm::{flow, node};

#[derive(Default)]
struct State {
    words: usize,
}

#[derive(Default)]
struct Count<'a> {
    text: &'a str,
}

#[node]
impl<'a> Count<'a> {
    fn exec(&self) -> usize {
        self.text.split_whitespace().count()
    }
    fn post(&self, store: &mut State, words: usize) {
        store.words = words;
    }
}

// The flow reports nothing more: the node's error is the only one.
flow! {
    struct Pipeline: State {
        node count: Count<'static>;
        start count;
    }
}

fn main() {}
