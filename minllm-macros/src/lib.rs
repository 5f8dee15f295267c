//! Procedural macros of [minllm](https://docs.rs/minllm): the flow compiler.
//!
//! Use them through the `minllm` crate, which re-exports them.
