use minllm::node;

struct Ask;

#[node(retires = 3, paralel, wait_ms = 10)]
impl Ask {
    fn exec(&self) {}
}

fn main() {}
