//! `NodeCore`: the base of every Python node and flow class, and the engine of
//! sync runs: batches, flows, warnings and step counting; retries and the
//! fallback are in [`retries`](crate::retries), node copies and run plans in
//! [`copies`](crate::copies).
//!
//! A node's state (`params`, `successors`, `max_retries`, `wait`, `start_node`,
//! ...) lives in its instance `__dict__`, as in the original, so `vars()`,
//! `copy`, `pickle`, properties and `__setattr__` all behave as users expect.
//! The engine reads it, and calls the user's hooks, through normal Python
//! attribute lookup: subclass methods and instance attributes win.

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyUserWarning, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

pub(crate) use crate::copies::{Nested, Plan, Planner, dict_of, give_params, plain_setattr};
use crate::depth::check_stack;
pub(crate) use crate::retries::{
    ON_WORKER, attempts_of, exec_with_retries, handling, is_last_attempt, reset_attempt, set_attempt, wait_of,
};
use crate::settings::MAX_WORKERS;
use crate::threads::run_on_threads;

pyo3::create_exception!(
    minllm,
    FlowError,
    PyRuntimeError,
    "A flow broke one of minllm's own rules, e.g. it ran past its `max_steps`."
);

/// The classes, helpers and built-in methods of the Python package that the
/// engine needs; set once by `minllm/__init__.py`.
pub(crate) struct Registry {
    pub(crate) async_node: Py<PyType>,
    pub(crate) flow: Py<PyType>,
    pub(crate) batch_node: Py<PyType>,
    pub(crate) async_batch_node: Py<PyType>,
    pub(crate) async_parallel_batch_node: Py<PyType>,
    /// `{**a, **b}` and `{**a}`, so that params merge exactly as in Python.
    pub(crate) merge: Py<PyAny>,
    pub(crate) spread: Py<PyAny>,
    /// `warnings.warn(message)`, called from the package's Python module.
    warn: Py<PyAny>,
    pub(crate) cur_retry: Py<PyAny>,
    pub(crate) copy: Py<PyAny>,
    pub(crate) gather: Py<PyAny>,
    pub(crate) sleep: Py<PyAny>,
    /// Built-in methods whose use by a class lets the engine skip a Python call.
    pub(crate) node_exec: Py<PyAny>,
    pub(crate) base_run: Py<PyAny>,
    pub(crate) set_params: Py<PyAny>,
    pub(crate) async_exec: Py<PyAny>,
    pub(crate) async_node_run: Py<PyAny>,
    pub(crate) get_next_node: Py<PyAny>,
    pub(crate) async_run_refused: Py<PyAny>,
    pub(crate) flow_orch: Py<PyAny>,
    pub(crate) flow_run: Py<PyAny>,
    pub(crate) batch_flow_run: Py<PyAny>,
    pub(crate) async_flow_orch: Py<PyAny>,
    pub(crate) async_flow_run: Py<PyAny>,
    pub(crate) async_batch_flow_run: Py<PyAny>,
    /// What `object` itself gives, to tell plain classes (fast copies) apart.
    pub(crate) object_reduce_ex: Py<PyAny>,
    pub(crate) object_reduce: Py<PyAny>,
    pub(crate) object_getstate: Option<Py<PyAny>>,
}

static REGISTRY: PyOnceLock<Registry> = PyOnceLock::new();

pub(crate) fn registry(py: Python<'_>) -> PyResult<&Registry> {
    REGISTRY
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("minllm is not initialised: import minllm, not minllm._minllm"))
}

