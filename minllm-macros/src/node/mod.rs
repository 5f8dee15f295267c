//! `#[node]`: implements the runtime's node trait from plain hook methods.

mod ast;
mod expand;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

pub(crate) fn node(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let e = syn::Error::new(e.span(), format!("`#[node]` goes on an impl block: {e}"));
            let error = e.to_compile_error();
            return quote!(#input #error);
        }
    };
    let mut errors = Errors::default();
    let options = ast::Options::parse(args, &mut errors);
    let generated = expand::expand(&options, &item, &mut errors);
    match errors.finish() {
        // The user's impl block stays as written, errors or not, so that the rest
        // of their code (and their editor) still sees its methods.
        Ok(()) => quote!(#item #generated),
        Err(e) => {
            // `generated` is then an impl without bodies, so that a flow using
            // the node does not report it again.
            let error = e.to_compile_error();
            quote!(#item #generated #error)
        }
    }
}
