//! `NodeCore`: the base of every Python node and flow class. It holds the
//! node's state (params, successors, retry policy, start node, limits) and the
//! orchestration of sync runs: retries and fallback, batches, flows, copies,
//! warnings and step counting. User hooks are always looked up as Python
//! attributes, so subclass methods and instance attributes win.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyAttributeError, PyException, PyRuntimeError, PyTypeError, PyUserWarning};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, intern};

pyo3::create_exception!(
    minllm,
    FlowError,
    PyRuntimeError,
    "A flow broke one of minllm's own rules, e.g. it ran past its `max_steps`."
);

/// The classes and objects of the Python package that the engine needs.
pub(crate) struct Registry {
    pub(crate) async_node: Py<PyType>,
    pub(crate) flow: Py<PyType>,
    pub(crate) cur_retry: Py<PyAny>,
    pub(crate) copy: Py<PyAny>,
    pub(crate) core_copy: Py<PyAny>,
    pub(crate) gather: Py<PyAny>,
    pub(crate) sleep: Py<PyAny>,
    /// `NodeCore._async_node_run` and `NodeCore._async_exec`: when a node's
    /// class uses these, the async engine runs them in place, without making a
    /// coroutine object for each.
    pub(crate) async_node_run: Py<PyAny>,
    pub(crate) async_exec: Py<PyAny>,
}

pub(crate) static REGISTRY: PyOnceLock<Registry> = PyOnceLock::new();

pub(crate) fn registry(py: Python<'_>) -> PyResult<&Registry> {
    REGISTRY
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("minllm is not initialised: import minllm, not minllm._minllm"))
}

/// Called once by `minllm/__init__.py` with the classes it defines.
#[pyfunction]
pub(crate) fn _register(py: Python<'_>, async_node: Py<PyType>, flow: Py<PyType>) -> PyResult<()> {
    let contextvars = py.import("contextvars")?;
    let cur_retry = contextvars.getattr("ContextVar")?.call1(("minllm_cur_retry",))?.unbind();
    let copy = py.import("copy")?.getattr("copy")?.unbind();
    let core = py.get_type::<NodeCore>();
    let core_copy = core.getattr("__copy__")?.unbind();
    let asyncio = py.import("asyncio")?;
    let registry = Registry {
        async_node,
        flow,
        cur_retry,
        copy,
        core_copy,
        gather: asyncio.getattr("gather")?.unbind(),
        sleep: asyncio.getattr("sleep")?.unbind(),
        async_node_run: core.getattr("_async_node_run")?.unbind(),
        async_exec: core.getattr("_async_exec")?.unbind(),
    };
    let _ = REGISTRY.set(py, registry);
    Ok(())
}

/// The base class of every node and flow.
#[pyclass(subclass, module = "minllm._minllm", name = "NodeCore")]
pub(crate) struct NodeCore {
    params: Py<PyAny>,
    successors: Py<PyAny>,
    max_retries: Option<Py<PyAny>>,
    wait: Option<Py<PyAny>>,
    start_node: Option<Py<PyAny>>,
    max_steps: Option<Py<PyAny>>,
    max_workers: Option<Py<PyAny>>,
    cur_retry: Option<Py<PyAny>>,
}

/// Reads an attribute that only some classes set (as the original's `__init__`s
/// do), raising the `AttributeError` Python would raise when it is not set.
fn get(slf: &Bound<'_, NodeCore>, field: impl Fn(&NodeCore) -> &Option<Py<PyAny>>, name: &str) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    if let Some(value) = field(&slf.borrow()) {
        return Ok(value.clone_ref(py));
    }
    let class = slf.get_type().name().map_or_else(|_| "node".to_owned(), |n| n.to_string());
    Err(PyAttributeError::new_err(format!("'{class}' object has no attribute '{name}'")))
}

/// Warns with a `UserWarning`, as `warnings.warn(message)` does.
pub(crate) fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    let message = std::ffi::CString::new(message).unwrap_or_else(|_| c"minllm warning".to_owned());
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)
}

/// Python truthiness.
pub(crate) fn truthy(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.is_truthy()
}

