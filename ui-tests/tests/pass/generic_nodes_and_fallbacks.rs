//! A node generic over a type without `Send`/`Sync` bounds of its own, used
//! with a type that has them; fallbacks that leave out the prep input, as
//! `exec` may.
use minllm::{BoxError, ExecContext, flow, node};

#[derive(Default)]
struct State {
    seen: Vec<String>,
}

#[derive(Default)]
struct Echo<T> {
    value: T,
}

#[node]
impl<T: Clone + ToString> Echo<T> {
    fn exec(&self) -> Result<T, BoxError> {
        Err("no model".into())
    }
    fn exec_fallback(&self, _error: BoxError) -> T {
        self.value.clone()
    }
    fn post(&self, store: &mut State, value: T) {
        store.seen.push(value.to_string());
    }
}

#[derive(Default)]
struct Attempts;

#[node(retries = 2)]
impl Attempts {
    fn exec(&self, _ctx: &ExecContext) -> Result<u32, BoxError> {
        Err("down".into())
    }
    fn exec_fallback(&self, _error: BoxError, ctx: &ExecContext) -> u32 {
        ctx.attempt()
    }
    fn post(&self, store: &mut State, attempt: u32) {
        store.seen.push(format!("attempt {attempt}"));
    }
}

flow! {
    struct Pipeline: State {
        node echo: Echo<u32> = Echo { value: 7 };
        node attempts: Attempts;
        start echo;
        echo >> attempts;
    }
}

fn main() {
    let mut store = State::default();
    Pipeline::new().run(&mut store).unwrap();
    assert_eq!(store.seen, ["7", "attempt 2"]);
}
