use minllm::node;

struct Search;

#[node(retries = 3, wait_ms = 10, retries = 5)]
impl Search {
    fn exec(&self) {}
}

fn main() {}
