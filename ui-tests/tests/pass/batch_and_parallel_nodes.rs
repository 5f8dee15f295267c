//! Batch nodes, sequential and parallel, in a typed flow.
use minllm::{flow, node, BoxError};

#[derive(Default)]
struct Numbers {
    input: Vec<u64>,
    squares: Vec<u64>,
    halves: Vec<u64>,
}

#[derive(Default)]
struct Square;

#[node(parallel, limit = 2)]
impl Square {
    fn prep(&self, s: &Numbers) -> Vec<u64> {
        s.input.clone()
    }
    fn exec(&self, n: &u64) -> u64 {
        n * n
    }
    fn post(&self, s: &mut Numbers, _: Vec<u64>, out: Vec<u64>) {
        s.squares = out;
    }
}

#[derive(Default)]
struct Halve;

#[node(batch, attempts = 2)]
impl Halve {
    fn prep(&self, s: &Numbers) -> Vec<u64> {
        s.squares.clone()
    }
    fn exec(&self, n: &u64) -> Result<u64, BoxError> {
        if n % 2 == 0 { Ok(n / 2) } else { Err(format!("{n} is odd").into()) }
    }
    fn exec_fallback(&self, n: &u64, _: BoxError) -> Result<u64, BoxError> {
        Ok(n / 2 + 1)
    }
    fn post(&self, s: &mut Numbers, out: Vec<u64>) {
        s.halves = out;
    }
}

flow! {
    struct Math: Numbers {
        node square: Square;
        node halve: Halve;
        start square;
        square >> halve;
    }
}

fn main() {
    let mut n = Numbers { input: (1..=6).collect(), ..Numbers::default() };
    Math::new().run(&mut n).unwrap();
    assert_eq!(n.squares, [1, 4, 9, 16, 25, 36]);
    assert_eq!(n.halves, [1, 2, 5, 8, 13, 18]);
}
