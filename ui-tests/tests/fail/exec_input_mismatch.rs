use minllm::node;

struct State;

struct Search;

#[node]
impl Search {
    fn prep(&self, _: &State) -> String {
        String::from("query")
    }
    fn exec(&self, query: &Vec<u8>) -> usize {
        query.len()
    }
}

fn main() {}
