//! How deep flows may nest: never deep enough to exhaust the thread's stack.
//!
//! The engine runs a nested flow whose `_run` and `_orch` are its own in place,
//! on an explicit stack of levels, so nesting costs no native stack. The
//! original costs two Python frames per level (`_run` and `_orch`), so levels
//! count against `sys.getrecursionlimit()` as those frames would: a depth the
//! original runs under a given limit runs here too, and a deeper one raises
//! `RecursionError`, as there. Where nesting does recurse natively (a user's
//! override of those methods calls back into the engine), [`check_stack`]
//! raises `RecursionError` before the thread's stack runs out.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pyo3::exceptions::PyRecursionError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;

/// Python frames a nested flow takes in the original: `_run` and `_orch`.
const FRAMES_PER_LEVEL: usize = 2;
/// Frames the original adds on top of its nested levels: the outermost flow's
/// `run`, `_run` and `_orch`, the innermost node's `_run`, `_exec` and `exec`,
/// and `copy.copy`'s.
const FRAMES_AROUND: usize = 9;

thread_local! {
    /// Nested flows run in place by the runs on this thread's native stack.
    static OPEN: Cell<usize> = const { Cell::new(0) };
}

/// Raises `RecursionError` where the original, with `open` nested flows on
/// the stack, would have run out of frames.
fn check_levels(py: Python<'_>, open: usize) -> PyResult<()> {
    // SAFETY: reads the interpreter's recursion limit, with the GIL held.
    #[allow(unsafe_code)]
    let limit = usize::try_from(unsafe { ffi::Py_GetRecursionLimit() }).unwrap_or(0);
    let room = limit.saturating_sub(FRAMES_PER_LEVEL * open + FRAMES_AROUND);
    if FRAMES_PER_LEVEL * open + FRAMES_AROUND > limit || python_frames(py, room) > room {
        return Err(PyRecursionError::new_err(format!(
            "maximum recursion depth exceeded while running a flow nested {open} flows deep \
             (sys.getrecursionlimit() is {limit})"
        )));
    }
    Ok(())
}

/// The nested flows a sync run holds open in place; they count while the run
/// is on the stack.
#[derive(Default)]
pub(crate) struct Levels {
    held: usize,
}

impl Levels {
    /// Opens one more level, or raises `RecursionError`.
    pub(crate) fn enter(&mut self, py: Python<'_>) -> PyResult<()> {
        let open = OPEN.get() + 1;
        check_levels(py, open)?;
        OPEN.set(open);
        self.held += 1;
        Ok(())
    }

    /// Closes the innermost level.
    pub(crate) fn leave(&mut self) {
        if self.held > 0 {
            self.held -= 1;
            OPEN.set(OPEN.get().saturating_sub(1));
        }
    }
}

impl Drop for Levels {
    fn drop(&mut self) {
        OPEN.set(OPEN.get().saturating_sub(self.held));
    }
}

/// The nested flows an async run holds open in place. They count only while
/// the run is being polled (see [`AsyncLevels::holding`]): between polls the
/// run is off the stack, and other tasks run on the thread.
#[derive(Clone, Default)]
pub(crate) struct AsyncLevels {
    held: Arc<AtomicUsize>,
}

impl AsyncLevels {
    /// Opens one more level, or raises `RecursionError`. Called while the run
    /// is being polled, inside [`AsyncLevels::holding`].
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<()> {
        let open = OPEN.get() + 1;
        check_levels(py, open)?;
        OPEN.set(open);
        self.held.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the innermost level.
    pub(crate) fn leave(&self) {
        if self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            OPEN.set(OPEN.get().saturating_sub(1));
        }
    }

    /// `future`, counting this run's levels as open on the thread while it is polled.
    pub(crate) fn holding<F: Future>(&self, future: F) -> Holding<F> {
        Holding { held: Arc::clone(&self.held), future: Box::pin(future) }
    }
}

/// The future of [`AsyncLevels::holding`].
pub(crate) struct Holding<F> {
    held: Arc<AtomicUsize>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Holding<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        OPEN.set(OPEN.get() + self.held.load(Ordering::Relaxed));
        let polled = self.future.as_mut().poll(cx);
        // Levels opened or closed during the poll moved `OPEN` with `held`.
        OPEN.set(OPEN.get().saturating_sub(self.held.load(Ordering::Relaxed)));
        polled
    }
}

/// How many Python frames are on this thread's stack now (counted up to
/// `cap`: the caller only needs to know whether there are more).
fn python_frames(py: Python<'_>, cap: usize) -> usize {
    // SAFETY: the GIL is held. `PyEval_GetFrame` returns a borrowed reference
    // (or null), kept alive by the running code.
    #[allow(unsafe_code)]
    let current = unsafe { ffi::PyEval_GetFrame() };
    if current.is_null() {
        return 0;
    }
    // SAFETY: as above; the `Bound` takes its own reference.
    #[allow(unsafe_code)]
    let mut frame = unsafe { Bound::from_borrowed_ptr(py, current.cast::<ffi::PyObject>()) };
    let mut count = 1;
    // `f_back` rather than `PyFrame_GetBack`, which is not in the stable ABI
    // of Python 3.9 (the wheel is built for it).
    while count <= cap {
        match frame.getattr(intern!(py, "f_back")) {
            Ok(back) if !back.is_none() => frame = back,
            _ => break,
        }
        count += 1;
    }
    count
}

/// What the engine keeps free of a thread's stack when it recurses natively:
/// room for the Python code of one level and for raising the error.
const RESERVE: usize = 256 * 1024;

/// Raises `RecursionError` when the thread's stack is nearly used up, so that
/// native recursion through the engine ends with an exception, not a crash.
pub(crate) fn check_stack() -> PyResult<()> {
    match stacker::remaining_stack() {
        Some(left) if left < RESERVE => Err(PyRecursionError::new_err(format!(
            "maximum recursion depth exceeded: {} KiB of this thread's stack left, too little to go deeper",
            left / 1024
        ))),
        _ => Ok(()),
    }
}
