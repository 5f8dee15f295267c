use minllm::node;

struct Ask;

// `attempts` counts every run of `exec`, the first included, as PocketFlow's
// `max_retries` does; the old name points there.
#[node(retries = 3)]
impl Ask {
    fn exec(&self) -> u32 {
        1
    }
}

fn main() {}
