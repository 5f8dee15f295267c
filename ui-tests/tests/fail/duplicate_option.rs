use minllm::node;

struct Search;

#[node(attempts = 3, wait_ms = 10, attempts = 5)]
impl Search {
    fn exec(&self) {}
}

fn main() {}