/// A shallow copy, as `copy.copy` makes it, without calling `__init__`; fast for
/// our own classes (unless they define `__copy__` themselves).
pub(crate) fn copy_node<'py>(py: Python<'py>, node: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let reg = registry(py)?;
    if let Ok(core) = node.cast::<NodeCore>() {
        let ty = node.get_type();
        let own_copy = ty.getattr(intern!(py, "__copy__")).map(|c| c.is(reg.core_copy.bind(py))).unwrap_or(false);
        if own_copy {
            return NodeCore::copy_of(core);
        }
    }
    reg.copy.bind(py).call1((node,))
}

/// A new, uninitialised instance of `ty` (a subclass of `NodeCore`), made as
/// `ty.__new__(ty)` would make it, without calling `__init__`.
fn new_instance<'py>(ty: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let py = ty.py();
    let args = PyTuple::empty(py);
    // SAFETY: the GIL is held; `ty` is a live type object whose `tp_new` slot is
    // set (it is NodeCore's, or a Python subclass's); the slot receives valid
    // `args` and a null `kwds`, and returns a new reference or null with an
    // error set, which `from_owned_ptr_or_err` turns into a `PyErr`.
    #[allow(unsafe_code)]
    unsafe {
        let tp = ty.as_type_ptr();
        let Some(tp_new) = (*tp).tp_new else {
            return Err(PyTypeError::new_err("cannot copy: the node's type has no __new__"));
        };
        Bound::from_owned_ptr_or_err(py, tp_new(tp, args.as_ptr(), std::ptr::null_mut()))
    }
}

/// Sleeps `seconds` with the GIL released, checking for Ctrl-C as it goes.
pub(crate) fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    if seconds.is_nan() || seconds <= 0.0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        py.detach(|| std::thread::sleep(left.min(Duration::from_millis(50))));
        py.check_signals()?;
    }
}

impl NodeCore {
    fn empty(py: Python<'_>) -> Self {
        NodeCore {
            params: PyDict::new(py).into_any().unbind(),
            successors: PyDict::new(py).into_any().unbind(),
            max_retries: None,
            wait: None,
            start_node: None,
            max_steps: None,
            max_workers: None,
            cur_retry: None,
        }
    }

