//! What the usual one-liner, `tracing_subscriber::fmt().init()` (events at
//! INFO and above, no span events), shows of a run: each node as it finishes,
//! inside its flow's span, batch items and retries with the item they are.
//! One test in this binary: the subscriber is global and sees every thread.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use minllm::{BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params, Retry, SharedStore};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Load;

impl Node for Load {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
}

/// Three items on threads; item 1 fails its first attempt.
struct Embed(AtomicUsize);

impl BatchNode for Embed {
    type Item = u32;
    type Output = u32;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok(vec![0, 1, 2])
    }
    fn exec(&self, item: &u32, _: &ExecContext) -> NodeResult<u32> {
        if *item == 1 && self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("the embedding server is busy".into());
        }
        Ok(item * 2)
    }
    fn post(&self, _: &mut SharedStore, _: Vec<u32>, _: Vec<u32>) -> NodeResult<()> {
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: Some(3) }
    }
    fn retry(&self) -> Retry {
        Retry::attempts(2)
    }
}

#[test]
fn the_usual_fmt_subscriber_shows_nodes_items_and_retries() {
    tracing_subscriber::fmt().with_writer(|| Sink).with_ansi(false).init();
    let mut inner = Flow::new("index");
    inner.add("embed", Embed(AtomicUsize::new(0)));
    let mut flow = Flow::new("pipeline");
    let load = flow.add("load", Load);
    let index = flow.add("index", inner);
    flow.edge(load >> index);
    flow.run(&mut SharedStore::new()).unwrap();
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    let has = |line: &str| log.lines().any(|l| l.contains(line));
    assert!(
        has("INFO flow{flow=pipeline}:node{node=load attempts=1 action=default elapsed_us=")
            && has("}: minllm::node: node finished"),
        "{log}"
    );
    assert!(has("flow{flow=pipeline > index}:node{node=embed action=default elapsed_us="), "{log}");
    assert!(has("node{node=index action=default elapsed_us="), "{log}");
    assert!(
        has(
            "WARN flow{flow=pipeline}:node{node=index}:flow{flow=pipeline > index}:node{node=embed}:item{node=embed item=1}:"
        ) && has(
            "exec failed; retrying node=\"embed\" item=1 attempt=1 max_attempts=2 error=the embedding server is busy"
        ),
        "{log}"
    );
}
