use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Fetch;

#[node]
impl Fetch {
    async fn exec(&self) -> usize {
        42
    }
    async fn post(&self, _: &mut State, _: usize) {}
}

flow! {
    struct Pipeline: State {
        node fetch: Fetch;
        start fetch;
    }
}

fn main() {}