    fn copy_of<'py>(node: &Bound<'py, NodeCore>) -> PyResult<Bound<'py, PyAny>> {
        let py = node.py();
        let new = new_instance(&node.get_type())?;
        {
            let src = node.borrow();
            let mut dst = new.cast::<NodeCore>()?.borrow_mut();
            let dup = |f: &Option<Py<PyAny>>| f.as_ref().map(|v| v.clone_ref(py));
            dst.params = src.params.clone_ref(py);
            dst.successors = src.successors.clone_ref(py);
            dst.max_retries = dup(&src.max_retries);
            dst.wait = dup(&src.wait);
            dst.start_node = dup(&src.start_node);
            dst.max_steps = dup(&src.max_steps);
            dst.max_workers = dup(&src.max_workers);
            dst.cur_retry = dup(&src.cur_retry);
        }
        if let Ok(dict) = node.getattr(intern!(py, "__dict__"))
            && let Ok(dict) = dict.cast::<PyDict>()
            && !dict.is_empty()
        {
            new.setattr(intern!(py, "__dict__"), dict.copy()?)?;
        }
        Ok(new)
    }

    /// `successors` of any node (ours, or an object that quacks like one).
    pub(crate) fn successors_of<'py>(node: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match node.cast::<NodeCore>() {
            Ok(core) => Ok(core.borrow().successors.bind(node.py()).clone()),
            Err(_) => node.getattr(intern!(node.py(), "successors")),
        }
    }

    pub(crate) fn retry_policy_of(slf: &Bound<'_, NodeCore>) -> PyResult<(i64, f64)> {
        let py = slf.py();
        let (max_retries, wait) = {
            let this = slf.borrow();
            (this.max_retries.as_ref().map(|v| v.clone_ref(py)), this.wait.as_ref().map(|v| v.clone_ref(py)))
        };
        let max_retries = match max_retries {
            Some(v) => v.bind(py).extract::<i64>()?,
            None => slf.getattr(intern!(py, "max_retries"))?.extract::<i64>()?,
        };
        let wait = match wait {
            Some(v) => v.bind(py).extract::<f64>()?,
            None => 0.0,
        };
        Ok((max_retries, wait))
    }

    /// Notes the current attempt: on the node (as the original does) and, for
    /// items that run at the same time, in a context variable that `cur_retry`
    /// reads first, so each item sees its own count.
    pub(crate) fn set_attempt(slf: &Bound<'_, NodeCore>, attempt: i64, concurrent: bool) -> PyResult<()> {
        let py = slf.py();
        slf.borrow_mut().cur_retry = Some(attempt.into_pyobject(py)?.into_any().unbind());
        if concurrent {
            let key = (slf.as_ptr() as usize, attempt);
            registry(py)?.cur_retry.bind(py).call_method1(intern!(py, "set"), (key,))?;
        }
        Ok(())
    }

    /// `Node._exec`: up to `max_retries` attempts of `exec`, waiting `wait`
    /// seconds between them, then `exec_fallback` with the last exception.
    pub(crate) fn exec_with_retries(
        slf: &Bound<'_, NodeCore>,
        prep_res: &Bound<'_, PyAny>,
        concurrent: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (max_retries, wait) = Self::retry_policy_of(slf)?;
        for attempt in 0..max_retries {
            Self::set_attempt(slf, attempt, concurrent)?;
            match slf.call_method1(intern!(py, "exec"), (prep_res,)) {
                Ok(value) => return Ok(value.unbind()),
                Err(e) if e.is_instance_of::<PyException>(py) => {
                    if attempt == max_retries - 1 {
                        return slf
                            .call_method1(intern!(py, "exec_fallback"), (prep_res, e.into_value(py)))
                            .map(Bound::unbind);
                    }
                    sleep(py, wait)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(py.None())
    }

    fn items<'py>(value: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        if !truthy(value)? {
            return Ok(Vec::new());
        }
        value.try_iter()?.collect()
    }

    /// Follows the action from `curr`, as `Flow.get_next_node` does.
    pub(crate) fn next_node<'py>(
        py: Python<'py>,
        curr: &Bound<'py, PyAny>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let successors = Self::successors_of(curr)?;
        let key = if truthy(action)? { action.clone() } else { intern!(py, "default").clone().into_any() };
        let next = match successors.cast::<PyDict>() {
            Ok(dict) => dict.get_item(&key)?,
            Err(_) => {
                let got = successors.call_method1(intern!(py, "get"), (&key,))?;
                (!got.is_none()).then_some(got)
            }
        };
        let next = match next {
            Some(n) if truthy(&n)? => Some(n),
            _ => None,
        };
        if next.is_none() && truthy(&successors)? {
            let keys = PyList::new(py, successors.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
            warn(py, &format!("Flow ends: '{}' not found in {}", action.str()?, keys.repr()?))?;
        }
        Ok(next)
    }

    /// The params a flow pass starts with: the given ones when truthy, else a
    /// copy of the flow's own.
    pub(crate) fn pass_params<'py>(
        slf: &Bound<'py, NodeCore>,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if let Some(p) = params
            && truthy(p)?
        {
            return Ok(p.clone());
        }
        let own = slf.borrow().params.bind(py).clone();
        let copy = PyDict::new(py);
        copy.update(own.cast::<pyo3::types::PyMapping>().map_err(|_| {
            PyTypeError::new_err(format!(
                "'{}' object is not a mapping",
                own.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?)?;
        Ok(copy.into_any())
    }

    /// `{**flow.params, **item}`.
    pub(crate) fn merged<'py>(slf: &Bound<'py, NodeCore>, item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let merged = PyDict::new(py);
        let own = slf.borrow().params.bind(py).clone();
        merged.update(own.cast::<pyo3::types::PyMapping>()?)?;
        match item.cast::<pyo3::types::PyMapping>() {
            Ok(m) => merged.update(m)?,
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "batch params must be mappings, got '{}'",
                    item.get_type().name()?
                )));
            }
        }
        Ok(merged.into_any())
    }

    /// The step limit of a flow, if set.
    pub(crate) fn step_limit(slf: &Bound<'_, NodeCore>) -> PyResult<Option<u64>> {
        let py = slf.py();
        let limit = slf.borrow().max_steps.as_ref().map(|v| v.clone_ref(py));
        match limit {
            Some(v) if !v.is_none(py) => Ok(Some(v.bind(py).extract::<u64>()?)),
            _ => Ok(None),
        }
    }

    /// Sets `params` on a node copy as the flow does (`curr.set_params(p)`).
    pub(crate) fn give_params(node: &Bound<'_, PyAny>, params: &Bound<'_, PyAny>) -> PyResult<()> {
        node.call_method1(intern!(node.py(), "set_params"), (params,)).map(drop)
    }
}

