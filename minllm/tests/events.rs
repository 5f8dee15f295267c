//! Streamed runs: events as they happen, from nested flows too, and custom
//! values that hooks emit.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use minllm::durable::{MemoryCheckpointer, Outcome};
use minllm::events::{Event, EventKind, emit};
use minllm::{End, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

/// Emits its tokens one by one, then stores them joined.
struct Speak(&'static [&'static str]);

impl Node for Speak {
    type Prep = ();
    type Exec = String;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
        for token in self.0 {
            emit(token);
        }
        Ok(self.0.concat())
    }
    fn post(&self, store: &mut SharedStore, _: (), said: String) -> NodeResult<()> {
        store.set("said", said);
        Ok(())
    }
}

fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::NodeStarted => format!("start {} {}", e.flow, e.node),
            EventKind::NodeFinished { action, .. } => format!("end {} {} {action}", e.flow, e.node),
            EventKind::Custom(v) => format!("custom {} {v}", e.node),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_streamed_run_reports_nodes_and_custom_values_in_order_with_their_flow() {
    let mut inner = Flow::new("inner");
    inner.add("hello", Speak(&["Hel", "lo"]));
    let mut outer = Flow::new("outer");
    let first = outer.add("first", Speak(&["a"]));
    let nested = outer.add("nested", inner);
    outer.edge(first >> nested);
    let mut seen = Vec::new();
    let mut store = SharedStore::new();
    let last = outer.stream(&mut store, |events| seen.extend(events)).unwrap();
    assert_eq!(last, "default");
    assert_eq!(
        summary(&seen),
        [
            "start outer first",
            "custom first \"a\"",
            "end outer first default",
            "start outer > nested hello",
            "custom hello \"Hel\"",
            "custom hello \"lo\"",
            "end outer > nested hello default",
        ]
    );
    assert_eq!(seen[0].kind.name(), "node_started");
    assert_eq!(seen[1].kind.name(), "custom");
    assert_eq!(seen[2].kind.name(), "node_finished");
    assert_eq!(store.get::<String>("said").as_deref(), Some("Hello"));
}

/// Waits in `exec` until the test says go: it can only say so after it saw
/// this node's start, so the run finishes only if events arrive while it runs.
struct WaitForGo(Mutex<mpsc::Receiver<()>>);

impl Node for WaitForGo {
    type Prep = ();
    type Exec = ();
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        emit("waiting");
        self.0
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "no go: events did not arrive live")?;
        Ok(())
    }
    fn post(&self, _: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
        Ok(())
    }
}

#[test]
fn events_arrive_while_the_node_still_runs() {
    let (go, wait) = mpsc::channel();
    let mut flow = Flow::new("live");
    flow.add("wait", WaitForGo(Mutex::new(wait)));
    let mut kinds = Vec::new();
    flow.stream(&mut SharedStore::new(), |events| {
        for event in events {
            if event.kind == EventKind::Custom("waiting".into()) {
                go.send(()).unwrap();
            }
            kinds.push(event.kind.name());
        }
    })
    .unwrap();
    assert_eq!(kinds, ["node_started", "custom", "node_finished"]);
}

#[test]
fn a_checkpointed_run_streams_too_and_emit_outside_a_stream_does_nothing() {
    let mut flow = Flow::new("talk");
    let a = flow.add("a", Speak(&["x", "y"]));
    let b = flow.add("b", Speak(&["z"]));
    flow.edge(a >> b).edge(b >> End);
    let checkpoints = MemoryCheckpointer::new();
    let mut seen = Vec::new();
    let outcome = flow.durable(&checkpoints, "s1").stream(&mut SharedStore::new(), |events| seen.extend(events));
    assert!(matches!(outcome.unwrap(), Outcome::Finished(_)));
    assert_eq!(seen.iter().filter(|e| e.kind.name() == "custom").count(), 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(flow.durable(&checkpoints, "s1").history().unwrap().len(), 3);
    // A plain run: the same emits go nowhere.
    let mut store = SharedStore::new();
    flow.run(&mut store).unwrap();
    assert_eq!(store.get::<String>("said").as_deref(), Some("z"));
}

/// Emits from each item of a parallel batch.
struct Shout;

impl minllm::BatchNode for Shout {
    type Item = u32;
    type Output = u32;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok((0..8).collect())
    }
    fn exec(&self, item: &u32, _: &ExecContext) -> NodeResult<u32> {
        emit(item * 10);
        Ok(*item)
    }
    fn post(&self, _: &mut SharedStore, _: Vec<u32>, _: Vec<u32>) -> NodeResult<()> {
        Ok(())
    }
    fn mode(&self) -> minllm::BatchMode {
        minllm::BatchMode::Parallel { threads: Some(4) }
    }
}

#[test]
fn values_emitted_by_batch_items_on_other_threads_say_which_item() {
    let mut flow = Flow::new("loud");
    flow.add("shout", Shout);
    let mut custom = Vec::new();
    flow.stream(&mut SharedStore::new(), |events| {
        for event in events {
            if let EventKind::Custom(value) = &event.kind {
                custom.push((event.item.unwrap(), value.as_u64().unwrap()));
            }
        }
    })
    .unwrap();
    custom.sort();
    assert_eq!(custom, (0..8).map(|i| (i as usize, i * 10)).collect::<Vec<_>>());
}

#[test]
fn the_nodes_of_parallel_batch_flow_items_report_their_item_sync_and_async() {
    use minllm::BatchFlow;
    let make = || {
        let mut inner = Flow::new("item");
        inner.add("speak", Speak(&["a", "b"]));
        let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new(); 3])).parallel();
        let mut outer = Flow::new("outer");
        outer.add("all", batch);
        outer
    };
    // Custom values with their flow too: the item is in the flow's path.
    let sorted = |events: Vec<Event>| {
        let mut lines: Vec<String> = events
            .iter()
            .zip(summary(&events))
            .map(|(e, line)| match &e.kind {
                EventKind::Custom(v) => format!("emit {} {} {v}", e.flow, e.node),
                _ => line,
            })
            .collect();
        lines.sort();
        lines
    };
    let mut expected: Vec<String> = (0..3)
        .flat_map(|i| {
            let flow = format!("outer > all[{i}]");
            [
                format!("start {flow} speak"),
                format!("emit {flow} speak \"a\""),
                format!("emit {flow} speak \"b\""),
                format!("end {flow} speak default"),
            ]
        })
        .chain(["start outer all".to_owned(), "end outer all default".to_owned()])
        .collect();
    expected.sort();
    let outer = make();
    let mut seen = Vec::new();
    outer.stream(&mut SharedStore::new(), |events| seen.extend(events)).unwrap();
    assert_eq!(sorted(seen), expected);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let seen = runtime.block_on(async {
        let mut seen = Vec::new();
        outer
            .stream_async(&mut SharedStore::new(), async |mut events| {
                while let Some(event) = events.next().await {
                    seen.push(event);
                }
            })
            .await
            .unwrap();
        seen
    });
    assert_eq!(sorted(seen), expected);
}
