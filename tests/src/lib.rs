//! Integration tests live in `tests/`; what several of them share lives here.

pub mod restate;
