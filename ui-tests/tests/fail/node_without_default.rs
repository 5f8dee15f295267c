// A node that holds a resource (here a channel) has no `Default`: `flow!`
// cannot make it, and the error says how to give it instead.
use std::sync::mpsc::Sender;

use minllm::{flow, node};

#[derive(Default)]
struct Log(Vec<String>);

struct Notify {
    to: Sender<String>,
}

#[node]
impl Notify {
    fn exec(&self) -> String {
        "done".to_owned()
    }
    fn post(&self, log: &mut Log, line: String) {
        let _ = self.to.send(line.clone());
        log.0.push(line);
    }
}

flow! {
    struct Report: Log {
        node notify: Notify;
        start notify;
    }
}

fn main() {
    let _ = Report::new();
}
