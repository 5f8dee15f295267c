//! Helpers shared by the examples: a stand-in for an LLM that runs offline, and
//! a client for a real one (OpenAI-compatible APIs, configured from the
//! environment: see [`client::Config`]). Example code to copy, not part of
//! minllm, which has no model client of its own.

pub mod client;
pub mod embed;
pub mod llm;
pub mod local_restate;
pub mod model;
