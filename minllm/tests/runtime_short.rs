//! Runtime flows without the ceremony: `#[node]` types and closure steps.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use minllm::{Flow, NodeResult, Params, SharedStore, node};

struct Fetch;

#[node]
impl Fetch {
    fn prep(&self, store: &SharedStore) -> NodeResult<String> {
        Ok(store.try_get("url")?)
    }
    fn exec(&self, url: &str) -> String {
        format!("page of {url}")
    }
    fn post(&self, store: &mut SharedStore, page: String) -> &'static str {
        store.set("page", page);
        "fetched"
    }
}

#[test]
fn node_types_and_closure_steps_make_a_runtime_flow() {
    let mut flow = Flow::new("pipeline");
    let fetch = flow.add("fetch", Fetch);
    let count = flow.add(
        "count",
        minllm::step(|store: &mut SharedStore, _: &Params| -> NodeResult<()> {
            let words = store.get::<String>("page").unwrap_or_default().split_whitespace().count();
            store.set("words", words as u64);
            Ok(())
        }),
    );
    flow.edge(fetch.on("fetched") >> count);
    let mut store = SharedStore::new();
    store.set("url", "example.org".to_string());
    flow.run(&mut store).unwrap();
    assert_eq!(store.get::<u64>("words"), Some(3));
}
