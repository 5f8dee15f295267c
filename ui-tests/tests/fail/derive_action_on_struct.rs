use minllm::Action;

#[derive(Action)]
struct Decision {
    search: bool,
}

#[derive(Action)]
enum Route {
    Left,
    #[action(rename = "left")]
    Right,
}

fn main() {}
