use minllm::node;

struct Ask;

#[node(attempts = 3)]
impl Ask {
    fn exec(&self) -> Result<u32, String> {
        Err("down".into())
    }
    fn exec_fallback(&self, _: &(), error: String) -> Result<u32, String> {
        Err(error)
    }
}

fn main() {}
