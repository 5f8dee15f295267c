use minllm::{flow, node};

#[derive(Default)]
struct State;

#[derive(Default)]
struct OtherState;

#[derive(Default)]
struct Load;

#[node]
impl Load {
    fn exec(&self) {}
    fn post(&self, _: &mut State) {}
}

#[derive(Default)]
struct Save;

#[node]
impl Save {
    fn exec(&self) {}
    fn post(&self, _: &mut OtherState) {}
}

flow! {
    struct Pipeline: State {
        node load: Load;
        node save: Save;
        start load;
        load >> save;
    }
}

fn main() {}