/// Counts a flow's steps and remembers the last few node classes, for the
/// step-limit error.
pub(crate) struct StepCounter {
    limit: Option<u64>,
    taken: u64,
    recent: Vec<String>,
    flow: String,
}

impl StepCounter {
    pub(crate) fn new(flow: &Bound<'_, NodeCore>) -> PyResult<Self> {
        let name = flow.get_type().name()?.to_string();
        Ok(StepCounter { limit: NodeCore::step_limit(flow)?, taken: 0, recent: Vec::new(), flow: name })
    }

    /// Counts a step into `node`; a `FlowError` past the limit; raises
    /// `KeyboardInterrupt` when Ctrl-C was pressed.
    pub(crate) fn enter(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        node.py().check_signals()?;
        let Some(limit) = self.limit else { return Ok(()) };
        let name = node.get_type().name()?.to_string();
        if self.taken >= limit {
            self.recent.push(name);
            let prefix = if self.taken > 8 { "... -> " } else { "" };
            return Err(FlowError::new_err(format!(
                "flow {} exceeded its step limit of {limit} steps (max_steps); last steps: {prefix}{}",
                self.flow,
                self.recent.join(" -> ")
            )));
        }
        if self.recent.len() == 8 {
            self.recent.remove(0);
        }
        self.recent.push(name);
        self.taken += 1;
        Ok(())
    }
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
    for _ in 0..workers {
        let (state, work) = (Arc::clone(&shared), Arc::clone(&work));
        let spawned = std::thread::Builder::new().name("minllm-worker".into()).spawn(move || {
            loop {
                let i = state.next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                if !state.cancelled.load(Ordering::SeqCst) {
                    let outcome = Python::attach(|py| work(py, i));
                    match outcome {
                        Ok(value) => state.results.lock()[i] = Some(value),
                        Err(e) => {
                            state.error.lock().get_or_insert(e);
                            state.cancelled.store(true, Ordering::SeqCst);
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
    loop {
        let all_done = py.detach(|| {
            let mut guard = shared.finished_lock.lock();
            if shared.done.load(Ordering::SeqCst) < count {
                shared.finished.wait_for(&mut guard, Duration::from_millis(50));
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

/// How many threads a parallel batch uses: `max_workers`, else one per item up to 32.
fn workers_of(slf: &Bound<'_, NodeCore>, count: usize) -> PyResult<usize> {
    let py = slf.py();
    let max = slf.borrow().max_workers.as_ref().map(|v| v.clone_ref(py));
    match max {
        Some(v) if !v.is_none(py) => {
            let n = v.bind(py).extract::<i64>()?;
            if n < 1 {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "max_workers must be at least 1, not {n}"
                )));
            }
            Ok(n as usize)
        }
        _ => Ok(count.clamp(1, 32)),
    }
}

#[pymethods]
impl NodeCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(py: Python<'_>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        NodeCore::empty(py)
    }

    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(&self, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

    // ---- state, as attributes ----

    #[getter]
    fn params(&self, py: Python<'_>) -> Py<PyAny> {
        self.params.clone_ref(py)
    }
    #[setter(params)]
    fn set_params_attr(&mut self, value: Py<PyAny>) {
        self.params = value;
    }
    #[getter]
    fn successors(&self, py: Python<'_>) -> Py<PyAny> {
        self.successors.clone_ref(py)
    }
    #[setter]
    fn set_successors(&mut self, value: Py<PyAny>) {
        self.successors = value;
    }
    #[getter]
    fn max_retries(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        get(slf, |n| &n.max_retries, "max_retries")
    }
    #[setter]
    fn set_max_retries(&mut self, value: Py<PyAny>) {
        self.max_retries = Some(value);
    }
    #[getter]
    fn wait(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        get(slf, |n| &n.wait, "wait")
    }
    #[setter]
    fn set_wait(&mut self, value: Py<PyAny>) {
        self.wait = Some(value);
    }
    #[getter]
    fn start_node(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        get(slf, |n| &n.start_node, "start_node")
    }
    #[setter]
    fn set_start_node(&mut self, value: Py<PyAny>) {
        self.start_node = Some(value);
    }
    #[getter]
    fn max_steps(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        get(slf, |n| &n.max_steps, "max_steps")
    }
    #[setter]
    fn set_max_steps(&mut self, value: Py<PyAny>) {
        self.max_steps = Some(value);
    }
    #[getter]
    fn max_workers(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        get(slf, |n| &n.max_workers, "max_workers")
    }
    #[setter]
    fn set_max_workers(&mut self, value: Py<PyAny>) {
        self.max_workers = Some(value);
    }

    /// The attempt `exec` is on (0 for the first), for this item even when
    /// items run at the same time.
    #[getter]
    fn cur_retry(slf: &Bound<'_, NodeCore>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(reg) = REGISTRY.get(py) {
            let current = reg.cur_retry.bind(py).call_method1(intern!(py, "get"), (py.None(),))?;
            if let Ok((node, attempt)) = current.extract::<(usize, i64)>()
                && node == slf.as_ptr() as usize
            {
                return Ok(attempt.into_pyobject(py)?.into_any().unbind());
            }
        }
        get(slf, |n| &n.cur_retry, "cur_retry")
    }
    #[setter]
    fn set_cur_retry(&mut self, value: Py<PyAny>) {
        self.cur_retry = Some(value);
    }

    fn __copy__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        NodeCore::copy_of(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.params)?;
        visit.call(&self.successors)?;
        for field in
            [&self.max_retries, &self.wait, &self.start_node, &self.max_steps, &self.max_workers, &self.cur_retry]
        {
            visit.call(field)?;
        }
        Ok(())
    }

    fn __clear__(&mut self, py: Python<'_>) {
        self.params = py.None();
        self.successors = py.None();
        self.start_node = None;
        self.max_retries = None;
        self.wait = None;
        self.max_steps = None;
        self.max_workers = None;
        self.cur_retry = None;
    }

    // ---- BaseNode ----

    fn set_params(&mut self, params: Py<PyAny>) {
        self.params = params;
    }

    #[pyo3(signature = (node, action = None))]
    fn next<'py>(
        slf: &Bound<'py, Self>,
        node: Bound<'py, PyAny>,
        action: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let action = action.unwrap_or_else(|| intern!(py, "default").clone().into_any());
        let successors = NodeCore::successors_of(slf.as_any())?;
        if successors.contains(&action)? {
            warn(py, &format!("Overwriting successor for action '{}'", action.str()?))?;
        }
        successors.set_item(&action, &node)?;
        Ok(node)
    }

    #[allow(unused_variables)]
    fn prep(&self, py: Python<'_>, shared: Py<PyAny>) -> Py<PyAny> {
        py.None()
    }

    #[allow(unused_variables)]
    fn exec(&self, py: Python<'_>, prep_res: Py<PyAny>) -> Py<PyAny> {
        py.None()
    }

    #[allow(unused_variables)]
    fn post(&self, py: Python<'_>, shared: Py<PyAny>, prep_res: Py<PyAny>, exec_res: Py<PyAny>) -> Py<PyAny> {
        py.None()
    }

    fn _exec<'py>(slf: &Bound<'py, Self>, prep_res: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method1(intern!(slf.py(), "exec"), (prep_res,))
    }

    fn _run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let p = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let e = slf.call_method1(intern!(py, "_exec"), (&p,))?;
        slf.call_method1(intern!(py, "post"), (&shared, &p, &e))
    }

    fn run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if truthy(&NodeCore::successors_of(slf.as_any())?)? {
            warn(py, "Node won't run successors. Use Flow.")?;
        }
        slf.call_method1(intern!(py, "_run"), (shared,))
    }

    fn __rshift__<'py>(slf: &Bound<'py, Self>, other: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method1(intern!(slf.py(), "next"), (other,))
    }

    fn __sub__(slf: &Bound<'_, Self>, action: &Bound<'_, PyAny>) -> PyResult<crate::transition::ConditionalTransition> {
        if action.is_instance_of::<PyString>() {
            Ok(crate::transition::ConditionalTransition::new(slf.clone().into_any().unbind(), action.clone().unbind()))
        } else {
            Err(PyTypeError::new_err("Action must be a string"))
        }
    }

    // ---- Node, BatchNode, ParallelBatchNode ----

    fn _node_exec(slf: &Bound<'_, Self>, prep_res: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        NodeCore::exec_with_retries(slf, &prep_res, false)
    }

    fn _batch_exec<'py>(slf: &Bound<'py, Self>, items: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let mut results = Vec::new();
        for item in NodeCore::items(&items)? {
            results.push(NodeCore::exec_with_retries(slf, &item, false)?);
        }
        PyList::new(py, results)
    }

    fn _parallel_batch_exec<'py>(slf: &Bound<'py, Self>, items: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let items: Vec<Py<PyAny>> = NodeCore::items(&items)?.into_iter().map(Bound::unbind).collect();
        let workers = workers_of(slf, items.len())?;
        let node: Py<NodeCore> = slf.clone().unbind();
        let count = items.len();
        let results = run_on_threads(py, count, workers, move |py, i| {
            NodeCore::exec_with_retries(node.bind(py), items[i].bind(py), true)
        })?;
        PyList::new(py, results)
    }