/// Called once by `minllm/__init__.py`.
#[pyfunction]
pub(crate) fn _register(py: Python<'_>, classes: &Bound<'_, PyDict>) -> PyResult<()> {
    let class = |name: &str| -> PyResult<Py<PyType>> {
        classes
            .get_item(name)?
            .ok_or_else(|| PyValueError::new_err(format!("_register needs {name}")))?
            .cast_into::<PyType>()
            .map(Bound::unbind)
            .map_err(PyErr::from)
    };
    let item = |name: &str| -> PyResult<Py<PyAny>> {
        Ok(classes.get_item(name)?.ok_or_else(|| PyValueError::new_err(format!("_register needs {name}")))?.unbind())
    };
    let core = py.get_type::<NodeCore>();
    let object = py.get_type::<pyo3::types::PyAny>();
    let asyncio = py.import("asyncio")?;
    let registry = Registry {
        async_node: class("AsyncNode")?,
        flow: class("Flow")?,
        batch_node: class("BatchNode")?,
        async_batch_node: class("AsyncBatchNode")?,
        async_parallel_batch_node: class("AsyncParallelBatchNode")?,
        merge: item("merge")?,
        spread: item("spread")?,
        warn: item("warn")?,
        cur_retry: py.import("contextvars")?.getattr("ContextVar")?.call1(("minllm_cur_retry",))?.unbind(),
        copy: py.import("copy")?.getattr("copy")?.unbind(),
        gather: asyncio.getattr("gather")?.unbind(),
        sleep: asyncio.getattr("sleep")?.unbind(),
        node_exec: core.getattr("_node_exec")?.unbind(),
        base_run: core.getattr("_run")?.unbind(),
        set_params: core.getattr("set_params")?.unbind(),
        async_exec: core.getattr("_async_exec")?.unbind(),
        async_node_run: core.getattr("_async_node_run")?.unbind(),
        get_next_node: core.getattr("_flow_get_next_node")?.unbind(),
        async_run_refused: core.getattr("_async_run_sync_refused")?.unbind(),
        flow_orch: core.getattr("_flow_orch")?.unbind(),
        flow_run: core.getattr("_flow_run")?.unbind(),
        batch_flow_run: core.getattr("_batch_flow_run")?.unbind(),
        async_flow_orch: core.getattr("_async_flow_orch")?.unbind(),
        async_flow_run: core.getattr("_async_flow_run")?.unbind(),
        async_batch_flow_run: core.getattr("_async_batch_flow_run")?.unbind(),
        object_reduce_ex: object.getattr("__reduce_ex__")?.unbind(),
        object_reduce: object.getattr("__reduce__")?.unbind(),
        object_getstate: object.getattr("__getstate__").ok().map(Bound::unbind),
    };
    let _ = REGISTRY.set(py, registry);
    Ok(())
}

/// Warns with a `UserWarning`, as `warnings.warn(message)` does in the package.
pub(crate) fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    match registry(py) {
        Ok(reg) => reg.warn.bind(py).call1((message,)).map(drop),
        Err(_) => {
            let message = std::ffi::CString::new(message).unwrap_or_else(|_| c"minllm warning".to_owned());
            PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)
        }
    }
}

/// `f"{value}"`.
fn formatted(value: &Bound<'_, PyAny>) -> PyResult<String> {
    value.call_method1(intern!(value.py(), "__format__"), ("",))?.extract::<String>()
}

/// `repr(value)` for messages: cut short when long, and never an error (a
/// `__repr__` that fails gives `<Type object>`).
pub(crate) fn shown(value: &Bound<'_, PyAny>) -> String {
    let repr = value.repr().map(|r| r.to_string()).unwrap_or_else(|_| {
        let ty = value.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
        format!("<{ty} object>")
    });
    match repr.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &repr[..cut]),
        None => repr,
    }
}

/// Python truthiness.
pub(crate) fn truthy(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.is_truthy()
}

/// `getattr(obj, name, None)`, for attributes a user's subclass may not set.
pub(crate) fn attr_or_none<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match obj.getattr(name) {
        Ok(v) if v.is_none() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyAttributeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `node` takes `name` from the engine's `builtin` (its class does not
/// override it and the instance has no attribute of that name), so that the
/// engine may run the Rust implementation in place.
pub(crate) fn uses(node: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, builtin: &Py<PyAny>) -> bool {
    let py = node.py();
    let from_class = node.get_type().getattr(name).is_ok_and(|m| m.is(builtin.bind(py)));
    from_class
        && node
            .getattr(intern!(py, "__dict__"))
            .ok()
            .and_then(|d| d.cast_into::<PyDict>().ok())
            .is_none_or(|d| !d.contains(name).unwrap_or(true))
}

/// Runs a node copy, as `curr._run(shared)` does.
pub(crate) fn run_node<'py>(
    node: &Bound<'py, PyAny>,
    plan: Plan,
    shared: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = node.py();
    if !plan.own_run {
        return node.call_method1(intern!(py, "_run"), (shared,));
    }
    let p = node.call_method1(intern!(py, "prep"), (shared,))?;
    let e = exec_with_retries(node, &p, ON_WORKER.with(std::cell::Cell::get))?;
    node.call_method1(intern!(py, "post"), (shared, &p, &e))
}

