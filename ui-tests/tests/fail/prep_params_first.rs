use minllm::{Params, node};

struct Lookup;

#[node]
impl Lookup {
    fn prep(&self, params: &Params) -> String {
        params.get_str("key").unwrap_or_default().to_string()
    }
    fn exec(&self, key: &str) -> usize {
        key.len()
    }
}

fn main() {}
