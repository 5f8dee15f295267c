//! The settings the package adds to the original's classes (`max_steps`,
//! `max_workers`): one rule for each, checked by the constructors and again
//! where a run reads the setting (it may have been set later as an attribute),
//! and the step counting that `max_steps` bounds.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::core::{FlowError, shown};

/// A setting: what it is called, its least value, and what `None` means.
#[derive(Clone, Copy)]
pub(crate) struct Setting {
    name: &'static str,
    min: u64,
    none_means: &'static str,
}

pub(crate) const MAX_STEPS: Setting = Setting { name: "max_steps", min: 0, none_means: "no limit" };
pub(crate) const MAX_WORKERS: Setting =
    Setting { name: "max_workers", min: 1, none_means: "one thread per item, up to 32" };

impl Setting {
    fn named(name: &str) -> Option<Setting> {
        [MAX_STEPS, MAX_WORKERS].into_iter().find(|s| s.name == name)
    }

    /// `value` as the setting of `owner`: `None`, or an int (not a bool) of at
    /// least `min`. Ints too large for 64 bits count as the largest one.
    pub(crate) fn check(self, owner: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let py = value.py();
        if value.is_none() {
            return Ok(None);
        }
        let Setting { name, min, none_means } = self;
        let class = owner.get_type().name().map_or_else(|_| "node".to_owned(), |n| n.to_string());
        let wrong_type = || {
            let ty = value.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "{class}.{name} must be an int or None ({none_means}), not {ty}: {}",
                shown(value)
            ))
        };
        if value.is_instance_of::<PyBool>() {
            return Err(wrong_type());
        }
        let n = match value.extract::<u64>() {
            Ok(n) => Some(n),
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => (!value.lt(0)?).then_some(u64::MAX),
            Err(e) if e.is_instance_of::<PyTypeError>(py) => return Err(wrong_type()),
            Err(e) => return Err(e),
        };
        match n {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(PyValueError::new_err(format!(
                "{class}.{name} must be {min} or more, or None ({none_means}), not {}",
                shown(value)
            ))),
        }
    }

    /// The setting as `owner` has it now (`None` when it has no such attribute).
    pub(crate) fn of(self, owner: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let py = owner.py();
        match crate::core::attr_or_none(owner, &PyString::new(py, self.name))? {
            Some(value) => self.check(owner, &value),
            None => Ok(None),
        }
    }
}

/// Checks a setting where it is made: `Flow(max_steps=...)`,
/// `ParallelBatchNode(max_workers=...)`. Returns the value unchanged.
#[pyfunction]
pub(crate) fn _check_setting<'py>(
    owner: &Bound<'py, PyAny>,
    name: &str,
    value: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let setting = Setting::named(name).ok_or_else(|| PyValueError::new_err(format!("no setting named {name}")))?;
    setting.check(owner, &value)?;
    Ok(value)
}

/// How many recent steps a step-limit error shows: as many as the runtime's.
const RECENT: usize = minllm::STEP_TRAIL;

/// Counts a flow's steps and remembers the last few node classes, for the
/// step-limit error; checks for Ctrl-C at each step.
pub(crate) struct StepCounter {
    limit: Option<u64>,
    taken: u64,
    /// The classes of the last steps that ran, oldest first.
    recent: std::collections::VecDeque<String>,
    flow: String,
    /// Steps since the GIL was last let go.
    since_yield: u32,
}

/// How many steps a flow runs between two chances for other Python threads to
/// take the GIL: a flow of built-in nodes runs no bytecode, so the interpreter
/// never hands the GIL over by itself.
const STEPS_PER_YIELD: u32 = 256;

/// Runs a line of bytecode, so that the interpreter hands the GIL to a thread
/// that asked for it, as it does between any two lines of Python. (Releasing
/// and retaking the GIL from Rust does not: each retake counts as a switch,
/// so a waiting thread never asks the holder to let go, and only wins the GIL
/// by chance, seconds later.)
fn let_other_threads_run(py: Python<'_>) -> PyResult<()> {
    static NO_OP: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    NO_OP.get_or_try_init(py, || py.eval(c"lambda: None", None, None).map(Bound::unbind))?.call0(py).map(drop)
}

impl StepCounter {
    pub(crate) fn new(flow: &Bound<'_, PyAny>) -> PyResult<Self> {
        let limit = MAX_STEPS.of(flow)?;
        let flow = flow.get_type().name()?.to_string();
        Ok(StepCounter { limit, taken: 0, recent: std::collections::VecDeque::new(), flow, since_yield: 0 })
    }

    /// The counter of a run resumed after `taken` steps.
    pub(crate) fn resumed(flow: &Bound<'_, PyAny>, taken: u64) -> PyResult<Self> {
        Ok(StepCounter { taken, ..Self::new(flow)? })
    }

    /// Counts a step into `node`, or refuses it when the limit is reached.
    /// Checks for Ctrl-C, and now and then lets other threads run.
    pub(crate) fn enter(&mut self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = node.py();
        self.since_yield += 1;
        if self.since_yield == STEPS_PER_YIELD {
            self.since_yield = 0;
            let_other_threads_run(py)?;
        }
        py.check_signals()?;
        let Some(limit) = self.limit else { return Ok(()) };
        if self.taken >= limit {
            // Worded by the runtime, as its own flows word it.
            let last = self.recent.iter().map(String::as_str);
            let error = minllm::Error::step_limit(self.flow.clone(), limit, self.taken, last);
            return Err(FlowError::new_err(error.to_string()));
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(node.get_type().name()?.to_string());
        self.taken += 1;
        Ok(())
    }
}
