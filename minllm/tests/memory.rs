//! A million transitions run in a loop, not by recursion, in constant memory.
//! This test binary counts the bytes its allocator holds.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]
// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use minllm::{End, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts down a number in the store; "again" until it reaches zero.
struct Step;

impl Node for Step {
    type Prep = u64;
    type Exec = u64;
    type Action = &'static str;
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<u64> {
        Ok(store.try_get("left")?)
    }
    fn exec(&self, left: &u64, _: &ExecContext) -> NodeResult<u64> {
        Ok(left - 1)
    }
    fn post(&self, store: &mut SharedStore, _: u64, left: u64) -> NodeResult<&'static str> {
        store.update("left", |l: &mut u64| *l = left)?;
        Ok(if left == 0 { "done" } else { "again" })
    }
}

fn run(transitions: u64) -> isize {
    let mut flow = Flow::new("loop");
    let a = flow.add("a", Step);
    let b = flow.add("b", Step);
    let c = flow.add("c", Step);
    flow.edge(a.on("again") >> b.on("again") >> c.on("again") >> a)
        .edge(a.on("done") >> End)
        .edge(b.on("done") >> End)
        .edge(c.on("done") >> End)
        .max_steps(transitions + 1);
    let mut store = SharedStore::new();
    store.set("left", transitions);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    assert_eq!(flow.run(&mut store).unwrap(), "done");
    PEAK.load(Ordering::Relaxed) - before
}

#[test]
fn a_million_transitions_in_constant_memory() {
    // A small stack: recursion per transition would overflow it.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let small = run(1_000);
            let large = run(1_000_000);
            (small, large)
        })
        .unwrap();
    let (small, large) = handle.join().unwrap();
    assert!(large <= small + 1024, "peak heap grew from {small} B (1k transitions) to {large} B (1M transitions)");
}
