use minllm::node;

struct State;

struct Fetch;

#[node(parallel, limit = 4)]
impl Fetch {
    async fn prep(&self, _: &State) -> Vec<String> {
        Vec::new()
    }
    async fn exec(&self, url: &String) -> usize {
        url.len()
    }
}

fn main() {}
