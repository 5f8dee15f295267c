//! Sync flow runs (`Flow._orch`): one loop follows the actions of a flow and
//! of every flow nested in it whose `_run` and `_orch` are the engine's own.
//! Those nested flows are levels on an explicit stack, not native calls, so a
//! flow nested thousands of levels deep runs without exhausting the thread's
//! stack (see [`depth`](crate::depth)).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PyString};

use crate::core::{
    Nested, Plan, Planner, attr_or_none, formatted, give_params, registry, run_node, truthy, uses, warn,
};
use crate::depth::{Levels, check_stack};
use crate::settings::StepCounter;

/// One pass of a flow over its nodes, as `Flow._orch` and
/// `AsyncFlow._orch_async` make it.
pub(crate) struct Pass {
    flow: Py<PyAny>,
    params: Py<PyAny>,
    planner: Planner,
    steps: StepCounter,
    next: NextNode,
    /// The node copy to run next and its plan; the pass ends when it is falsy.
    curr: Py<PyAny>,
    plan: Plan,
    last_action: Py<PyAny>,
}

impl Pass {
    /// `curr, p = copy.copy(self.start_node), (params or {**self.params})`.
    pub(crate) fn start(flow: &Bound<'_, PyAny>, params: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let py = flow.py();
        let start = start_of(flow)?;
        let params = pass_params(flow, params)?.unbind();
        let (steps, next) = (StepCounter::new(flow)?, NextNode::of(flow)?);
        let mut planner = Planner::default();
        let (curr, plan) = match start {
            Some(start) => planner.copy(&start).map(|(c, plan)| (c.unbind(), plan))?,
            None => (py.None(), Plan::default()),
        };
        Ok(Pass { flow: flow.clone().unbind(), params, planner, steps, next, curr, plan, last_action: py.None() })
    }

    /// The node to run next, counted as a step and given the pass's params;
    /// `None` when the pass has ended.
    pub(crate) fn step<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, Plan)>> {
        let curr = self.curr.bind(py);
        if !truthy(curr)? {
            return Ok(None);
        }
        self.steps.enter(curr)?;
        give_params(curr, self.plan, self.params.bind(py))?;
        Ok(Some((curr.clone(), self.plan)))
    }

    /// Moves on from the current node, which returned `action`.
    pub(crate) fn follow(&mut self, action: Bound<'_, PyAny>) -> PyResult<()> {
        let py = action.py();
        let following = self.next.after(self.flow.bind(py), self.curr.bind(py), &action)?;
        self.last_action = action.unbind();
        (self.curr, self.plan) = if following.is_none() {
            (following.unbind(), Plan::default())
        } else {
            self.planner.copy(&following).map(|(c, plan)| (c.unbind(), plan))?
        };
        Ok(())
    }

    /// What the pass's last node returned (`None` before any ran).
    pub(crate) fn last_action(self) -> Py<PyAny> {
        self.last_action
    }
}

/// A nested flow run in place of `curr._run(shared)` (or `_run_async`): what
/// its `_run` does around its passes.
pub(crate) struct Level {
    flow: Py<PyAny>,
    prep_res: Py<PyAny>,
    /// For a batch flow, the params sets still to run.
    batch: Option<Py<PyIterator>>,
}

impl Level {
    /// The level of `flow`, whose `prep` returned `prep_res`, and its first
    /// pass (`None` when a batch flow has no params set to run).
    pub(crate) fn open(
        flow: &Bound<'_, PyAny>,
        nested: Nested,
        prep_res: Bound<'_, PyAny>,
    ) -> PyResult<(Self, Option<Pass>)> {
        let py = flow.py();
        if nested == Nested::Flow {
            let pass = Pass::start(flow, None)?;
            return Ok((Level { flow: flow.clone().unbind(), prep_res: prep_res.unbind(), batch: None }, Some(pass)));
        }
        // `pr = self.prep(shared) or []`, run one params set at a time.
        let prep_res = if truthy(&prep_res)? { prep_res } else { PyList::empty(py).into_any() };
        let batch = Some(prep_res.try_iter()?.unbind());
        let mut level = Level { flow: flow.clone().unbind(), prep_res: prep_res.unbind(), batch };
        let pass = level.next_pass(py)?;
        Ok((level, pass))
    }

    /// A batch flow's next pass: `self._orch(shared, {**self.params, **bp})`.
    pub(crate) fn next_pass(&mut self, py: Python<'_>) -> PyResult<Option<Pass>> {
        let Some(batch) = self.batch.as_ref() else { return Ok(None) };
        match batch.bind(py).clone().next() {
            Some(bp) => {
                let flow = self.flow.bind(py);
                Ok(Some(Pass::start(flow, Some(&merged(flow, &bp?)?))?))
            }
            None => Ok(None),
        }
    }

    /// Ends the level: calls the flow's `post` (`name`, `post` or
    /// `post_async`) with `(shared, prep_res, o)`, where `o` is what its pass
    /// ended with (`None` for a batch flow), and returns what it returns.
    pub(crate) fn close<'py>(
        self,
        name: &Bound<'py, PyString>,
        shared: &Bound<'py, PyAny>,
        last_action: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = shared.py();
        let o = if self.batch.is_some() { py.None() } else { last_action };
        self.flow.bind(py).call_method1(name, (shared, self.prep_res.bind(py), o))
    }
}

/// `flow._orch(shared, params)`: runs one pass of `flow`, and of the flows
/// nested in it in place, and returns the last action.
pub(crate) fn orchestrate<'py>(
    flow: &Bound<'py, PyAny>,
    shared: &Bound<'py, PyAny>,
    params: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    check_stack()?;
    let py = flow.py();
    let mut pass = Pass::start(flow, params)?;
    // The levels around `pass`, innermost last, each with the pass it is in.
    let mut outer: Vec<(Pass, Level)> = Vec::new();
    let mut levels = Levels::default();
    loop {
        let Some((curr, plan)) = pass.step(py)? else {
            // The pass has ended: a batch level runs its next one, or the
            // level closes and the pass around it goes on.
            let Some((around, mut level)) = outer.pop() else { return Ok(pass.last_action().into_bound(py)) };
            if let Some(next) = level.next_pass(py)? {
                pass = next;
                outer.push((around, level));
                continue;
            }
            let done = std::mem::replace(&mut pass, around);
            levels.leave();
            pass.follow(level.close(intern!(py, "post"), shared, done.last_action())?)?;
            continue;
        };
        let Some(nested) = plan.nested else {
            pass.follow(run_node(&curr, plan, shared)?)?;
            continue;
        };
        // `curr._run(shared)`, in place.
        levels.enter(py)?;
        let prep_res = curr.call_method1(intern!(py, "prep"), (shared,))?;
        match Level::open(&curr, nested, prep_res)? {
            (level, Some(inner)) => outer.push((std::mem::replace(&mut pass, inner), level)),
            (level, None) => {
                levels.leave();
                pass.follow(level.close(intern!(py, "post"), shared, py.None())?)?;
            }
        }
    }
}

// ---- following edges, and the params of a pass ----

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

/// The start node of a flow (`None` when unset).
pub(crate) fn start_of<'py>(flow: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    attr_or_none(flow, intern!(flow.py(), "start_node"))
}