    // ---- Flow, BatchFlow, ParallelBatchFlow ----

    fn _flow_start<'py>(&mut self, start: Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        self.start_node = Some(start.clone().unbind());
        start
    }

    fn _flow_get_next_node<'py>(
        slf: &Bound<'py, Self>,
        curr: Bound<'py, PyAny>,
        action: Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        NodeCore::next_node(slf.py(), &curr, &action)
    }

    #[pyo3(signature = (shared, params = None))]
    fn _flow_orch<'py>(
        slf: &Bound<'py, Self>,
        shared: Bound<'py, PyAny>,
        params: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let start = slf.borrow().start_node.as_ref().map(|s| s.clone_ref(py));
        let p = NodeCore::pass_params(slf, params.as_ref())?;
        let mut last_action = py.None().into_bound(py);
        let Some(start) = start.map(|s| s.into_bound(py)).filter(|s| !s.is_none()) else {
            return Ok(last_action);
        };
        let mut steps = StepCounter::new(slf)?;
        let mut curr = Some(copy_node(py, &start)?);
        while let Some(node) = curr.take() {
            if !truthy(&node)? {
                break;
            }
            steps.enter(&node)?;
            NodeCore::give_params(&node, &p)?;
            last_action = node.call_method1(intern!(py, "_run"), (&shared,))?;
            curr = match NodeCore::next_node(py, &node, &last_action)? {
                Some(next) => Some(copy_node(py, &next)?),
                None => None,
            };
        }
        Ok(last_action)
    }

    fn _flow_run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let p = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let o = slf.call_method1(intern!(py, "_orch"), (&shared,))?;
        slf.call_method1(intern!(py, "post"), (&shared, &p, &o))
    }

    #[allow(unused_variables)]
    fn _flow_post(&self, shared: Py<PyAny>, prep_res: Py<PyAny>, exec_res: Py<PyAny>) -> Py<PyAny> {
        exec_res
    }

    fn _batch_flow_run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let pr = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let pr = if truthy(&pr)? { pr } else { PyList::empty(py).into_any() };
        for bp in pr.try_iter()? {
            let merged = NodeCore::merged(slf, &bp?)?;
            slf.call_method1(intern!(py, "_orch"), (&shared, merged))?;
        }
        slf.call_method1(intern!(py, "post"), (&shared, &pr, py.None()))
    }

    fn _parallel_batch_flow_run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let pr = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let pr = if truthy(&pr)? { pr } else { PyList::empty(py).into_any() };
        let merged: Vec<Py<PyAny>> =
            pr.try_iter()?.map(|bp| NodeCore::merged(slf, &bp?).map(Bound::unbind)).collect::<PyResult<_>>()?;
        let workers = workers_of(slf, merged.len())?;
        let (flow, store) = (slf.clone().unbind(), shared.clone().unbind());
        run_on_threads(py, merged.len(), workers, move |py, i| {
            flow.bind(py).call_method1(intern!(py, "_orch"), (store.bind(py), merged[i].bind(py))).map(Bound::unbind)
        })?;
        slf.call_method1(intern!(py, "post"), (&shared, &pr, py.None()))
    }

    // ---- beyond the original: validation and diagrams ----

    fn _validate(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
        let graph = crate::graph::graph_of(slf.as_any())?;
        Ok(graph.validate().iter().map(ToString::to_string).collect())
    }

    fn _to_mermaid(slf: &Bound<'_, Self>) -> PyResult<String> {
        Ok(crate::graph::graph_of(slf.as_any())?.to_mermaid())
    }

    // ---- async ----

    fn _async_exec(slf: &Bound<'_, Self>, prep_res: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::node_exec(slf.clone().unbind(), prep_res)
    }

    fn _async_node_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::node_run(slf.clone().unbind(), shared)
    }

    fn _async_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::run_async(slf.clone().into_any().unbind(), shared)
    }

    #[allow(unused_variables)]
    fn _async_run_sync_refused(&self, shared: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyRuntimeError::new_err("Use run_async."))
    }

    fn _async_batch_exec(slf: &Bound<'_, Self>, items: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::batch_exec(slf.clone().unbind(), items, false)
    }

    fn _async_parallel_batch_exec(slf: &Bound<'_, Self>, items: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::batch_exec(slf.clone().unbind(), items, true)
    }

    #[pyo3(signature = (shared, params = None))]
    fn _async_flow_orch(
        slf: &Bound<'_, Self>,
        shared: Py<PyAny>,
        params: Option<Py<PyAny>>,
    ) -> crate::bridge::Coroutine {
        crate::asyncs::flow_orch(slf.clone().unbind(), shared, params)
    }

    fn _async_flow_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::flow_run(slf.clone().unbind(), shared)
    }

    #[allow(unused_variables)]
    fn _async_flow_post(
        &self,
        shared: Py<PyAny>,
        prep_res: Py<PyAny>,
        exec_res: Py<PyAny>,
    ) -> crate::bridge::Coroutine {
        crate::bridge::Coroutine::new("post_async", async move { Ok(exec_res) })
    }

    fn _async_batch_flow_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::batch_flow_run(slf.clone().unbind(), shared, false)
    }

    fn _async_parallel_batch_flow_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::batch_flow_run(slf.clone().unbind(), shared, true)
    }
}

/// Whether `node`'s class takes `name` from `builtin` (so the engine may run
/// the Rust implementation directly).
pub(crate) fn uses(node: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, builtin: &Py<PyAny>) -> bool {
    node.get_type().getattr(name).is_ok_and(|m| m.is(builtin.bind(node.py())))
}

/// Whether `node` is an `AsyncNode` (async flows await those, and run the others).
pub(crate) fn is_async_node(py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<bool> {
    node.is_instance(registry(py)?.async_node.bind(py))
}

/// Whether `node` is a `Flow` (for diagrams and validation).
pub(crate) fn is_flow(py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<bool> {
    node.is_instance(registry(py)?.flow.bind(py))
}
