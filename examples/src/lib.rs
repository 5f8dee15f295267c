//! Helpers shared by the examples: a stand-in for an LLM that runs offline, and
//! a small client for a real one (OpenAI-compatible servers).

pub mod client;
pub mod llm;
