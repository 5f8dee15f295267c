//! Integration tests live in `tests/`; what several of them share lives here.

pub mod bench_flow;
pub mod restate;
