//! `node - "action"`: the half-built edge that `>> target` completes.

use pyo3::intern;
use pyo3::prelude::*;

/// `src - action`, waiting for `>> target`.
#[pyclass(module = "minllm._minllm", name = "_ConditionalTransition")]
pub(crate) struct ConditionalTransition {
    #[pyo3(get)]
    src: Py<PyAny>,
    #[pyo3(get)]
    action: Py<PyAny>,
}

impl ConditionalTransition {
    pub(crate) fn new(src: Py<PyAny>, action: Py<PyAny>) -> Self {
        ConditionalTransition { src, action }
    }
}

#[pymethods]
impl ConditionalTransition {
    #[new]
    fn py_new(src: Py<PyAny>, action: Py<PyAny>) -> Self {
        ConditionalTransition { src, action }
    }

    /// Adds the edge and returns `target`, so that chains continue from it.
    fn __rshift__<'py>(&self, py: Python<'py>, target: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.src.bind(py).call_method1(intern!(py, "next"), (target, self.action.bind(py)))
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.src)?;
        visit.call(&self.action)
    }
}
