use minllm::node;

#[node]
impl (u8, u8) {
    fn exec(&self) -> u8 {
        self.0
    }
}

fn main() {}
