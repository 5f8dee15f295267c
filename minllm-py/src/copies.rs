//! Node copies, as the original makes them for each step (`copy.copy`), done
//! in place when a class allows it, and the plan that says which of a node's
//! methods are the engine's own, worked out once per node and run.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::core::{NodeCore, Registry, is_async_node, registry, uses};

/// Whether copies of instances of `ty` may skip `copy.copy`: it defines none of
/// the hooks that customise copying, and no `__slots__`.
fn plain_copy(ty: &Bound<'_, PyType>, reg: &Registry) -> bool {
    let py = ty.py();
    let same = |name: &Bound<'_, PyString>, default: Option<&Py<PyAny>>| match (ty.getattr(name), default) {
        (Ok(found), Some(default)) => found.is(default.bind(py)),
        (Ok(_), None) => false,
        (Err(_), _) => true,
    };
    same(intern!(py, "__reduce_ex__"), Some(&reg.object_reduce_ex))
        && same(intern!(py, "__reduce__"), Some(&reg.object_reduce))
        && same(intern!(py, "__getstate__"), reg.object_getstate.as_ref())
        && same(intern!(py, "__copy__"), None)
        && same(intern!(py, "__setstate__"), None)
        && same(intern!(py, "__slots__"), None)
}

/// How the engine runs a node, worked out once per node and run: which of the
/// node's methods are the engine's own (not overridden by its class or the
/// instance), so that the engine may run them in place.
#[derive(Clone, Copy, Default)]
pub(crate) struct Plan {
    /// Copies may skip `copy.copy`.
    pub(crate) plain_copy: bool,
    /// `set_params` is the built-in one: set `params` directly.
    pub(crate) own_set_params: bool,
    /// `_run` and `_exec` are `BaseNode._run` and `Node._exec`.
    pub(crate) own_run: bool,
    /// An `AsyncNode`.
    pub(crate) is_async: bool,
    /// `_run_async` is `AsyncNode._run_async`.
    pub(crate) own_run_async: bool,
    /// `_exec` is `AsyncNode._exec`.
    pub(crate) own_async_exec: bool,
    /// A flow whose `_run` and `_orch` are the engine's: a sync run takes it
    /// in place, as a level of its own.
    pub(crate) nested: Option<Nested>,
    /// An async flow whose `_run_async` and `_orch_async` are the engine's: an
    /// async run takes it in place.
    pub(crate) nested_async: Option<Nested>,
}

/// What a flow run in place does around its passes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nested {
    /// `Flow._run`: `prep`, one pass, `post`.
    Flow,
    /// `BatchFlow._run`: `prep`, a pass per params set it returns, `post`.
    Batch,
}

/// Copies nodes as `copy.copy` does, and keeps each node's [`Plan`] for the run.
#[derive(Default)]
pub(crate) struct Planner {
    plans: std::collections::HashMap<usize, Plan>,
}

impl Planner {
    fn plan(&mut self, node: &Bound<'_, PyAny>) -> PyResult<Plan> {
        let key = node.as_ptr() as usize;
        if let Some(plan) = self.plans.get(&key) {
            return Ok(*plan);
        }
        let py = node.py();
        let reg = registry(py)?;
        let ours = node.cast::<NodeCore>().is_ok();
        let own = |name: &Bound<'_, PyString>, builtin: &Py<PyAny>| ours && uses(node, name, builtin);
        // A flow the engine runs in place: its own orchestration, and the run
        // of a flow or of a batch flow.
        let nested = |orch: &Bound<'_, PyString>,
                      own_orch: &Py<PyAny>,
                      run: &Bound<'_, PyString>,
                      flow_run: &Py<PyAny>,
                      batch_run: &Py<PyAny>| {
            if !own(orch, own_orch) {
                None
            } else if own(run, flow_run) {
                Some(Nested::Flow)
            } else if own(run, batch_run) {
                Some(Nested::Batch)
            } else {
                None
            }
        };
        let plan = Plan {
            plain_copy: ours && plain_copy(&node.get_type(), reg),
            own_set_params: own(intern!(py, "set_params"), &reg.set_params) && plain_setattr(node),
            own_run: own(intern!(py, "_run"), &reg.base_run) && own(intern!(py, "_exec"), &reg.node_exec),
            is_async: is_async_node(node)?,
            own_run_async: own(intern!(py, "_run_async"), &reg.async_node_run),
            own_async_exec: own(intern!(py, "_exec"), &reg.async_exec),
            nested: nested(
                intern!(py, "_orch"),
                &reg.flow_orch,
                intern!(py, "_run"),
                &reg.flow_run,
                &reg.batch_flow_run,
            ),
            nested_async: nested(
                intern!(py, "_orch_async"),
                &reg.async_flow_orch,
                intern!(py, "_run_async"),
                &reg.async_flow_run,
                &reg.async_batch_flow_run,
            ),
        };
        self.plans.insert(key, plan);
        Ok(plan)
    }

