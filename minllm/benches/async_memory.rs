//! Memory of a concurrent async batch against a bare `FuturesUnordered` of the
//! same futures, by a counting allocator (kept out of `async_path`, where it
//! would slow every allocation); results in BENCHMARKS.md.
//!
//! `cargo bench -p minllm --bench async_memory` (100,000 items), or
//! `cargo bench -p minllm --bench async_memory -- <items>`.

#![allow(clippy::unwrap_used)]
// a benchmark that fails should stop loudly
// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Sleepers, current_thread};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use minllm::{AsyncBatchNode, ExecContext};

/// Counts the bytes on the heap and their peak, for the memory comparison.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator with the same arguments; the
// counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The peak heap (above what was live before) while `f` runs.
fn peak_of(f: impl FnOnce()) -> usize {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - before
}

/// Peak heap of `n` sleeping items: a concurrent batch, and the baseline of a
/// bare `FuturesUnordered` of the same futures (the node's `exec` with its
/// context) collected in order.
fn memory(n: usize) -> (usize, usize) {
    let rt = current_thread();
    // All items in flight at once.
    let node = Sleepers { wait: Duration::from_millis(1), limit: usize::MAX };
    let node = &node;
    let bare = peak_of(|| {
        rt.block_on(async {
            let items: Vec<usize> = (0..n).collect();
            let mut running: FuturesUnordered<_> = items
                .iter()
                .enumerate()
                .map(|(i, item)| async move {
                    // The node's own exec future, with its context.
                    let ctx = ExecContext::new("sleepers", 1, 1, Some(i));
                    (i, node.exec(item, &ctx).await.unwrap())
                })
                .collect();
            let mut out = vec![0; n];
            while let Some((i, v)) = running.next().await {
                out[i] = v;
            }
            black_box(out);
        })
    });
    let batch = peak_of(|| {
        rt.block_on(async {
            let mut count = n;
            node.run_async(&mut count).await.unwrap();
            assert_eq!(count, n);
        })
    });
    (bare, batch)
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the item count.
    let n = std::env::args().skip(1).find_map(|a| a.parse::<usize>().ok()).unwrap_or(100_000);
    let (bare, batch) = memory(n);
    println!(
        "peak heap, {n} sleeping items: FuturesUnordered {bare} B, concurrent batch {batch} B ({:.2}x)",
        batch as f64 / bare as f64
    );
}
