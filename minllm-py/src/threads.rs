//! Parallel batches: items run on worker threads that take the GIL only while
//! they call Python, so blocking calls overlap. How items spread (the order,
//! the first error, cancellation) is the runtime's [`Spread`].

use std::sync::Arc;
use std::time::Duration;

use minllm::__private::Spread;
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
/// The items spread as the runtime's parallel batches spread theirs
/// ([`Spread`]: the first error wins, keeping its Python type, and no item
/// starts after it); here the threads are not scoped, so that Ctrl-C stops the
/// wait at once while items already running finish on their own.
pub(crate) fn run_on_threads(
    py: Python<'_>,
    count: usize,
    workers: usize,
    work: impl Fn(Python<'_>, usize) -> PyResult<Py<PyAny>> + Send + Sync + 'static,
) -> PyResult<Vec<Py<PyAny>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let spread: Arc<Spread<'static, Py<PyAny>, PyErr>> = Arc::new(Spread::new(count));
    let work = Arc::new(work);
    let workers = workers.clamp(1, count);
    let stack_size = stack_size(py)?;
    for _ in 0..workers {
        let (items, work) = (Arc::clone(&spread), Arc::clone(&work));
        let builder = std::thread::Builder::new().name("minllm-worker".into()).stack_size(stack_size);
        let spawned = builder.spawn(move || {
            crate::core::ON_WORKER.with(|w| w.set(true));
            items.work(|i, _| Python::attach(|py| work(py, i)));
        });
        if let Err(e) = spawned {
            spread.cancel();
            return Err(PyRuntimeError::new_err(format!("minllm could not start a worker thread: {e}")));
        }
    }
    // Only the main thread sees Ctrl-C, so only it wakes up to look; other
    // threads (a parallel batch inside another's item) sleep until the end.
    let threading = py.import("threading")?;
    let on_main = threading.call_method0("current_thread")?.is(threading.call_method0("main_thread")?);
    let slice = on_main.then_some(Duration::from_millis(50));
    loop {
        let settled = py.detach(|| spread.wait(slice));
        if let Err(interrupt) = py.check_signals() {
            spread.cancel();
            return Err(interrupt);
        }
        if let Some(e) = spread.take_error() {
            return Err(e);
        }
        if settled {
            break;
        }
    }
    spread.finish().map_err(|e| e.unwrap_or_else(|| PyRuntimeError::new_err("minllm: a batch item produced no result")))
}

/// `_on_threads(owner, count, work)`: `[work(0), ..., work(count - 1)]`, on
/// the worker threads of `owner`'s parallel batch (its `max_workers`, else one
/// per item up to the default), as the batch itself runs its items. The
/// driver of durable runs calls it for parallel batches it runs item by item.
#[pyfunction]
pub(crate) fn _on_threads(
    py: Python<'_>,
    owner: &Bound<'_, PyAny>,
    count: usize,
    work: Py<PyAny>,
) -> PyResult<Vec<Py<PyAny>>> {
    let workers = crate::core::workers_of(owner, count)?;
    run_on_threads(py, count, workers, move |py, i| Ok(work.bind(py).call1((i,))?.unbind()))
}
