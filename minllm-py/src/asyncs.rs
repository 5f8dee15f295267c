//! The async orchestration: what `AsyncNode`, the async batch nodes and the
//! async flows do, as Rust futures run as Python coroutines on the caller's
//! asyncio loop (see [`bridge`](crate::bridge)).

use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::bridge::{Coroutine, await_py};
use crate::core::{NodeCore, StepCounter, copy_node, is_async_node, registry, truthy, uses, warn};

/// Calls `obj.name(*args)` and returns the awaitable it gives.
fn call<'py>(
    obj: &Py<PyAny>,
    name: &Bound<'py, pyo3::types::PyString>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Py<PyAny>> {
    obj.bind(name.py()).call_method1(name, args).map(Bound::unbind)
}

/// `AsyncNode._exec`: attempts of `exec_async`, `asyncio.sleep(wait)` between
/// them, then `exec_fallback_async` with the last exception.
async fn exec_with_retries(node: Py<NodeCore>, prep_res: Py<PyAny>, concurrent: bool) -> PyResult<Py<PyAny>> {
    // The policy and the first call in one visit to the interpreter.
    let (any, max_retries, wait, first) = Python::attach(|py| {
        let core = node.bind(py);
        let (max_retries, wait) = NodeCore::retry_policy_of(core)?;
        let any: Py<PyAny> = node.clone_ref(py).into_any();
        let first = if max_retries > 0 {
            NodeCore::set_attempt(core, 0, concurrent)?;
            Some(call(&any, intern!(py, "exec_async"), (prep_res.clone_ref(py),))?)
        } else {
            None
        };
        PyResult::Ok((any, max_retries, wait, first))
    })?;
    let Some(mut awaitable) = first else {
        return Python::attach(|py| Ok(py.None()));
    };
    let mut attempt = 0;
    loop {
        let error = match await_py(awaitable).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let (retryable, last) =
            Python::attach(|py| (error.is_instance_of::<PyException>(py), attempt == max_retries - 1));
        if !retryable {
            return Err(error);
        }
        if last {
            let fallback = Python::attach(|py| {
                call(&any, intern!(py, "exec_fallback_async"), (prep_res.clone_ref(py), error.into_value(py)))
            })?;
            return await_py(fallback).await;
        }
        if wait > 0.0 {
            let sleep = Python::attach(|py| registry(py)?.sleep.bind(py).call1((wait,)).map(Bound::unbind))?;
            await_py(sleep).await?;
        }
        attempt += 1;
        awaitable = Python::attach(|py| {
            NodeCore::set_attempt(node.bind(py), attempt, concurrent)?;
            call(&any, intern!(py, "exec_async"), (prep_res.clone_ref(py),))
        })?;
    }
}

pub(crate) fn node_exec(node: Py<NodeCore>, prep_res: Py<PyAny>) -> Coroutine {
    Coroutine::new("_exec", exec_with_retries(node, prep_res, false))
}

/// `AsyncNode._run_async`: `prep_async`, `_exec`, `post_async`.
pub(crate) fn node_run(node: Py<NodeCore>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("_run_async", run_node(node, shared))
}

