//! The checkpoint backends for Python (`minllm.SqliteCheckpointer`,
//! `minllm.MemoryCheckpointer`): the runtime crate's own, so that one
//! implementation of each backend serves both languages. The Python driver
//! (`python/minllm/_driver.py`, `_plain.py`) encodes values as plain data (JSON bytes)
//! and hands them here; nothing here ever builds a Python object from stored
//! bytes but `bytes`, `str` and numbers.

use std::sync::Arc;

use minllm::durable::{
    Checkpoint, CheckpointError as RustCheckpointError, CheckpointInfo, Checkpointer, Field, MemoryCheckpointer,
    RunLock, SqliteCheckpointer, Status,
};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::core::FlowError;
use crate::settings::StepCounter;

pyo3::create_exception!(
    _minllm,
    CheckpointError,
    FlowError,
    "A checkpoint backend failed: a damaged or foreign database, a run held by another process, I/O."
);

fn error(e: RustCheckpointError) -> PyErr {
    CheckpointError::new_err(e.to_string())
}

/// A checkpoint backend, for the Python driver.
#[pyclass(frozen, module = "minllm._minllm", name = "_Checkpoints")]
pub(crate) struct Checkpoints {
    inner: Arc<dyn Checkpointer>,
}

/// A run's lock, held until `release` (or until the object goes away).
#[pyclass(module = "minllm._minllm", name = "_RunLock")]
pub(crate) struct HeldRun(Mutex<Option<RunLock>>);

#[pymethods]
impl HeldRun {
    fn release(&self) {
        self.0.lock().take();
    }
}

#[pymethods]
impl Checkpoints {
    #[staticmethod]
    fn sqlite(py: Python<'_>, path: String) -> PyResult<Self> {
        let opened = py.detach(|| SqliteCheckpointer::open(&path)).map_err(error)?;
        Ok(Checkpoints { inner: Arc::new(opened) })
    }

    #[staticmethod]
    fn memory() -> Self {
        Checkpoints { inner: Arc::new(MemoryCheckpointer::new()) }
    }

    fn lock(&self, py: Python<'_>, run: String) -> PyResult<HeldRun> {
        let lock = py.detach(|| self.inner.lock(&run)).map_err(error)?;
        Ok(HeldRun(Mutex::new(Some(lock))))
    }

    /// Writes a checkpoint; `fields` maps names to JSON bytes, or to `None` for
    /// a field unchanged since the parent.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (run, seq, parent, visit, path, steps, status, detail, answers, fields))]
    fn put(
        &self,
        py: Python<'_>,
        run: String,
        seq: u64,
        parent: Option<u64>,
        visit: u64,
        path: Vec<String>,
        steps: Vec<u64>,
        status: &str,
        detail: Option<Vec<u8>>,
        answers: Vec<Vec<u8>>,
        fields: Vec<(String, Option<Vec<u8>>)>,
    ) -> PyResult<()> {
        let detail = detail.unwrap_or_default();
        let status = match status {
            "running" => Status::Running,
            "paused" => Status::Paused { question: detail },
            "finished" => Status::Finished { action: String::from_utf8_lossy(&detail).into_owned() },
            other => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown status {other}"))),
        };
        let fields = fields.into_iter().map(|(n, v)| (n, v.map_or(Field::Unchanged, Field::Value))).collect();
        let checkpoint = Checkpoint::new(seq, parent, visit, path, steps, status, answers, fields, minllm_now_ms());
        py.detach(|| self.inner.put(&run, &checkpoint)).map_err(error)
    }

    fn put_exec(&self, py: Python<'_>, run: String, visit: u64, key: String, value: Vec<u8>) -> PyResult<()> {
        py.detach(|| self.inner.put_exec(&run, visit, &key, &value)).map_err(error)
    }

    /// `put` of the checkpoint given as `staged` (the arguments of `put` but
    /// the run), if any, and `put_exec`, at once.
    #[allow(clippy::type_complexity)]
    fn put_with_exec(
        &self,
        py: Python<'_>,
        run: String,
        staged: Option<StagedArgs>,
        visit: u64,
        key: String,
        value: Vec<u8>,
    ) -> PyResult<()> {
        let checkpoint = staged.map(checkpoint_of).transpose()?;
        py.detach(|| self.inner.put_with_exec(&run, checkpoint.as_ref(), visit, &key, &value)).map_err(error)
    }

