//! A flow generic over its store: any store with a counter works.
use minllm::{flow, node};

trait Counter: Send + Sync + 'static {
    fn bump(&mut self) -> u32;
}

#[derive(Default)]
struct Simple(u32);

impl Counter for Simple {
    fn bump(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

#[derive(Default)]
struct Loud {
    count: u32,
    log: Vec<String>,
}

impl Counter for Loud {
    fn bump(&mut self) -> u32 {
        self.count += 10;
        self.log.push(format!("now {}", self.count));
        self.count
    }
}

#[derive(Default)]
struct Bump;

#[node]
impl Bump {
    fn exec(&self) {}
}

impl<S: Counter> minllm::Node<S> for Twice {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &S, _: &minllm::Params) -> minllm::NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &minllm::ExecContext) -> minllm::NodeResult<()> {
        Ok(())
    }
    fn post(&self, s: &mut S, _: (), _: ()) -> minllm::NodeResult<()> {
        s.bump();
        s.bump();
        Ok(())
    }
}

#[derive(Default)]
struct Twice;

flow! {
    struct Count<S: Counter>: S {
        node first: Bump;
        node twice: Twice;
        start first;
        first >> twice;
    }
}

fn main() {
    let mut simple = Simple::default();
    Count::<Simple>::new().run(&mut simple).unwrap();
    assert_eq!(simple.0, 2);
    let mut loud = Loud::default();
    Count::<Loud>::new().run(&mut loud).unwrap();
    assert_eq!(loud.log, ["now 10", "now 20"]);
}
