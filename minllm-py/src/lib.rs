//! The Python package `minllm`: the classes of MinLLM/PocketFlow on a Rust
//! engine. The Python side (`python/minllm/__init__.py`) declares the classes
//! with the original's hierarchy; their orchestration methods are the Rust
//! ones here.

mod asyncs;
mod bridge;
mod copies;
mod core;
mod depth;
mod durable;
mod flows;
mod graph;
mod registry;
mod retries;
mod settings;
mod store;
mod threads;

use pyo3::prelude::*;

#[pymodule(name = "_minllm", gil_used = true)]
fn minllm_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<core::NodeCore>()?;
    m.add_class::<store::SharedStore>()?;
    m.add_class::<bridge::Coroutine>()?;
    m.add("FlowError", py.get_type::<core::FlowError>())?;
    m.add("CheckpointError", py.get_type::<durable::CheckpointError>())?;
    m.add_class::<durable::Checkpoints>()?;
    m.add_class::<durable::HeldRun>()?;
    m.add_class::<durable::Steps>()?;
    m.add_function(wrap_pyfunction!(registry::_register, m)?)?;
    m.add_function(wrap_pyfunction!(settings::_check_setting, m)?)?;
    m.add_function(wrap_pyfunction!(graph::_node_names, m)?)?;
    m.add_function(wrap_pyfunction!(threads::_on_threads, m)?)?;
    m.add_function(wrap_pyfunction!(asyncs::_mark_parallel_item, m)?)?;
    Ok(())
}