async fn run_node(node: Py<NodeCore>, shared: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let any: Py<PyAny> = Python::attach(|py| node.clone_ref(py).into_any());
    let prep = Python::attach(|py| call(&any, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
    let p = await_py(prep).await?;
    // `AsyncNode._exec` runs here directly; another `_exec` is called and awaited.
    let builtin = Python::attach(|py| registry(py).map(|r| uses(any.bind(py), intern!(py, "_exec"), &r.async_exec)))?;
    let e = if builtin {
        let (node, p) = Python::attach(|py| (node.clone_ref(py), p.clone_ref(py)));
        exec_with_retries(node, p, false).await?
    } else {
        let exec = Python::attach(|py| call(&any, intern!(py, "_exec"), (p.clone_ref(py),)))?;
        await_py(exec).await?
    };
    let post = Python::attach(|py| call(&any, intern!(py, "post_async"), (shared, p, e)))?;
    await_py(post).await
}

/// `AsyncNode.run_async`: warns when the node has successors, then runs it.
pub(crate) fn run_async(node: Py<PyAny>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("run_async", async move {
        let run = Python::attach(|py| {
            if truthy(&NodeCore::successors_of(node.bind(py))?)? {
                warn(py, "Node won't run successors. Use AsyncFlow.")?;
            }
            call(&node, intern!(py, "_run_async"), (shared,))
        })?;
        await_py(run).await
    })
}

/// `AsyncBatchNode._exec` (one item after the other) and
/// `AsyncParallelBatchNode._exec` (all items with `asyncio.gather`).
pub(crate) fn batch_exec(node: Py<NodeCore>, items: Py<PyAny>, parallel: bool) -> Coroutine {
    Coroutine::new("_exec", async move {
        let items: Vec<Py<PyAny>> =
            Python::attach(|py| items.bind(py).try_iter()?.map(|i| i.map(Bound::unbind)).collect::<PyResult<_>>())?;
        if parallel {
            let gather = Python::attach(|py| {
                let coros = items
                    .into_iter()
                    .map(|item| {
                        let co = Coroutine::new("_exec", exec_with_retries(node.clone_ref(py), item, true));
                        Py::new(py, co).map(Py::into_any)
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                registry(py)?.gather.bind(py).call1(PyTuple::new(py, coros)?).map(Bound::unbind)
            })?;
            return await_py(gather).await;
        }
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let node = Python::attach(|py| node.clone_ref(py));
            results.push(exec_with_retries(node, item, false).await?);
        }
        Python::attach(|py| PyList::new(py, results).map(|l| l.into_any().unbind()))
    })
}

/// How the async flow runs one node.
enum Step {
    /// A sync node, already run.
    Done(Py<PyAny>),
    /// An `AsyncNode` with the built-in `_run_async`, run in place.
    Node(Py<NodeCore>),
    /// Anything else: await what its `_run_async` returned.
    Await(Py<PyAny>),
}

/// `AsyncFlow._orch_async`: like `Flow._orch`, awaiting `AsyncNode`s and
/// running the other nodes in place.
pub(crate) fn flow_orch(flow: Py<NodeCore>, shared: Py<PyAny>, params: Option<Py<PyAny>>) -> Coroutine {
    Coroutine::new("_orch_async", async move {
        let (start, p, mut steps) = Python::attach(|py| {
            let f = flow.bind(py);
            let start = f.getattr(intern!(py, "start_node"))?.unbind();
            let p = NodeCore::pass_params(f, params.as_ref().map(|p| p.bind(py)))?.unbind();
            PyResult::Ok((start, p, StepCounter::new(f)?))
        })?;
        let mut last_action = Python::attach(|py| py.None());
        let mut curr = Python::attach(|py| {
            let start = start.bind(py);
            if start.is_none() { Ok(None) } else { copy_node(py, start).map(|c| Some(c.unbind())) }
        })?;
        while let Some(node) = curr.take() {
            let pending = Python::attach(|py| {
                let n = node.bind(py);
                if !truthy(n)? {
                    return PyResult::Ok(None);
                }
                steps.enter(n)?;
                NodeCore::give_params(n, p.bind(py))?;
                if !is_async_node(py, n)? {
                    return Ok(Some(Step::Done(n.call_method1(intern!(py, "_run"), (shared.bind(py),))?.unbind())));
                }
                if uses(n, intern!(py, "_run_async"), &registry(py)?.async_node_run)
                    && let Ok(core) = n.cast::<NodeCore>()
                {
                    return Ok(Some(Step::Node(core.clone().unbind())));
                }
                Ok(Some(Step::Await(call(&node, intern!(py, "_run_async"), (shared.clone_ref(py),))?)))
            })?;
            last_action = match pending {
                None => break,
                Some(Step::Done(action)) => action,
                Some(Step::Node(core)) => run_node(core, Python::attach(|py| shared.clone_ref(py))).await?,
                Some(Step::Await(awaitable)) => await_py(awaitable).await?,
            };
            curr = Python::attach(|py| match NodeCore::next_node(py, node.bind(py), last_action.bind(py))? {
                Some(next) => copy_node(py, &next).map(|c| Some(c.unbind())),
                None => Ok(None),
            })?;
        }
        Ok(last_action)
    })
}

/// `AsyncFlow._run_async`: `prep_async`, `_orch_async`, `post_async`.
pub(crate) fn flow_run(flow: Py<NodeCore>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("_run_async", async move {
        let flow: Py<PyAny> = Python::attach(|py| flow.clone_ref(py).into_any());
        let prep = Python::attach(|py| call(&flow, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
        let p = await_py(prep).await?;
        let orch = Python::attach(|py| call(&flow, intern!(py, "_orch_async"), (shared.clone_ref(py),)))?;
        let o = await_py(orch).await?;
        let post = Python::attach(|py| call(&flow, intern!(py, "post_async"), (shared, p, o)))?;
        await_py(post).await
    })
}

/// `AsyncBatchFlow._run_async` (one params set after the other) and
/// `AsyncParallelBatchFlow._run_async` (all with `asyncio.gather`).
pub(crate) fn batch_flow_run(flow: Py<NodeCore>, shared: Py<PyAny>, parallel: bool) -> Coroutine {
    Coroutine::new("_run_async", async move {
        let any: Py<PyAny> = Python::attach(|py| flow.clone_ref(py).into_any());
        let prep = Python::attach(|py| call(&any, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
        let pr = await_py(prep).await?;
        let (pr, merged) = Python::attach(|py| {
            let pr = pr.into_bound(py);
            let pr = if truthy(&pr)? { pr } else { PyList::empty(py).into_any() };
            let merged = pr
                .try_iter()?
                .map(|bp| NodeCore::merged(flow.bind(py), &bp?).map(Bound::unbind))
                .collect::<PyResult<Vec<_>>>()?;
            PyResult::Ok((pr.unbind(), merged))
        })?;
        if parallel {
            let gather = Python::attach(|py| {
                let coros = merged
                    .iter()
                    .map(|m| call(&any, intern!(py, "_orch_async"), (shared.clone_ref(py), m.clone_ref(py))))
                    .collect::<PyResult<Vec<_>>>()?;
                registry(py)?.gather.bind(py).call1(PyTuple::new(py, coros)?).map(Bound::unbind)
            })?;
            await_py(gather).await?;
        } else {
            for m in merged {
                let orch = Python::attach(|py| call(&any, intern!(py, "_orch_async"), (shared.clone_ref(py), m)))?;
                await_py(orch).await?;
            }
        }
        let post = Python::attach(|py| call(&any, intern!(py, "post_async"), (shared, pr, py.None())))?;
        await_py(post).await
    })
}
