//! Helpers shared by the examples: a stand-in for an LLM that runs offline.

pub mod llm;
