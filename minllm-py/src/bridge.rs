//! Python coroutines driven from Rust `async` code, and Rust `async` code run as a
//! Python coroutine.
//!
//! [`Coroutine`] is a Python coroutine object (it has `send`, `throw`, `close`
//! and `__await__`, so `asyncio.run` and `asyncio.gather` accept it) whose body
//! is a Rust future. Inside that future, [`await_py`] awaits any Python
//! awaitable: what the awaitable yields (asyncio futures) is passed up to the
//! event loop, and what the loop sends back is passed down, exactly as
//! `yield from` does. No Rust async runtime is involved: the event loop drives
//! everything by calling `send`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, ffi, intern};
use std::ffi::c_int;

type BoxFuture = Pin<Box<dyn Future<Output = PyResult<Py<PyAny>>> + Send>>;

/// How the event loop resumed the coroutine.
enum Resume {
    Send(Py<PyAny>),
    Throw(PyErr),
}

/// What passes between a [`Coroutine`] and the [`await_py`] it is suspended in.
#[derive(Default)]
struct Exchange {
    resume: Option<Resume>,
    yielded: Option<Py<PyAny>>,
}

thread_local! {
    /// One frame per coroutine being stepped on this thread (they nest when a
    /// coroutine awaits another one).
    static FRAMES: RefCell<Vec<Exchange>> = const { RefCell::new(Vec::new()) };
}

fn with_frame<R>(f: impl FnOnce(&mut Exchange) -> R) -> Option<R> {
    FRAMES.with(|frames| frames.borrow_mut().last_mut().map(f))
}

/// Awaits a Python awaitable from Rust async code running inside a [`Coroutine`].
pub(crate) fn await_py(awaitable: Py<PyAny>) -> AwaitPy {
    AwaitPy { awaitable: Some(awaitable), iter: None, handling: None }
}

/// Like [`await_py`], as inside `except exc:` (for fallbacks): the awaitable
/// sees `exc` as the exception being handled.
pub(crate) fn await_py_handling(awaitable: Py<PyAny>, exc: Py<PyAny>) -> AwaitPy {
    AwaitPy { awaitable: Some(awaitable), iter: None, handling: Some(exc) }
}

/// The future returned by [`await_py`].
pub(crate) struct AwaitPy {
    awaitable: Option<Py<PyAny>>,
    /// The awaitable's iterator, once started.
    iter: Option<Py<PyAny>>,
    handling: Option<Py<PyAny>>,
}

/// The iterator `await obj` steps: a native coroutine itself, a generator marked
/// by `@types.coroutine` itself, else what `type(obj).__await__` returns.
fn awaitable_iter<'py>(awaitable: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = awaitable.py();
    let types = awaitable_types(py)?;
    // `types`' classes rather than `PyCoro_CheckExact` and `PyGen_Check`, which
    // are not in the stable ABI the wheel is built for.
    if awaitable.get_type().is(types.coroutine.bind(py)) {
        return Ok(awaitable);
    }
    if awaitable.is_instance(types.generator.bind(py))?
        && let Ok(flags) = awaitable.getattr(intern!(py, "gi_code")).and_then(|c| c.getattr(intern!(py, "co_flags")))
        && flags.extract::<i64>().is_ok_and(|f| f & 0x100 != 0)
    {
        return Ok(awaitable); // CO_ITERABLE_COROUTINE
    }
    match awaitable.get_type().getattr(intern!(py, "__await__")) {
        Ok(method) => method.call1((&awaitable,)),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "object {} can't be used in 'await' expression",
            awaitable.get_type().name()?
        ))),
    }
}

/// `types.CoroutineType` and `types.GeneratorType`.
struct AwaitableTypes {
    coroutine: Py<PyAny>,
    generator: Py<PyAny>,
}

fn awaitable_types(py: Python<'_>) -> PyResult<&AwaitableTypes> {
    static TYPES: pyo3::sync::PyOnceLock<AwaitableTypes> = pyo3::sync::PyOnceLock::new();
    TYPES.get_or_try_init(py, || {
        let types = py.import(intern!(py, "types"))?;
        Ok(AwaitableTypes {
            coroutine: types.getattr(intern!(py, "CoroutineType"))?.unbind(),
            generator: types.getattr(intern!(py, "GeneratorType"))?.unbind(),
        })
    })
}

/// `PyIter_Send`: `int PyIter_Send(PyObject *iter, PyObject *arg, PyObject **presult)`.
type IterSend = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut *mut ffi::PyObject) -> c_int;

