use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Echo<T> {
    value: T,
}

#[node]
impl<T: Clone> Echo<T> {
    fn exec(&self) -> T {
        self.value.clone()
    }
}

flow! {
    struct Pipeline: State {
        node echo: Echo<T>;
        start echo;
    }
}

fn main() {}
