//! `NodeCore`: the base of every Python node and flow class, whose methods the
//! package's classes bind under the original's names. Their work is spread by
//! concept: retries and the fallback in [`retries`](crate::retries), node
//! copies and run plans in [`copies`](crate::copies), flow passes and edge
//! following in [`flows`](crate::flows), async runs in [`asyncs`](crate::asyncs),
//! and what the engine knows of the package in [`registry`](crate::registry).
//!
//! A node's state (`params`, `successors`, `max_retries`, `wait`, `start_node`,
//! ...) lives in its instance `__dict__`, as in the original, so `vars()`,
//! `copy`, `pickle`, properties and `__setattr__` all behave as users expect.
//! The engine reads it, and calls the user's hooks, through normal Python
//! attribute lookup: subclass methods and instance attributes win.

use pyo3::exceptions::{PyAttributeError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

pub(crate) use crate::copies::{Nested, Plan, Planner, dict_of, give_params, plain_setattr};
use crate::depth::check_stack;
use crate::flows::{merged, next_node};
pub(crate) use crate::registry::{
    Registry, attr_or_none, formatted, is_async_node, is_flow, registry, shown, super_method, truthy, uses, warn,
};
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

/// How many threads a parallel batch uses: `max_workers`, else the runtime's
/// default for a pool of a batch's own (one per item, up to 32).
pub(crate) fn workers_of(node: &Bound<'_, PyAny>, count: usize) -> PyResult<usize> {
    Ok(match MAX_WORKERS.of(node)? {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => minllm::__private::default_threads(count),
    })
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