/// `PyIter_Send` where the interpreter has it (Python 3.10 on, in the stable
/// ABI), found at run time because the wheel also loads into 3.9, which lacks
/// it; `None` there (and where `MINLLM_PORTABLE_AWAIT` is set).
fn iter_send(py: Python<'_>) -> Option<IterSend> {
    static SEND: pyo3::sync::PyOnceLock<Option<usize>> = pyo3::sync::PyOnceLock::new();
    let address = *SEND.get_or_init(py, || {
        // The variable makes 3.10+ take 3.9's path, for the tests of that path.
        if py.version_info() < (3, 10) || std::env::var_os("MINLLM_PORTABLE_AWAIT").is_some() {
            return None;
        }
        let ctypes = py.import(intern!(py, "ctypes")).ok()?;
        let function = ctypes.getattr(intern!(py, "pythonapi")).ok()?.getattr(intern!(py, "PyIter_Send")).ok()?;
        let pointer = ctypes.getattr(intern!(py, "c_void_p")).ok()?;
        let cast = ctypes.getattr(intern!(py, "cast")).ok()?.call1((function, pointer)).ok()?;
        cast.getattr(intern!(py, "value")).ok()?.extract::<usize>().ok()
    });
    // SAFETY: `address` is where the running interpreter's `PyIter_Send` is,
    // as ctypes resolved it; its signature is fixed by the stable ABI.
    #[allow(unsafe_code)]
    address.map(|a| unsafe { std::mem::transmute::<usize, IterSend>(a) })
}

/// Sends `value` into a Python iterator: `Ok(Ok(yielded))` when it yields,
/// `Ok(Err(returned))` when it returns, `Err` when it raises. As `await` does:
/// `send(value)`, or `__next__()` for an iterator without `send` given `None`.
fn send(py: Python<'_>, iter: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Result<Py<PyAny>, Py<PyAny>>> {
    if let Some(iter_send) = iter_send(py) {
        let mut result: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `iter` and `value` are live objects and the GIL is held;
        // `PyIter_Send` writes a new (owned) reference to `result` when it
        // returns 0 (PYGEN_RETURN) or 1 (PYGEN_NEXT), and sets a Python error
        // when it returns -1 (PYGEN_ERROR).
        #[allow(unsafe_code)]
        let status = unsafe { iter_send(iter.as_ptr(), value.as_ptr(), &mut result) };
        return match status {
            // SAFETY: a new, non-null reference, as above.
            #[allow(unsafe_code)]
            1 => Ok(Ok(unsafe { Bound::from_owned_ptr(py, result) }.unbind())),
            // SAFETY: as above.
            #[allow(unsafe_code)]
            0 => Ok(Err(unsafe { Bound::from_owned_ptr(py, result) }.unbind())),
            _ => Err(PyErr::fetch(py)),
        };
    }
    let stepped = match iter.getattr(intern!(py, "send")) {
        Ok(send) => send.call1((value,)),
        Err(_) if value.is_none() => iter.call_method0(intern!(py, "__next__")),
        Err(e) => Err(e),
    };
    match stepped {
        Ok(yielded) => Ok(Ok(yielded.unbind())),
        Err(e) if e.is_instance_of::<PyStopIteration>(py) => {
            // The iterator returned: its value rides on the StopIteration.
            let returned = e.value(py).getattr(intern!(py, "value"))?;
            Ok(Err(returned.unbind()))
        }
        Err(e) => Err(e),
    }
}

impl AwaitPy {
    /// Steps the awaitable, as inside `except` when awaiting for a fallback.
    fn stepping<R>(&self, py: Python<'_>, step: impl FnOnce() -> R) -> R {
        match &self.handling {
            Some(exc) => crate::core::handling(exc.bind(py), step),
            None => step(),
        }
    }
}

impl Future for AwaitPy {
    type Output = PyResult<Py<PyAny>>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Python::attach(|py| {
            let outcome = match self.iter.as_ref() {
                None => {
                    // First poll: get the iterator and start it with `None`.
                    let Some(awaitable) = self.awaitable.take() else {
                        return Poll::Ready(Err(PyRuntimeError::new_err("minllm: a finished await was polled again")));
                    };
                    // `PyIter_Send` steps the iterator without raising StopIteration.
                    let iter = match awaitable_iter(awaitable.into_bound(py)) {
                        Ok(iter) => iter,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let outcome = self.stepping(py, || send(py, &iter, &py.None().into_bound(py)));
                    self.iter = Some(iter.unbind());
                    outcome
                }
                Some(iter) => {
                    let iter = iter.bind(py).clone();
                    match with_frame(|f| f.resume.take()).flatten() {
                        Some(Resume::Send(value)) => self.stepping(py, || send(py, &iter, value.bind(py))),
                        Some(Resume::Throw(err)) => {
                            let thrown =
                                self.stepping(py, || iter.call_method1(intern!(py, "throw"), (err.into_value(py),)));
                            match thrown {
                                Ok(yielded) => Ok(Ok(yielded.unbind())),
                                Err(e) if e.is_instance_of::<PyStopIteration>(py) => {
                                    e.value(py).getattr(intern!(py, "value")).map(|v| Err(v.unbind()))
                                }
                                Err(e) => Err(e),
                            }
                        }
                        None => self.stepping(py, || send(py, &iter, &py.None().into_bound(py))),
                    }
                }
            };
            match outcome {
                Ok(Ok(yielded)) => {
                    with_frame(|f| f.yielded = Some(yielded));
                    Poll::Pending
                }
                Ok(Err(returned)) => {
                    self.iter = None;
                    Poll::Ready(Ok(returned))
                }
                Err(e) => {
                    self.iter = None;
                    Poll::Ready(Err(e))
                }
            }
        })
    }
}

