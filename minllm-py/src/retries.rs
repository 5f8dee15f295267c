//! Retries of a Python node's `exec`, as the original makes them: attempts
//! `wait` seconds apart (Ctrl-C ends a wait), `cur_retry` noted per attempt
//! (per item when items share the node), then `exec_fallback` inside
//! `except`, with the last exception.

use std::time::Duration;

use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::{ffi, intern};

use crate::core::{dict_of, plain_setattr, registry};

/// Runs `f` as if inside `except exc:`: `sys.exc_info()` gives `exc`, and an
/// exception raised meanwhile gets it as its `__context__`.
pub(crate) fn handling<R>(exc: &Bound<'_, PyAny>, f: impl FnOnce() -> R) -> R {
    let py = exc.py();
    let ty = exc.get_type().into_any().unbind();
    let tb = exc.getattr(intern!(py, "__traceback__")).map(Bound::unbind).unwrap_or_else(|_| py.None());
    let (mut old_ty, mut old_value, mut old_tb) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the GIL is held. `PyErr_GetExcInfo` hands out new references to
    // the current handled exception; `PyErr_SetExcInfo` steals the references it
    // is given, so each pointer passed to it is owned (`into_ptr`) or was
    // obtained from `PyErr_GetExcInfo` and is passed back exactly once.
    #[allow(unsafe_code)]
    unsafe {
        ffi::PyErr_GetExcInfo(&mut old_ty, &mut old_value, &mut old_tb);
        ffi::PyErr_SetExcInfo(ty.into_ptr(), exc.clone().into_ptr(), tb.into_ptr());
    }
    let result = f();
    // SAFETY: as above; restores the saved handled exception.
    #[allow(unsafe_code)]
    unsafe {
        ffi::PyErr_SetExcInfo(old_ty, old_value, old_tb);
    }
    result
}

/// Sleeps `seconds` with the GIL released, ending at once on Ctrl-C: the
/// runtime's wait between attempts, stopped by a pending signal.
pub(crate) fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    if seconds.is_nan() || seconds <= 0.0 {
        return Ok(());
    }
    let wait = Duration::from_secs_f64(seconds.min(1e9));
    let mut interrupt = None;
    py.detach(|| {
        minllm::__private::wait_between_attempts(wait, || match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(e) => {
                interrupt = Some(e);
                true
            }
        })
    });
    interrupt.map_or(Ok(()), Err)
}

thread_local! {
    /// Set on the worker threads of parallel batches, whose items share a node.
    pub(crate) static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes attempt `attempt` of the node's `exec` as `self.cur_retry`, as the
/// original does. When items that share the node run at the same time
/// (`concurrent`), also in a context variable that `cur_retry` reads first, so
/// each item sees its own count; returns the token that undoes that.
pub(crate) fn set_attempt<'py>(
    node: &Bound<'py, PyAny>,
    attempt: i64,
    concurrent: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = node.py();
    if plain_setattr(node) {
        dict_of(node)?.set_item(intern!(py, "cur_retry"), attempt)?;
    } else {
        node.setattr(intern!(py, "cur_retry"), attempt)?;
    }
    if !concurrent {
        return Ok(None);
    }
    let key = (node.as_ptr() as usize, attempt);
    registry(py)?.cur_retry.bind(py).call_method1(intern!(py, "set"), (key,)).map(Some)
}

pub(crate) fn reset_attempt(node: &Bound<'_, PyAny>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = node.py();
    registry(py)?.cur_retry.bind(py).call_method1(intern!(py, "reset"), (token,)).map(drop)
}

/// `range(self.max_retries)`'s bound, as an integer (counts past 64 bits are
/// as good as endless).
pub(crate) fn attempts_of(node: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = node.py();
    let max = node.getattr(intern!(py, "max_retries"))?;
    match max.extract::<i64>() {
        Ok(n) => Ok(n),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
            Ok(if max.lt(0)? { 0 } else { i64::MAX })
        }
        Err(e) if e.is_instance_of::<PyTypeError>(py) => Err(PyTypeError::new_err(format!(
            "'{}' object cannot be interpreted as an integer",
            max.get_type().name()?
        ))),
        Err(e) => Err(e),
    }
}

/// Whether a failed attempt `attempt` is the last: `attempt == self.max_retries - 1`,
/// read again after each failure as the original does.
pub(crate) fn is_last_attempt(node: &Bound<'_, PyAny>, attempt: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = node.py();
    let max = node.getattr(intern!(py, "max_retries"))?;
    attempt.eq(max.sub(1)?)
}

/// `self.wait` if it is above zero (read after each failure).
pub(crate) fn wait_of(node: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    let py = node.py();
    let wait = node.getattr(intern!(py, "wait"))?;
    if wait.gt(0)? { Ok(Some(wait.extract::<f64>()?)) } else { Ok(None) }
}

/// `Node._exec`: attempts of `exec`, `wait` seconds apart, then `exec_fallback`
/// with the last exception.
pub(crate) fn exec_with_retries<'py>(
    node: &Bound<'py, PyAny>,
    prep_res: &Bound<'py, PyAny>,
    concurrent: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = node.py();
    let attempts = attempts_of(node)?;
    let mut token = None;
    let result = (|| {
        for attempt in 0..attempts {
            if let Some(t) = set_attempt(node, attempt, concurrent)? {
                token.get_or_insert(t);
            }
            let error = match node.call_method1(intern!(py, "exec"), (prep_res,)) {
                Ok(value) => return Ok(value),
                Err(e) if e.is_instance_of::<PyException>(py) => e.into_value(py).into_bound(py).into_any(),
                Err(e) => return Err(e),
            };
            let current = node.getattr(intern!(py, "cur_retry"))?;
            if is_last_attempt(node, &current)? {
                return handling(&error, || node.call_method1(intern!(py, "exec_fallback"), (prep_res, &error)));
            }
            if let Some(wait) = wait_of(node)? {
                sleep(py, wait)?;
            }
        }
        Ok(py.None().into_bound(py))
    })();
    if let Some(token) = token {
        reset_attempt(node, &token)?;
    }
    result
}
