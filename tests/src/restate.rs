//! The local Restate cluster of the examples (the pinned server, workers, a
//! round-robin proxy), which the tests start too.

pub use minllm_examples::local_restate::*;
