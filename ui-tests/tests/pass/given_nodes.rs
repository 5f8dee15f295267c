// Nodes that hold resources are given to `new` (`= _`), in the order declared;
// the others are made as before.
use std::sync::mpsc::{Sender, channel};

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

#[derive(Default)]
struct Start;

#[node]
impl Start {
    fn exec(&self) {}
    fn post(&self, log: &mut Log) {
        log.0.push("start".to_owned());
    }
}

struct Prefix(&'static str);

#[node]
impl Prefix {
    fn exec(&self) {}
    fn post(&self, log: &mut Log) {
        log.0.push(self.0.to_owned());
    }
}

flow! {
    struct Report: Log {
        node begin: Start;
        node notify: Notify = _;
        node prefix: Prefix = _;
        start begin;
        begin >> prefix >> notify;
    }
}

fn main() {
    let (to, from) = channel();
    let report = Report::new(Notify { to }, Prefix("report"));
    let mut log = Log::default();
    report.run(&mut log).unwrap();
    assert_eq!(log.0, ["start", "report", "done"]);
    assert_eq!(from.recv().unwrap(), "done");
}
