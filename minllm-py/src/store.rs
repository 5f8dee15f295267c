//! `SharedStore`: a mapping to use as `shared`, like a dict.

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList, PyTuple};

/// A mutable mapping for a flow's shared state. It behaves like a `dict`
/// (`store[key]`, `get`, `in`, `keys`, `items`, `update`, ...) and adds
/// `set(key, value)`. Each operation is atomic, so hooks running on threads
/// (`ParallelBatchNode`, `ParallelBatchFlow`) can share it.
#[pyclass(module = "minllm", name = "SharedStore", mapping)]
pub(crate) struct SharedStore {
    data: Py<PyDict>,
}

#[pymethods]
impl SharedStore {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let data = py.get_type::<PyDict>().call(args, kwargs)?.cast_into::<PyDict>()?.unbind();
        Ok(SharedStore { data })
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.data.bind(py).get_item(&key)?.ok_or_else(|| PyKeyError::new_err(key.unbind()))
    }

    fn __setitem__(&self, py: Python<'_>, key: Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
        self.data.bind(py).set_item(key, value)
    }

    fn __delitem__(&self, py: Python<'_>, key: Bound<'_, PyAny>) -> PyResult<()> {
        self.data.bind(py).del_item(key)
    }

    fn __contains__(&self, py: Python<'_>, key: Bound<'_, PyAny>) -> PyResult<bool> {
        self.data.bind(py).contains(key)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        self.data.bind(py).keys().try_iter()
    }

    fn __eq__(&self, py: Python<'_>, other: Bound<'_, PyAny>) -> PyResult<bool> {
        match other.cast::<SharedStore>() {
            Ok(store) => self.data.bind(py).eq(store.borrow().data.bind(py)),
            Err(_) => self.data.bind(py).eq(other),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("SharedStore({})", self.data.bind(py).repr()?))
    }

    /// The value under `key`, or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.data.bind(py).get_item(key)?.unwrap_or_else(|| default.unwrap_or_else(|| py.None().into_bound(py))))
    }

    /// Stores `value` under `key`.
    fn set(&self, py: Python<'_>, key: Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
        self.data.bind(py).set_item(key, value)
    }

    fn keys<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).keys()
    }

    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).values()
    }

    fn items<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.data.bind(py).items()
    }

    /// Removes `key` and returns its value (or `default`; `KeyError` without one).
    #[pyo3(signature = (key, default = None))]
    fn pop<'py>(
        &self,
        py: Python<'py>,
        key: Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = self.data.bind(py);
        match data.get_item(&key)? {
            Some(value) => {
                data.del_item(&key)?;
                Ok(value)
            }
            None => default.ok_or_else(|| PyKeyError::new_err(key.unbind())),
        }
    }

    /// Removes and returns the last `(key, value)` pair added, as `dict.popitem`.
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.data.bind(py).call_method0("popitem")
    }

    /// The value under `key`, first storing `default` when the key is missing.
    #[pyo3(signature = (key, default = None))]
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = self.data.bind(py);
        if let Some(value) = data.get_item(&key)? {
            return Ok(value);
        }
        let value = default.unwrap_or_else(|| py.None().into_bound(py));
        data.set_item(&key, &value)?;
        Ok(value)
    }

    /// Like `dict.update`.
    #[pyo3(signature = (*args, **kwargs))]
    fn update(&self, py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        self.data.bind(py).call_method("update", args, kwargs).map(drop)
    }

    fn clear(&self, py: Python<'_>) {
        self.data.bind(py).clear();
    }

    /// A plain `dict` with the same items.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.data.bind(py).copy()
    }

    /// A new store with the same items (a shallow copy, as `dict.copy`).
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        Ok(SharedStore { data: self.data.bind(py).copy()?.unbind() })
    }

    /// Pickling and `copy`: an empty store, then its items one by one, as for a
    /// dict, so that a store that contains itself copies and pickles too.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let items = slf.borrow().data.bind(py).items().try_iter()?;
        (slf.get_type(), PyTuple::empty(py), py.None(), py.None(), items).into_pyobject(py)
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.data)
    }
}
