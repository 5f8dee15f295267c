use minllm::node;

trait HasText {
    fn text(&self) -> &str;
}

struct Count;

#[node]
impl Count {
    fn prep<S: HasText>(&self, store: &S) -> String {
        store.text().to_owned()
    }
    fn exec(&self, text: &String) -> usize {
        text.len()
    }
}

fn main() {}
