use minllm::node;

struct State;

struct Count;

#[node(batch)]
impl Count {
    fn prep(&self, _: &State) -> String {
        String::new()
    }
    fn exec(&self, word: &String) -> usize {
        word.len()
    }
}

fn main() {}
