//! `flow!`: parse (`ast`), check the graph (`analyze`), generate the state
//! machine (`expand`) and its diagram (`mermaid`).

pub(crate) mod analyze;
pub(crate) mod ast;
mod driven;
mod expand;
mod mermaid;

use proc_macro2::TokenStream;
use quote::quote;

use crate::errors::Errors;

pub(crate) fn flow(input: TokenStream) -> TokenStream {
    let def: ast::FlowDef = match syn::parse2(input) {
        Ok(def) => def,
        Err(e) => return e.to_compile_error(),
    };
    let chart = mermaid::mermaid(&def);
    let mut errors = Errors::default();
    match analyze::analyze(&def, &mut errors) {
        Some(model) => expand::expand(&model, &chart),
        None => {
            // Emit the struct and its methods with the errors, so that code that
            // uses the flow does not fail too.
            let outcome = def.outcome.as_ref().map_or(quote!(()), |o| quote!(#o));
            let shell = expand::shell(&def, &outcome, &chart);
            let errors = errors.finish().err().map(|e| e.to_compile_error());
            let (impl_generics, ty_generics, where_clause) = def.generics.split_for_impl();
            let (name, store) = (&def.name, &def.store);
            let (trait_path, asyncness, lifetimes) = if def.asyncness.is_some() {
                (quote!(AsyncTypedFlow), quote!(async), quote!(<'a>))
            } else {
                (quote!(TypedFlow), quote!(), quote!())
            };
            let (self_ref, store_ref, path_ref, params_ref) = if def.asyncness.is_some() {
                (
                    quote!(&'a self),
                    quote!(&'a mut #store),
                    quote!(&'a ::minllm::__private::FlowPath<'a>),
                    quote!(&'a ::minllm::Params),
                )
            } else {
                (
                    quote!(&self),
                    quote!(&mut #store),
                    quote!(&::minllm::__private::FlowPath<'_>),
                    quote!(&::minllm::Params),
                )
            };
            let cfgs = expand::cfgs(&def);
            let name_str = name.to_string();
            let machine = if def.asyncness.is_some() {
                quote! {
                    #(#cfgs)*
                    impl #impl_generics ::minllm::__private::AsyncMachine<#store> for #name #ty_generics #where_clause {
                        const NAME: &'static str = #name_str;
                        type Outcome = #outcome;
                        #[allow(unreachable_code)]
                        fn run_machine<'__a>(&'__a self, _: &'__a mut #store, _: &'__a mut ::minllm::__private::DriveHook<'_, #store>)
                            -> impl ::core::future::Future<Output = ::core::result::Result<#outcome, ::minllm::Error>> + ::core::marker::Send + '__a {
                            async { ::core::unreachable!("this flow did not compile") }
                        }
                        #[allow(unreachable_code)]
                        fn run_machine_in<'__a>(&'__a self, _: &'__a mut #store, _: &'__a ::minllm::__private::FlowPath<'__a>, _: &'__a ::minllm::Params, _: &'__a mut ::minllm::__private::DriveHook<'_, #store>)
                            -> impl ::core::future::Future<Output = ::core::result::Result<#outcome, ::minllm::Error>> + ::core::marker::Send + '__a {
                            async { ::core::unreachable!("this flow did not compile") }
                        }
                    }
                }
            } else {
                quote! {
                    #(#cfgs)*
                    impl #impl_generics ::minllm::__private::SyncMachine<#store> for #name #ty_generics #where_clause {
                        const NAME: &'static str = #name_str;
                        fn run_machine_in(&self, _: &mut #store, _: &::minllm::__private::FlowPath<'_>, _: &::minllm::Params, _: &mut ::minllm::__private::DriveHook<'_, #store>)
                            -> ::core::result::Result<#outcome, ::minllm::Error> {
                            ::core::unreachable!("this flow did not compile")
                        }
                    }
                }
            };
            quote! {
                #shell
                #machine
                #(#cfgs)*
                impl #impl_generics ::minllm::__private::#trait_path<#store> for #name #ty_generics #where_clause {
                    type Outcome = #outcome;
                    const MERMAID: &'static str = "";
                    #asyncness fn run_in #lifetimes(#self_ref, _: #store_ref, _: #path_ref, _: #params_ref)
                        -> ::core::result::Result<#outcome, ::minllm::Error> {
                        ::core::unreachable!("this flow did not compile")
                    }
                }
                #errors
            }
        }
    }
}
