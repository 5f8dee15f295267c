//! The async orchestration: what `AsyncNode`, the async batch nodes and the
//! async flows do, as Rust futures run as Python coroutines on the caller's
//! asyncio loop (see [`bridge`](crate::bridge)).

use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple, PyType};

use crate::bridge::{Coroutine, await_py, await_py_handling};
use crate::core::{attempts_of, registry, reset_attempt, set_attempt, super_method, truthy, uses, wait_of, warn};
use crate::depth::AsyncLevels;
use crate::flows::{Level, Pass, merged};

/// Calls `obj.name(*args)` and returns the awaitable it gives.
fn call<'py>(
    obj: &Py<PyAny>,
    name: &Bound<'py, PyString>,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<Py<PyAny>> {
    obj.bind(name.py()).call_method1(name, args).map(Bound::unbind)
}

fn clone(obj: &Py<PyAny>) -> Py<PyAny> {
    Python::attach(|py| obj.clone_ref(py))
}

/// `AsyncNode._exec`: attempts of `exec_async`, `asyncio.sleep(wait)` between
/// them, then `exec_fallback_async` with the last exception. Each attempt's
/// number is visible as `self.cur_retry`, per item.
async fn exec_with_retries(node: Py<PyAny>, prep_res: Py<PyAny>, concurrent: bool) -> PyResult<Py<PyAny>> {
    let attempts = Python::attach(|py| attempts_of(node.bind(py)))?;
    let mut token: Option<Py<PyAny>> = None;
    let result = async {
        for attempt in 0..attempts {
            let awaitable = Python::attach(|py| {
                if let Some(t) = set_attempt(node.bind(py), attempt, concurrent)? {
                    token.get_or_insert_with(|| t.unbind());
                }
                call(&node, intern!(py, "exec_async"), (prep_res.clone_ref(py),))
            })?;
            let error = match await_py(awaitable).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let next = Python::attach(|py| {
                if !error.is_instance_of::<PyException>(py) {
                    return Ok(None);
                }
                let exc = error.value(py).clone().into_any();
                let n = node.bind(py);
                let last = crate::core::is_last_attempt(n, &attempt.into_pyobject(py)?.into_any())?;
                PyResult::Ok(Some((exc.unbind(), last, if last { None } else { wait_of(n)? })))
            })?;
            let Some((exc, last, wait)) = next else { return Err(error) };
            if last {
                let fallback = Python::attach(|py| {
                    call(&node, intern!(py, "exec_fallback_async"), (prep_res.clone_ref(py), exc.clone_ref(py)))
                })?;
                return await_py_handling(fallback, exc).await;
            }
            if let Some(wait) = wait {
                let sleep = Python::attach(|py| registry(py)?.sleep.bind(py).call1((wait,)).map(Bound::unbind))?;
                await_py(sleep).await?;
            }
        }
        Python::attach(|py| Ok(py.None()))
    }
    .await;
    if let Some(token) = token {
        Python::attach(|py| reset_attempt(node.bind(py), token.bind(py)))?;
    }
    result
}

/// `AsyncNode._exec` called from Python: concurrent when it runs for one item
/// of a parallel batch (see [`mark_parallel_item`]).
pub(crate) fn node_exec(node: Py<PyAny>, prep_res: Py<PyAny>) -> Coroutine {
    Coroutine::new("_exec", async move {
        let concurrent = Python::attach(in_parallel_item)?;
        exec_with_retries(node, prep_res, concurrent).await
    })
}

static PARALLEL_ITEM: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

fn parallel_item_var(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    PARALLEL_ITEM.get_or_try_init(py, || {
        Ok(py.import("contextvars")?.getattr("ContextVar")?.call1(("minllm_parallel_item",))?.unbind())
    })
}

fn in_parallel_item(py: Python<'_>) -> PyResult<bool> {
    parallel_item_var(py)?.bind(py).call_method1(intern!(py, "get"), (false,))?.is_truthy()
}

/// `_mark_parallel_item()`: the current asyncio task runs one item of a
/// parallel batch (the driver of durable runs calls it in each item's task).
#[pyfunction]
pub(crate) fn _mark_parallel_item(py: Python<'_>) -> PyResult<()> {
    parallel_item_var(py)?.bind(py).call_method1(intern!(py, "set"), (true,)).map(drop)
}

/// Runs `awaitable` as one item of a parallel batch: inside it (its own
/// asyncio task), `_exec` knows that items share the node.
fn mark_parallel_item(awaitable: Py<PyAny>) -> Coroutine {
    Coroutine::new("_exec", async move {
        Python::attach(|py| parallel_item_var(py)?.bind(py).call_method1(intern!(py, "set"), (true,)).map(drop))?;
        await_py(awaitable).await
    })
}

