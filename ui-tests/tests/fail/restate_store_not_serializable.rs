// A run on Restate takes its store in and gives it back as JSON: a flow over a
// `SharedStore` (whose values' types are not in any JSON) is refused where it
// is served, with what to do instead.
use minllm::restate::RestateFlow;
use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};

struct Greet;

impl Node for Greet {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("name")?)
    }
    fn exec(&self, name: &String, _: &ExecContext) -> NodeResult<String> {
        Ok(format!("hello {name}"))
    }
    fn post(&self, store: &mut SharedStore, _: String, greeting: String) -> NodeResult<()> {
        store.set("greeting", greeting);
        Ok(())
    }
}

fn main() {
    let mut flow = Flow::new("greet");
    flow.add("greet", Greet);
    let _ = RestateFlow::new(flow).definitions();
}