impl Drop for AwaitPy {
    fn drop(&mut self) {
        // Abandoned mid-await (the outer coroutine was closed): close the inner
        // one too, as `yield from` would.
        if let Some(iter) = self.iter.take() {
            Python::attach(|py| {
                let iter = iter.bind(py);
                if iter.hasattr(intern!(py, "close")).unwrap_or(false) {
                    let _ = iter.call_method0(intern!(py, "close"));
                }
            });
        }
    }
}

/// A Python coroutine whose body is a Rust future.
#[pyclass(module = "minllm._minllm", name = "Coroutine")]
pub(crate) struct Coroutine {
    future: parking_lot::Mutex<Option<BoxFuture>>,
    started: std::sync::atomic::AtomicBool,
    name: &'static str,
}

impl Coroutine {
    pub(crate) fn new(name: &'static str, future: impl Future<Output = PyResult<Py<PyAny>>> + Send + 'static) -> Self {
        Coroutine {
            future: parking_lot::Mutex::new(Some(Box::pin(future))),
            started: std::sync::atomic::AtomicBool::new(false),
            name,
        }
    }

    fn step(&self, py: Python<'_>, resume: Resume) -> PyResult<Py<PyAny>> {
        let Some(mut slot) = self.future.try_lock() else {
            return Err(pyo3::exceptions::PyValueError::new_err("coroutine already executing"));
        };
        let Some(future) = slot.as_mut() else {
            return Err(PyRuntimeError::new_err("cannot reuse already awaited coroutine"));
        };
        // Awaits nest natively (a flow whose `_run_async` is a user's awaits the
        // engine's, and so on): end with RecursionError before the stack runs
        // out, as a coroutine that raised.
        if let Err(e) = crate::depth::check_stack() {
            *slot = None;
            return Err(e);
        }
        if !self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            match &resume {
                // Thrown into before it ran: it ends with that exception, as a
                // Python coroutine does.
                Resume::Throw(_) => {
                    *slot = None;
                    let Resume::Throw(err) = resume else { unreachable!() };
                    return Err(err);
                }
                Resume::Send(value) if !value.is_none(py) => {
                    self.started.store(false, std::sync::atomic::Ordering::SeqCst);
                    return Err(pyo3::exceptions::PyTypeError::new_err(
                        "can't send non-None value to a just-started coroutine",
                    ));
                }
                Resume::Send(_) => {}
            }
        }
        FRAMES.with(|frames| frames.borrow_mut().push(Exchange { resume: Some(resume), yielded: None }));
        let mut cx = Context::from_waker(Waker::noop());
        let polled = future.as_mut().poll(&mut cx);
        let frame = FRAMES.with(|frames| frames.borrow_mut().pop()).unwrap_or_default();
        match polled {
            Poll::Pending => match frame.yielded {
                Some(yielded) => Ok(yielded),
                None => {
                    *slot = None;
                    Err(PyRuntimeError::new_err("minllm: a coroutine suspended without awaiting anything"))
                }
            },
            Poll::Ready(result) => {
                *slot = None;
                match result {
                    Ok(value) => Err(PyStopIteration::new_err((value,))),
                    Err(e) => {
                        // A StopIteration escaping a coroutine becomes a RuntimeError, as in Python.
                        if e.is_instance_of::<PyStopIteration>(py) {
                            let err = PyRuntimeError::new_err("coroutine raised StopIteration");
                            err.set_cause(py, Some(e));
                            return Err(err);
                        }
                        Err(e)
                    }
                }
            }
        }
    }
}

#[pymethods]
impl Coroutine {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py, Resume::Send(py.None()))
    }

    fn send(&self, py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.step(py, Resume::Send(value))
    }

    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = tb;
        let exc = match val {
            Some(v) if !v.is_none() => v,
            _ if typ.is_instance_of::<pyo3::types::PyType>() => typ.call0()?,
            _ => typ,
        };
        self.step(py, Resume::Throw(PyErr::from_value(exc)))
    }

    fn close(&self) -> PyResult<()> {
        // Dropping the future drops the inner awaits, which close their iterators.
        let Some(mut slot) = self.future.try_lock() else {
            return Err(pyo3::exceptions::PyValueError::new_err("coroutine already executing"));
        };
        let future = slot.take();
        drop(slot);
        drop(future);
        Ok(())
    }

    #[getter]
    fn __name__(&self) -> &'static str {
        self.name
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        self.name
    }

    fn __repr__(&self) -> String {
        format!("<minllm coroutine {}>", self.name)
    }

    fn __traverse__(&self, _visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The future's Python references cannot be enumerated; a coroutine is
        // short-lived and is dropped (or closed) when its task ends.
        Ok(())
    }
}