    fn get_exec<'py>(
        &self,
        py: Python<'py>,
        run: String,
        visit: u64,
        key: String,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let found = py.detach(|| self.inner.get_exec(&run, visit, &key)).map_err(error)?;
        Ok(found.map(|b| PyBytes::new(py, &b)))
    }

    /// Checkpoint `seq` (the newest when `None`) as a dict, or `None`.
    #[pyo3(signature = (run, seq=None))]
    fn get<'py>(&self, py: Python<'py>, run: String, seq: Option<u64>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let found = py
            .detach(|| match seq {
                Some(seq) => self.inner.get(&run, seq),
                None => self.inner.latest(&run),
            })
            .map_err(error)?;
        found.map(|c| checkpoint_dict(py, &c)).transpose()
    }

    fn history<'py>(&self, py: Python<'py>, run: String) -> PyResult<Bound<'py, PyList>> {
        let list = py.detach(|| self.inner.history(&run)).map_err(error)?;
        let dicts = list.iter().map(|c| info_dict(py, c)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, dicts)
    }
}

/// The step limit of a flow in the Python driver: the engine's counter, its
/// error text and its Ctrl-C check.
#[pyclass(module = "minllm._minllm", name = "_Steps")]
pub(crate) struct Steps(Mutex<StepCounter>);

#[pymethods]
impl Steps {
    #[new]
    fn new(flow: &Bound<'_, PyAny>, taken: u64) -> PyResult<Self> {
        Ok(Steps(Mutex::new(StepCounter::resumed(flow, taken)?)))
    }

    fn enter(&self, node: &Bound<'_, PyAny>) -> PyResult<()> {
        self.0.lock().enter(node)
    }
}

/// A checkpoint as the driver hands it over: `put`'s arguments but the run.
type StagedArgs = (
    u64,
    Option<u64>,
    u64,
    Vec<String>,
    Vec<u64>,
    String,
    Option<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn checkpoint_of(args: StagedArgs) -> PyResult<Checkpoint> {
    let (seq, parent, visit, path, steps, status, detail, answers, fields) = args;
    let detail = detail.unwrap_or_default();
    let status = match status.as_str() {
        "running" => Status::Running,
        "paused" => Status::Paused { question: detail },
        "finished" => Status::Finished { action: String::from_utf8_lossy(&detail).into_owned() },
        other => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown status {other}"))),
    };
    let fields = fields.into_iter().map(|(n, v)| (n, v.map_or(Field::Unchanged, Field::Value))).collect();
    Ok(Checkpoint::new(seq, parent, visit, path, steps, status, answers, fields, minllm_now_ms()))
}

fn minllm_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn checkpoint_dict<'py>(py: Python<'py>, c: &Checkpoint) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("seq", c.seq)?;
    d.set_item("parent", c.parent)?;
    d.set_item("visit", c.visit)?;
    d.set_item("path", &c.path)?;
    d.set_item("steps", &c.steps)?;
    let (status, detail): (&str, Option<Vec<u8>>) = match &c.status {
        Status::Running => ("running", None),
        Status::Paused { question } => ("paused", Some(question.clone())),
        Status::Finished { action } => ("finished", Some(action.as_bytes().to_vec())),
        _ => ("unknown", None),
    };
    d.set_item("status", status)?;
    d.set_item("detail", detail.map(|b| PyBytes::new(py, &b)))?;
    let answers: Vec<Bound<'py, PyBytes>> = c.answers.iter().map(|a| PyBytes::new(py, a)).collect();
    d.set_item("answers", answers)?;
    let fields = PyDict::new(py);
    for (name, field) in &c.fields {
        if let Field::Value(v) = field {
            fields.set_item(name, PyBytes::new(py, v))?;
        }
    }
    d.set_item("fields", fields)?;
    d.set_item("created_ms", c.created_ms)?;
    Ok(d)
}

fn info_dict<'py>(py: Python<'py>, c: &CheckpointInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("seq", c.seq)?;
    d.set_item("parent", c.parent)?;
    d.set_item("step", c.step)?;
    d.set_item("node", &c.node)?;
    d.set_item("status", c.status)?;
    d.set_item("created_ms", c.created_ms)?;
    Ok(d)
}
