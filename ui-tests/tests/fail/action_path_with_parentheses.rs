use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct Step;

#[node]
impl Step {
    fn exec(&self) {}
}

flow! {
    struct Agent: State {
        node a: Step;
        node b: Step;
        start a;
        a - Choice(u8)::Go >> b;
    }
}

fn main() {}
