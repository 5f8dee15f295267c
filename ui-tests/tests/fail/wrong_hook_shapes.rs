use minllm::node;

struct State;

struct Search;

#[node]
impl Search {
    fn prep(&self, store: &mut State) -> u32 {
        let _ = store;
        1
    }
    fn exec(&mut self, n: &u32) -> u32 {
        *n
    }
    fn post(&self, store: &State, n: u32) {
        let _ = (store, n);
    }
}

struct Tally;

#[node]
impl Tally {
    fn prep(&self, _: &State) -> u32 {
        1
    }
    fn exec(&self, n: u32) -> u32 {
        n
    }
}

fn main() {}
