//! Code written for the batch wrappers of earlier versions still builds and
//! runs as it did (with deprecation warnings saying what to write instead).

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed
#![allow(deprecated)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Gauge;
use minllm::{
    AsyncBatch, AsyncBatchNode, Batch, BatchNode, ExecContext, Flow, NodeKind, NodeResult, Params, SharedStore,
    StepKind,
};

/// Doubles its items, visiting the gauge in each `exec`; its own mode is the default.
struct Double(Arc<Gauge>);

impl BatchNode for Double {
    type Item = u32;
    type Output = u32;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok((1..=6).collect())
    }
    fn exec(&self, n: &u32, _: &ExecContext) -> NodeResult<u32> {
        self.0.visit(Duration::from_millis(5));
        Ok(n * 2)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<u32>, out: Vec<u32>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
}

impl AsyncBatchNode for Double {
    type Item = u32;
    type Output = u32;
    type Action = ();
    async fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok((1..=6).collect())
    }
    async fn exec(&self, n: &u32, _: &ExecContext<'_>) -> NodeResult<u32> {
        self.0.visit_async(Duration::from_millis(5)).await;
        Ok(n * 2)
    }
    async fn post(&self, store: &mut SharedStore, _: Vec<u32>, out: Vec<u32>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
}

#[test]
fn the_old_batch_wrappers_still_set_how_items_run() {
    let doubled: Vec<u32> = (1..=6).map(|n| n * 2).collect();
    let batch = Batch::parallel(Double(Arc::new(Gauge::new(3)))).threads(3);
    let mut store = SharedStore::new();
    batch.run(&mut store).unwrap();
    assert_eq!(store.get::<Vec<u32>>("out").unwrap(), doubled);
    assert_eq!(batch.node().0.peak(), 3, "three threads of its own");

    let batch = Batch::sequential(Double(Arc::new(Gauge::new(1))));
    batch.run(&mut SharedStore::new()).unwrap();
    assert_eq!(batch.node().0.peak(), 1);

    let mut flow = Flow::new("f");
    flow.add("double", Batch::parallel(Double(Arc::new(Gauge::new(1)))));
    assert!(flow.to_mermaid().contains("parallel batch"), "{}", flow.to_mermaid());
    flow.run(&mut store).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let batch = AsyncBatch::concurrent(Double(Arc::new(Gauge::new(4)))).limit(4);
    let mut store = SharedStore::new();
    runtime.block_on(batch.run_async(&mut store)).unwrap();
    assert_eq!(store.get::<Vec<u32>>("out").unwrap(), doubled);
    assert_eq!(batch.node().0.peak(), 4, "four in flight");

    assert_eq!(StepKind::Node, NodeKind::Node);
}
