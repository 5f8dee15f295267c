//! Procedural macros of [minllm](https://docs.rs/minllm): the flow compiler.
//!
//! Use them through the `minllm` crate, which re-exports them: `minllm::flow!`,
//! `#[minllm::node]` and `#[derive(minllm::Action)]`. Their documentation is there.

mod action;
mod errors;
mod flow;
mod node;

use proc_macro::TokenStream;

/// Implements `minllm::Action` for an enum. See `minllm::Action`.
#[proc_macro_derive(Action, attributes(action))]
pub fn derive_action(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    action::derive(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Implements a node trait from the `prep`, `exec`, `exec_fallback` and `post`
/// methods of an impl block. See `minllm::node`.
#[proc_macro_attribute]
pub fn node(args: TokenStream, input: TokenStream) -> TokenStream {
    node::node(args.into(), input.into()).into()
}

/// Declares a flow checked at compile time. See `minllm::flow`.
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    flow::flow(input.into()).into()
}
