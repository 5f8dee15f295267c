//! Attributes on a flow and on its statements.
use minllm::{flow, node};

#[derive(Default)]
struct State {
    hits: u32,
}

#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn exec(&self) {}
    fn post(&self, store: &mut State) {
        store.hits += 1;
    }
}

// Configured out: the struct and everything generated for it go, so the
// unknown types inside do not matter.
flow! {
    #[cfg(any())]
    struct Gone: NoSuchStore {
        node a: NoSuchNode;
        start a;
    }
}

flow! {
    /// Looks a question up twice.
    #[cfg(all())]
    #[derive(Clone)]
    pub struct Lookup: State {
        /// The first search.
        /// It may find nothing.
        #[allow(dead_code)]
        node first: Search;
        /// The second search.
        node second: Search = Search;
        /// Where it begins.
        start first;
        /// At most a few steps.
        max_steps 5;
        /// Search again, then stop.
        first >> second >> end;
    }
}

impl Clone for Search {
    fn clone(&self) -> Self {
        Search
    }
}

fn main() {
    let flow = Lookup::new().clone();
    let mut store = State::default();
    flow.run(&mut store).unwrap();
    assert_eq!(store.hits, 2);
    for comment in ["%% The first search.", "%% It may find nothing.", "%% Where it begins.", "%% At most a few steps.", "%% Search again, then stop."] {
        assert!(Lookup::MERMAID.contains(comment), "{comment} in {}", Lookup::MERMAID);
    }
    // A chain's doc comment is written once, above its first edge.
    assert_eq!(Lookup::MERMAID.matches("Search again").count(), 1);
}
