use minllm::node;

struct State;
struct OtherState;

struct Search;

#[node]
impl Search {
    fn prep(&self, _: &State) -> String {
        String::from("query")
    }
    fn exec(&self, query: &String) -> usize {
        query.len()
    }
    fn post(&self, _: &mut OtherState, hits: usize) {
        let _ = hits;
    }
}

fn main() {}
