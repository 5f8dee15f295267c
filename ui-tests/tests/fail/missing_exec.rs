use minllm::node;

struct State;

struct Search;

#[node]
impl Search {
    fn prep(&self, _: &State) -> String {
        String::from("query")
    }
    fn post(&self, _: &mut State, _: String) {}
}

fn main() {}
