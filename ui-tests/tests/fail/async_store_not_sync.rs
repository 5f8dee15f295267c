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
    async fn exec(&self) -> String {
        "fact".into()
    }
    async fn post(&self, store: &mut Local, fact: String) {
        store.cache.borrow_mut().push(fact);
    }
}

flow! {
    async struct Pipeline: Local {
        node remember: Remember;
        start remember;
    }
}

fn main() {}
