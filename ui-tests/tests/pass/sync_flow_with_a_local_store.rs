//! A sync flow may use a store that is not `Sync` (a `RefCell` cache).
use std::cell::RefCell;

use minllm::{flow, node};

#[derive(Default)]
struct Local {
    cache: RefCell<Vec<String>>,
}

#[derive(Default)]
struct Remember;

#[node]
impl Remember {
    fn exec(&self) -> String {
        "fact".into()
    }
    fn post(&self, store: &mut Local, fact: String) {
        store.cache.borrow_mut().push(fact);
    }
}

flow! {
    struct Pipeline: Local {
        node remember: Remember;
        start remember;
    }
}

fn main() {
    let mut store = Local::default();
    Pipeline::new().run(&mut store).unwrap();
    assert_eq!(*store.cache.borrow(), ["fact"]);
}
