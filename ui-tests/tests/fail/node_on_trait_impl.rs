use minllm::node;

struct Search;

#[node]
impl Clone for Search {
    fn clone(&self) -> Self {
        Search
    }
}

fn main() {}
