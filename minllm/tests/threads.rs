//! Batches leave no threads behind, whatever thread limits a program uses.
//! Alone in its test binary: it counts the threads of the whole process.
#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed
#![cfg(target_os = "linux")]

use minllm::{BatchMode, BatchNode, ExecContext, Flow, NodeResult, Params, SharedStore};

/// The number of threads of this process.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

/// Doubles four numbers, on as many threads as its mode says.
struct Double(BatchMode);

impl BatchNode for Double {
    type Item = u32;
    type Output = u32;
    type Action = ();
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<Vec<u32>> {
        Ok(vec![1, 2, 3, 4])
    }
    fn exec(&self, n: &u32, _: &ExecContext) -> NodeResult<u32> {
        Ok(n * 2)
    }
    fn post(&self, store: &mut SharedStore, _: Vec<u32>, out: Vec<u32>) -> NodeResult<()> {
        store.set("out", out);
        Ok(())
    }
    fn mode(&self) -> BatchMode {
        self.0
    }
}

#[test]
fn batches_with_forty_thread_limits_leave_no_thread_behind() {
    // rayon's global pool is made once, on first use: make it before counting.
    Double(BatchMode::Parallel { threads: None }).run(&mut SharedStore::new()).unwrap();
    let before = threads();
    for limit in 1..=40 {
        let mut store = SharedStore::new();
        Double(BatchMode::Parallel { threads: Some(limit) }).run(&mut store).unwrap();
        let mut flow = Flow::new("f");
        flow.add("double", Double(BatchMode::Parallel { threads: Some(limit) }));
        flow.run(&mut store).unwrap();
        assert_eq!(store.get::<Vec<u32>>("out").unwrap(), [2, 4, 6, 8]);
    }
    // A finished thread may take a moment to leave the process's list.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while threads() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(threads(), before);
}
