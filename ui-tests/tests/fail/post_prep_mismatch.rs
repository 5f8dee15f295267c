use minllm::node;

struct State;

struct Search;

#[node]
impl Search {
    fn prep(&self, _: &State) -> String {
        String::from("query")
    }
    fn exec(&self, query: &String) -> usize {
        query.len()
    }
    fn post(&self, _: &mut State, query: u32, hits: usize) {
        let _ = (query, hits);
    }
}

fn main() {}
