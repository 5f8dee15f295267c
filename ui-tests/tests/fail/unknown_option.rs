use minllm::node;

struct Search;

#[node(retry = 3)]
impl Search {
    fn exec(&self) {}
}

fn main() {}