    /// A copy of `node` and its plan.
    pub(crate) fn copy<'py>(&mut self, node: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Plan)> {
        let py = node.py();
        let plan = self.plan(node)?;
        if !plan.plain_copy {
            return Ok((registry(py)?.copy.bind(py).call1((node,))?, plan));
        }
        let new = new_instance(&node.get_type())?;
        let dict = dict_of(node)?;
        if !dict.is_empty() {
            let copy = dict.copy()?;
            // SAFETY: the GIL is held; `new` and `copy` are live, and
            // `PyObject_GenericSetDict` does not steal `copy`.
            #[allow(unsafe_code)]
            let status = unsafe { ffi::PyObject_GenericSetDict(new.as_ptr(), copy.as_ptr(), std::ptr::null_mut()) };
            if status != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok((new, plan))
    }
}

/// Gives a node copy the pass's params, as `curr.set_params(p)` does.
pub(crate) fn give_params(node: &Bound<'_, PyAny>, plan: Plan, params: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = node.py();
    if plan.own_set_params {
        dict_of(node)?.set_item(intern!(py, "params"), params)
    } else {
        node.call_method1(intern!(py, "set_params"), (params,)).map(drop)
    }
}

/// A new instance of `ty` (a subclass of `NodeCore`), made as `ty.__new__(ty)`
/// would make it, without calling `__init__`.
fn new_instance<'py>(ty: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let py = ty.py();
    let args = PyTuple::empty(py);
    // SAFETY: the GIL is held; `ty` is a live heap type (NodeCore, a pyclass,
    // or a Python subclass of it), for which `PyType_GetSlot` is in the stable
    // ABI of every Python the wheel supports; the slot, when set, is a
    // `newfunc`, called with valid `args` and a null `kwds`, and returns a new
    // reference or null with an error set, which `from_owned_ptr_or_err`
    // turns into a `PyErr`.
    #[allow(unsafe_code)]
    unsafe {
        let tp = ty.as_type_ptr();
        let slot = ffi::PyType_GetSlot(tp, ffi::Py_tp_new);
        if slot.is_null() {
            return Err(PyTypeError::new_err("cannot copy: the node's type has no __new__"));
        }
        let tp_new: ffi::newfunc = std::mem::transmute::<*mut std::ffi::c_void, ffi::newfunc>(slot);
        Bound::from_owned_ptr_or_err(py, tp_new(tp, args.as_ptr(), std::ptr::null_mut()))
    }
}

/// Whether setting an attribute of `obj` is plain (its class has no
/// `__setattr__` of its own), so the engine may write to `__dict__` directly.
pub(crate) fn plain_setattr(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reads a slot of the live heap type of `obj` (node classes are
    // Python classes or pyclasses), with the GIL held.
    #[allow(unsafe_code)]
    unsafe {
        let slot = ffi::PyType_GetSlot(obj.get_type().as_type_ptr(), ffi::Py_tp_setattro);
        std::ptr::eq(slot, ffi::PyObject_GenericSetAttr as *mut std::ffi::c_void)
    }
}

// In the stable ABI from Python 3.10 on, and exported with this signature by
// every CPython since 3.3: the wheel (abi3, for 3.9+) finds it in each.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn PyObject_GenericGetDict(obj: *mut ffi::PyObject, context: *mut std::ffi::c_void) -> *mut ffi::PyObject;
}

/// The instance `__dict__` of `obj` (made if it has none yet).
pub(crate) fn dict_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    // SAFETY: the GIL is held and `obj` is live; `PyObject_GenericGetDict`
    // returns a new reference to the dict, or null with an error set.
    #[allow(unsafe_code)]
    let dict =
        unsafe { Bound::from_owned_ptr_or_err(obj.py(), PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()))? };
    Ok(dict.cast_into::<PyDict>()?)
}