/// The items of a batch: `prep`'s result, or none when it is falsy.
fn items<'py>(value: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if !truthy(value)? {
        return Ok(Vec::new());
    }
    value.try_iter()?.collect()
}

/// The attribute `name` that `super(after, obj)` finds, and whether it is the
/// engine's `builtin` (the engine then runs it in place).
pub(crate) fn super_method<'py>(
    obj: &Bound<'py, PyAny>,
    after: &Bound<'py, PyType>,
    name: &Bound<'py, PyString>,
    builtin: &Py<PyAny>,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    let py = obj.py();
    let sup = py.get_type::<pyo3::types::PySuper>().call1((after, obj))?;
    let bound = sup.getattr(name)?;
    // Find the raw attribute along the MRO, to compare it with the built-in.
    let mro = obj.get_type().getattr(intern!(py, "__mro__"))?;
    let mut past = false;
    for class in mro.try_iter()? {
        let class = class?;
        if past {
            if let Ok(found) = class.getattr(intern!(py, "__dict__"))?.get_item(name) {
                return Ok((bound, found.is(builtin.bind(py))));
            }
        } else if class.is(after) {
            past = true;
        }
    }
    Ok((bound, false))
}

/// Follows `action` from `curr`, as `Flow.get_next_node` does.
pub(crate) fn next_node<'py>(curr: &Bound<'py, PyAny>, action: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = curr.py();
    let successors = curr.getattr(intern!(py, "successors"))?;
    let key = if truthy(action)? { action.clone() } else { intern!(py, "default").clone().into_any() };
    let next = if successors.is_exact_instance_of::<PyDict>() {
        let dict = successors.cast::<PyDict>()?;
        dict.get_item(&key)?.unwrap_or_else(|| py.None().into_bound(py))
    } else {
        successors.call_method1(intern!(py, "get"), (&key,))?
    };
    if !truthy(&next)? && truthy(&successors)? {
        let keys = PyList::new(py, successors.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        warn(py, &format!("Flow ends: '{}' not found in {}", formatted(action)?, keys.repr()?))?;
    }
    Ok(next)
}

/// The next node of a flow pass: through the flow's own `get_next_node` when it
/// overrides the built-in one.
pub(crate) struct NextNode {
    custom: bool,
}

impl NextNode {
    pub(crate) fn of(flow: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = flow.py();
        Ok(NextNode { custom: !uses(flow, intern!(py, "get_next_node"), &registry(py)?.get_next_node) })
    }

    pub(crate) fn after<'py>(
        &self,
        flow: &Bound<'py, PyAny>,
        curr: &Bound<'py, PyAny>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.custom {
            flow.call_method1(intern!(flow.py(), "get_next_node"), (curr, action))
        } else {
            next_node(curr, action)
        }
    }
}

/// The params a flow pass starts with: `params or {**self.params}`.
pub(crate) fn pass_params<'py>(
    flow: &Bound<'py, PyAny>,
    params: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = flow.py();
    if let Some(p) = params
        && truthy(p)?
    {
        return Ok(p.clone());
    }
    registry(py)?.spread.bind(py).call1((flow.getattr(intern!(py, "params"))?,))
}

/// `{**self.params, **item}`.
pub(crate) fn merged<'py>(flow: &Bound<'py, PyAny>, item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = flow.py();
    registry(py)?.merge.bind(py).call1((flow.getattr(intern!(py, "params"))?, item))
}

/// How many threads a parallel batch uses: `max_workers`, else one per item up to 32.
fn workers_of(node: &Bound<'_, PyAny>, count: usize) -> PyResult<usize> {
    Ok(match MAX_WORKERS.of(node)? {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => count.clamp(1, 32),
    })
}

/// The start node of a flow (`None` when unset).
pub(crate) fn start_of<'py>(flow: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    attr_or_none(flow, intern!(flow.py(), "start_node"))
}

/// The base class of every node and flow: the engine's methods, which the
/// classes of `minllm` bind under the original's names.
#[pyclass(subclass, frozen, module = "minllm._minllm", name = "NodeCore")]
pub(crate) struct NodeCore;