/// `AsyncNode._run_async`: `prep_async`, `_exec`, `post_async`.
pub(crate) fn node_run(node: Py<PyAny>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("_run_async", async move {
        let builtin =
            Python::attach(|py| PyResult::Ok(uses(node.bind(py), intern!(py, "_exec"), &registry(py)?.async_exec)))?;
        run_node(node, shared, builtin).await
    })
}

/// `prep_async`, `_exec`, `post_async`; `own_exec` when `_exec` is the built-in
/// one, which then runs here directly.
async fn run_node(node: Py<PyAny>, shared: Py<PyAny>, own_exec: bool) -> PyResult<Py<PyAny>> {
    let builtin = own_exec;
    let prep = Python::attach(|py| call(&node, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
    let p = await_py(prep).await?;
    let e = if builtin {
        exec_with_retries(clone(&node), clone(&p), false).await?
    } else {
        let exec = Python::attach(|py| call(&node, intern!(py, "_exec"), (p.clone_ref(py),)))?;
        await_py(exec).await?
    };
    let post = Python::attach(|py| call(&node, intern!(py, "post_async"), (shared, p, e)))?;
    await_py(post).await
}

/// `AsyncNode.run_async`: warns when the node has successors, then runs it.
pub(crate) fn run_async(node: Py<PyAny>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("run_async", async move {
        let run = Python::attach(|py| {
            if truthy(&node.bind(py).getattr(intern!(py, "successors"))?)? {
                warn(py, "Node won't run successors. Use AsyncFlow.")?;
            }
            call(&node, intern!(py, "_run_async"), (shared,))
        })?;
        await_py(run).await
    })
}

/// `AsyncBatchNode._exec` (one item after the other) and
/// `AsyncParallelBatchNode._exec` (all at once with `asyncio.gather`): each item
/// through `super(<class>, self)._exec`.
pub(crate) fn batch_exec(
    node: &Bound<'_, PyAny>,
    items: Py<PyAny>,
    class: &Bound<'_, PyType>,
    parallel: bool,
) -> PyResult<Coroutine> {
    let py = node.py();
    let (per_item, builtin) = super_method(node, class, intern!(py, "_exec"), &registry(py)?.async_exec)?;
    let (node, per_item) = (node.clone().unbind(), per_item.unbind());
    Ok(Coroutine::new("_exec", async move {
        let items: Vec<Py<PyAny>> =
            Python::attach(|py| items.bind(py).try_iter()?.map(|i| i.map(Bound::unbind)).collect::<PyResult<_>>())?;
        if parallel {
            let gather = Python::attach(|py| {
                let coros = items
                    .into_iter()
                    .map(|item| {
                        if builtin {
                            let co = Coroutine::new("_exec", exec_with_retries(node.clone_ref(py), item, true));
                            Py::new(py, co).map(Py::into_any)
                        } else {
                            let awaitable = per_item.bind(py).call1((item,))?.unbind();
                            Py::new(py, mark_parallel_item(awaitable)).map(Py::into_any)
                        }
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                registry(py)?.gather.bind(py).call1(PyTuple::new(py, coros)?).map(Bound::unbind)
            })?;
            return await_py(gather).await;
        }
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(if builtin {
                exec_with_retries(clone(&node), item, false).await?
            } else {
                let awaitable = Python::attach(|py| per_item.bind(py).call1((item,)).map(Bound::unbind))?;
                await_py(awaitable).await?
            });
        }
        Python::attach(|py| PyList::new(py, results).map(|l| l.into_any().unbind()))
    }))
}

/// `AsyncFlow._orch_async`: like `Flow._orch`, awaiting `AsyncNode`s and
/// running the other nodes in place. Nested async flows whose `_run_async` and
/// `_orch_async` are the engine's run in place too, as levels of this run (see
/// [`flows`](crate::flows)), so that deep nesting costs no native stack.
pub(crate) fn flow_orch(flow: Py<PyAny>, shared: Py<PyAny>, params: Option<Py<PyAny>>) -> Coroutine {
    let levels = AsyncLevels::default();
    let run = levels.holding(orchestrate(flow, shared, params, levels.clone()));
    Coroutine::new("_orch_async", run)
}

async fn orchestrate(
    flow: Py<PyAny>,
    shared: Py<PyAny>,
    params: Option<Py<PyAny>>,
    levels: AsyncLevels,
) -> PyResult<Py<PyAny>> {
    let mut pass = Python::attach(|py| Pass::start(flow.bind(py), params.as_ref().map(|p| p.bind(py))))?;
    // The levels around `pass`, innermost last, each with the pass it is in.
    let mut outer: Vec<(Pass, Level)> = Vec::new();
    loop {
        let step = Python::attach(|py| pass.step(py).map(|s| s.map(|(curr, plan)| (curr.unbind(), plan))))?;
        let Some((curr, plan)) = step else {
            // The pass has ended: a batch level runs its next one, or the
            // level closes and the pass around it goes on.
            let Some((around, mut level)) = outer.pop() else { return Ok(pass.last_action()) };
            if let Some(next) = Python::attach(|py| level.next_pass(py))? {
                pass = next;
                outer.push((around, level));
                continue;
            }
            let done = std::mem::replace(&mut pass, around);
            levels.leave();
            let action = close_level(level, &shared, done.last_action()).await?;
            Python::attach(|py| pass.follow(action.into_bound(py)))?;
            continue;
        };
        if let Some(nested) = plan.nested_async {
            // `await curr._run_async(shared)`, in place.
            Python::attach(|py| levels.enter(py))?;
            let prep = Python::attach(|py| call(&curr, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
            let prep_res = await_py(prep).await?;
            let opened = Python::attach(|py| Level::open(curr.bind(py), nested, prep_res.into_bound(py)))?;
            match opened {
                (level, Some(inner)) => outer.push((std::mem::replace(&mut pass, inner), level)),
                (level, None) => {
                    levels.leave();
                    let action = close_level(level, &shared, Python::attach(|py| py.None())).await?;
                    Python::attach(|py| pass.follow(action.into_bound(py)))?;
                }
            }
            continue;
        }
        let action = if !plan.is_async {
            Python::attach(|py| curr.bind(py).call_method1(intern!(py, "_run"), (shared.bind(py),)).map(Bound::unbind))?
        } else if plan.own_run_async {
            run_node(clone(&curr), clone(&shared), plan.own_async_exec).await?
        } else {
            await_py(Python::attach(|py| call(&curr, intern!(py, "_run_async"), (shared.clone_ref(py),)))?).await?
        };
        Python::attach(|py| pass.follow(action.into_bound(py)))?;
    }
}

/// `await self.post_async(shared, prep_res, o)` of a level run in place.
async fn close_level(level: Level, shared: &Py<PyAny>, last_action: Py<PyAny>) -> PyResult<Py<PyAny>> {
    let post =
        Python::attach(|py| level.close(intern!(py, "post_async"), shared.bind(py), last_action).map(Bound::unbind))?;
    await_py(post).await
}

/// `AsyncFlow._run_async`: `prep_async`, `_orch_async`, `post_async`.
pub(crate) fn flow_run(flow: Py<PyAny>, shared: Py<PyAny>) -> Coroutine {
    Coroutine::new("_run_async", async move {
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
pub(crate) fn batch_flow_run(flow: Py<PyAny>, shared: Py<PyAny>, parallel: bool) -> Coroutine {
    Coroutine::new("_run_async", async move {
        let prep = Python::attach(|py| call(&flow, intern!(py, "prep_async"), (shared.clone_ref(py),)))?;
        let pr = await_py(prep).await?;
        let pr = Python::attach(|py| {
            let pr = pr.into_bound(py);
            PyResult::Ok(if truthy(&pr)? { pr.unbind() } else { PyList::empty(py).into_any().unbind() })
        })?;
        if parallel {
            let gather = Python::attach(|py| {
                let coros = pr
                    .bind(py)
                    .try_iter()?
                    .map(|bp| {
                        let m = merged(flow.bind(py), &bp?)?;
                        call(&flow, intern!(py, "_orch_async"), (shared.clone_ref(py), m))
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                registry(py)?.gather.bind(py).call1(PyTuple::new(py, coros)?).map(Bound::unbind)
            })?;
            await_py(gather).await?;
        } else {
            // Params are merged one at a time, as each run starts.
            let iter = Python::attach(|py| pr.bind(py).try_iter().map(|i| i.into_any().unbind()))?;
            loop {
                let orch = Python::attach(|py| {
                    let Some(bp) = iter.bind(py).cast::<pyo3::types::PyIterator>()?.clone().next() else {
                        return PyResult::Ok(None);
                    };
                    let m = merged(flow.bind(py), &bp?)?;
                    Ok(Some(call(&flow, intern!(py, "_orch_async"), (shared.clone_ref(py), m))?))
                })?;
                let Some(orch) = orch else { break };
                await_py(orch).await?;
            }
        }
        let post = Python::attach(|py| call(&flow, intern!(py, "post_async"), (shared, pr, py.None())))?;
        await_py(post).await
    })
}
