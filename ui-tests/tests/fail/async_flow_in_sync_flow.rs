use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Fetch;

#[node(batch, concurrent)]
impl Fetch {
    fn prep(&self, _: &State) -> Vec<u32> {
        vec![1, 2]
    }
    async fn exec(&self, id: &u32) -> u32 {
        *id
    }
}

flow! {
    async struct FetchAll: State {
        node fetch: Fetch;
        start fetch;
    }
}

// Both an async batch node and an async flow need an async flow around them.
flow! {
    struct Pipeline: State {
        node fetch: Fetch;
        node all: FetchAll;
        start fetch;
        fetch >> all;
    }
}

fn main() {}
