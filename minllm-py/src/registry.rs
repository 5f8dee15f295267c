//! What the engine knows of the Python package, and how it reads Python
//! objects: the package's classes, helpers and built-in methods (registered
//! once by `minllm/__init__.py`), warnings, truthiness, `repr`s for messages,
//! and whether a node takes a method from the engine or overrides it.

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyUserWarning, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use crate::core::NodeCore;

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
pub(crate) fn formatted(value: &Bound<'_, PyAny>) -> PyResult<String> {
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
