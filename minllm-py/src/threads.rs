//! A small thread pool for parallel batches: items run on worker threads that
//! take the GIL only while they call Python, so blocking calls overlap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The stack of a worker thread: what `threading.stack_size()` gives Python
/// threads, else 8 MiB (their usual size), so that hooks which run on a Python
/// thread also run on a worker.
fn stack_size(py: Python<'_>) -> PyResult<usize> {
    let set: usize = py.import("threading")?.getattr("stack_size")?.call0()?.extract()?;
    Ok(if set == 0 { 8 << 20 } else { set })
}

/// Runs `work` for every item on `workers` threads; results in input order.
/// The first error wins (it keeps its Python type) and no item starts after
/// it. Ctrl-C stops the wait at once; items already running finish on their own.
pub(crate) fn run_on_threads(
    py: Python<'_>,
    count: usize,
    workers: usize,
    work: impl Fn(Python<'_>, usize) -> PyResult<Py<PyAny>> + Send + Sync + 'static,
) -> PyResult<Vec<Py<PyAny>>> {
    struct Shared {
        next: AtomicUsize,
        done: AtomicUsize,
        cancelled: AtomicBool,
        results: parking_lot::Mutex<Vec<Option<Py<PyAny>>>>,
        error: parking_lot::Mutex<Option<PyErr>>,
        finished: parking_lot::Condvar,
        finished_lock: parking_lot::Mutex<()>,
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        cancelled: AtomicBool::new(false),
        results: parking_lot::Mutex::new((0..count).map(|_| None).collect()),
        error: parking_lot::Mutex::new(None),
        finished: parking_lot::Condvar::new(),
        finished_lock: parking_lot::Mutex::new(()),
    });
    let work = Arc::new(work);
    let workers = workers.clamp(1, count);
    let stack_size = stack_size(py)?;
    for _ in 0..workers {
        let (state, work) = (Arc::clone(&shared), Arc::clone(&work));
        let builder = std::thread::Builder::new().name("minllm-worker".into()).stack_size(stack_size);
        let spawned = builder.spawn(move || {
            loop {
                let i = state.next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                if !state.cancelled.load(Ordering::SeqCst) {
                    crate::core::ON_WORKER.with(|w| w.set(true));
                    let outcome = Python::attach(|py| work(py, i));
                    match outcome {
                        Ok(value) => state.results.lock()[i] = Some(value),
                        Err(e) => {
                            state.error.lock().get_or_insert(e);
                            state.cancelled.store(true, Ordering::SeqCst);
                            let _guard = state.finished_lock.lock();
                            state.finished.notify_all();
                        }
                    }
                }
                if state.done.fetch_add(1, Ordering::SeqCst) + 1 == count {
                    let _guard = state.finished_lock.lock();
                    state.finished.notify_all();
                }
            }
        });
        if let Err(e) = spawned {
            shared.cancelled.store(true, Ordering::SeqCst);
            return Err(PyRuntimeError::new_err(format!("minllm could not start a worker thread: {e}")));
        }
    }
    // Only the main thread sees Ctrl-C, so only it wakes up to look; other
    // threads (a parallel batch inside another's item) sleep until the end.
    let threading = py.import("threading")?;
    let on_main = threading.call_method0("current_thread")?.is(threading.call_method0("main_thread")?);
    loop {
        let all_done = py.detach(|| {
            let mut guard = shared.finished_lock.lock();
            let waiting = || shared.done.load(Ordering::SeqCst) < count && !shared.cancelled.load(Ordering::SeqCst);
            if on_main {
                if waiting() {
                    shared.finished.wait_for(&mut guard, Duration::from_millis(50));
                }
            } else {
                while waiting() {
                    shared.finished.wait(&mut guard);
                }
            }
            shared.done.load(Ordering::SeqCst) >= count
        });
        if let Err(interrupt) = py.check_signals() {
            shared.cancelled.store(true, Ordering::SeqCst);
            return Err(interrupt);
        }
        if let Some(e) = shared.error.lock().take() {
            shared.cancelled.store(true, Ordering::SeqCst);
            return Err(e);
        }
        if all_done {
            break;
        }
    }
    let results = std::mem::take(&mut *shared.results.lock());
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| PyRuntimeError::new_err("minllm: a batch item produced no result")))
        .collect()
}