#[pymethods]
impl NodeCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        NodeCore
    }

    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(&self, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) {}

    /// The attempt `exec` is on (0 for the first), for this item even when
    /// items run at the same time.
    #[getter]
    fn cur_retry<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if let Ok(reg) = registry(py) {
            let current = reg.cur_retry.bind(py).call_method1(intern!(py, "get"), (py.None(),))?;
            if let Ok((node, attempt)) = current.extract::<(usize, i64)>()
                && node == slf.as_ptr() as usize
            {
                return Ok(attempt.into_pyobject(py)?.into_any());
            }
        }
        let stored = dict_of(slf)?.get_item(intern!(py, "cur_retry"))?;
        stored.ok_or_else(|| {
            let class = slf.get_type().name().map_or_else(|_| "node".to_owned(), |n| n.to_string());
            PyAttributeError::new_err(format!("'{class}' object has no attribute 'cur_retry'"))
        })
    }

    #[setter]
    fn set_cur_retry(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        dict_of(slf)?.set_item(intern!(py, "cur_retry"), value)
    }

    // ---- BaseNode ----

    fn set_params(slf: &Bound<'_, Self>, params: Bound<'_, PyAny>) -> PyResult<()> {
        slf.setattr(intern!(slf.py(), "params"), params)
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
        check_stack()?;
        let py = slf.py();
        let p = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let e = slf.call_method1(intern!(py, "_exec"), (&p,))?;
        slf.call_method1(intern!(py, "post"), (&shared, &p, &e))
    }

    fn run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        check_stack()?;
        let py = slf.py();
        if truthy(&slf.getattr(intern!(py, "successors"))?)? {
            warn(py, "Node won't run successors. Use Flow.")?;
        }
        slf.call_method1(intern!(py, "_run"), (shared,))
    }

    // ---- Node, BatchNode, ParallelBatchNode ----

    fn _node_exec<'py>(slf: &Bound<'py, Self>, prep_res: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        exec_with_retries(slf.as_any(), &prep_res, ON_WORKER.with(std::cell::Cell::get))
    }

    fn _batch_exec<'py>(slf: &Bound<'py, Self>, items_res: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let reg = registry(py)?;
        let (per_item, builtin) = super_method(slf, reg.batch_node.bind(py), intern!(py, "_exec"), &reg.node_exec)?;
        let mut results = Vec::new();
        for item in items(&items_res)? {
            results.push(if builtin { exec_with_retries(slf, &item, false)? } else { per_item.call1((item,))? });
        }
        PyList::new(py, results)
    }

    fn _parallel_batch_exec<'py>(slf: &Bound<'py, Self>, items_res: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let reg = registry(py)?;
        let (per_item, builtin) = super_method(slf, reg.batch_node.bind(py), intern!(py, "_exec"), &reg.node_exec)?;
        let items: Vec<Py<PyAny>> = items(&items_res)?.into_iter().map(Bound::unbind).collect();
        let workers = workers_of(slf, items.len())?;
        let (node, per_item) = (slf.clone().into_any().unbind(), per_item.unbind());
        let count = items.len();
        let results = run_on_threads(py, count, workers, move |py, i| {
            let item = items[i].bind(py);
            let out = if builtin {
                exec_with_retries(node.bind(py), item, true)?
            } else {
                per_item.bind(py).call1((item,))?
            };
            Ok(out.unbind())
        })?;
        PyList::new(py, results)
    }

    // ---- Flow, BatchFlow, ParallelBatchFlow ----

    fn _flow_start<'py>(slf: &Bound<'py, Self>, start: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        slf.setattr(intern!(slf.py(), "start_node"), &start)?;
        Ok(start)
    }

    #[allow(unused_variables)]
    fn _flow_get_next_node<'py>(
        slf: &Bound<'py, Self>,
        curr: Bound<'py, PyAny>,
        action: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        next_node(&curr, &action)
    }

    #[pyo3(signature = (shared, params = None))]
    fn _flow_orch<'py>(
        slf: &Bound<'py, Self>,
        shared: Bound<'py, PyAny>,
        params: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::flows::orchestrate(slf.as_any(), &shared, params.as_ref())
    }

    fn _flow_run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        check_stack()?;
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
        check_stack()?;
        let py = slf.py();
        let pr = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let pr = if truthy(&pr)? { pr } else { PyList::empty(py).into_any() };
        for bp in pr.try_iter()? {
            let merged = merged(slf, &bp?)?;
            slf.call_method1(intern!(py, "_orch"), (&shared, merged))?;
        }
        slf.call_method1(intern!(py, "post"), (&shared, &pr, py.None()))
    }

    fn _parallel_batch_flow_run<'py>(slf: &Bound<'py, Self>, shared: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        check_stack()?;
        let py = slf.py();
        let pr = slf.call_method1(intern!(py, "prep"), (&shared,))?;
        let pr = if truthy(&pr)? { pr } else { PyList::empty(py).into_any() };
        let merged: Vec<Py<PyAny>> =
            pr.try_iter()?.map(|bp| merged(slf, &bp?).map(Bound::unbind)).collect::<PyResult<_>>()?;
        let workers = workers_of(slf, merged.len())?;
        let (flow, store) = (slf.clone().into_any().unbind(), shared.clone().unbind());
        run_on_threads(py, merged.len(), workers, move |py, i| {
            flow.bind(py).call_method1(intern!(py, "_orch"), (store.bind(py), merged[i].bind(py))).map(Bound::unbind)
        })?;
        slf.call_method1(intern!(py, "post"), (&shared, &pr, py.None()))
    }

    // ---- beyond the original: validation and diagrams ----

    /// The problems as (message, kind, flow, node); `Flow.validate` makes them
    /// `minllm.Problem`s.
    fn _validate(slf: &Bound<'_, Self>) -> PyResult<Vec<crate::graph::Described>> {
        let (graph, mut settings) = crate::graph::graph_of(slf.as_any())?;
        let mut problems: Vec<crate::graph::Described> = graph
            .validate()
            .iter()
            .map(|p| (described(p), p.kind(), p.flow().to_owned(), p.node().map(str::to_owned)))
            .collect();
        problems.append(&mut settings);
        Ok(problems)
    }

    fn _to_mermaid(slf: &Bound<'_, Self>) -> PyResult<String> {
        Ok(crate::graph::graph_of(slf.as_any())?.0.to_mermaid())
    }

    // ---- async ----

    fn _async_exec(slf: &Bound<'_, Self>, prep_res: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::node_exec(slf.clone().into_any().unbind(), prep_res)
    }

    fn _async_node_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::node_run(slf.clone().into_any().unbind(), shared)
    }

    fn _async_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::run_async(slf.clone().into_any().unbind(), shared)
    }

    #[allow(unused_variables)]
    fn _async_run_sync_refused(&self, shared: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyRuntimeError::new_err("Use run_async."))
    }

    fn _async_batch_exec(slf: &Bound<'_, Self>, items: Py<PyAny>) -> PyResult<crate::bridge::Coroutine> {
        let py = slf.py();
        crate::asyncs::batch_exec(slf.as_any(), items, registry(py)?.async_batch_node.bind(py), false)
    }

    fn _async_parallel_batch_exec(slf: &Bound<'_, Self>, items: Py<PyAny>) -> PyResult<crate::bridge::Coroutine> {
        let py = slf.py();
        crate::asyncs::batch_exec(slf.as_any(), items, registry(py)?.async_parallel_batch_node.bind(py), true)
    }

    #[pyo3(signature = (shared, params = None))]
    fn _async_flow_orch(
        slf: &Bound<'_, Self>,
        shared: Py<PyAny>,
        params: Option<Py<PyAny>>,
    ) -> crate::bridge::Coroutine {
        crate::asyncs::flow_orch(slf.clone().into_any().unbind(), shared, params)
    }

    fn _async_flow_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::flow_run(slf.clone().into_any().unbind(), shared)
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
        crate::asyncs::batch_flow_run(slf.clone().into_any().unbind(), shared, false)
    }

    fn _async_parallel_batch_flow_run(slf: &Bound<'_, Self>, shared: Py<PyAny>) -> crate::bridge::Coroutine {
        crate::asyncs::batch_flow_run(slf.clone().into_any().unbind(), shared, true)
    }
}

/// A problem as the Python package words it: a Python flow has no
/// `unbounded` mark, only `max_steps`.
fn described(problem: &minllm::graph::Problem) -> String {
    match problem {
        minllm::graph::Problem::UnboundedCycle { flow, path } => {
            format!("flow `{flow}` has a cycle {} and no step limit; set one with `max_steps`", path.join(" -> "))
        }
        other => other.to_string(),
    }
}

/// Whether `node` is an `AsyncNode` (async flows await those, and run the others).
pub(crate) fn is_async_node(node: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = node.py();
    node.is_instance(registry(py)?.async_node.bind(py))
}

/// Whether `node` is a `Flow` (for diagrams and validation).
pub(crate) fn is_flow(node: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = node.py();
    node.is_instance(registry(py)?.flow.bind(py))
}
