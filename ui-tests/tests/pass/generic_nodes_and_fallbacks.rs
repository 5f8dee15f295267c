//! A node generic over a type without `Send`/`Sync` bounds of its own, used
//! with a type that has them; fallbacks that leave out the prep input, as
//! `exec` may; a generic action enum, named with and without `::<`.
use minllm::{Action, BoxError, ExecContext, flow, node};
use std::marker::PhantomData;

#[derive(Action)]
enum Pick<T: Send + 'static> {
    Again(PhantomData<T>),
    Done,
}

#[derive(Default)]
struct Choose;

#[node]
impl Choose {
    fn prep(&self, store: &State) -> usize {
        store.seen.len()
    }
    fn exec(&self, seen: &usize) -> Pick<u8> {
        if *seen < 3 { Pick::Again(PhantomData) } else { Pick::Done }
    }
    fn post(&self, _: &mut State, pick: Pick<u8>) -> Pick<u8> {
        pick
    }
}

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

#[node(attempts = 2)]
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
        node choose: Choose;
        start echo;
        max_steps 10;
        echo >> attempts >> choose;
        choose - Pick<u8>::Again >> echo;
        choose - Pick::<u8>::Done >> end;
    }
}

fn main() {
    let mut store = State::default();
    Pipeline::new().run(&mut store).unwrap();
    assert_eq!(store.seen, ["7", "attempt 2", "7", "attempt 2"]);
}
