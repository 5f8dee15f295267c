use minllm::node;

struct Fetch;

// An async node never blocks an async run: `blocking` is for sync nodes.
#[node(blocking = false)]
impl Fetch {
    async fn exec(&self) -> u32 {
        1
    }
}

fn main() {}
