//! What a `flow!` flow implements to be driven node by node (checkpointed and
//! streamed runs): its machine, run with a hook.

use proc_macro2::TokenStream;
use quote::quote;

use super::ast::FlowDef;

/// The `SyncMachine` or `AsyncMachine` impl of the flow.
pub(crate) fn machine_impl(def: &FlowDef, outcome: &syn::Type, cfgs: &[&syn::Attribute]) -> TokenStream {
    let FlowDef { name, generics, store, .. } = def;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let is_async = def.asyncness.is_some();
    let name_str = name.to_string();
    if is_async {
        quote! {
            #(#cfgs)*
            #[automatically_derived]
            impl #impl_generics ::minllm::__private::AsyncMachine<#store> for #name #ty_generics #where_clause {
                const NAME: &'static str = #name_str;
                type Outcome = #outcome;

                fn run_machine<'__a>(
                    &'__a self,
                    store: &'__a mut #store,
                    hook: &'__a mut ::minllm::__private::DriveHook<'_, #store>,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#outcome, ::minllm::Error>> + ::core::marker::Send + '__a {
                    async move {
                        let path = ::minllm::__private::FlowPath::root(#name_str);
                        let params = ::minllm::Params::new();
                        self.__minllm_machine::<false, _>(store, &path, &params, hook).await.map_err(|__error| *__error)
                    }
                }

                fn run_machine_in<'__a>(
                    &'__a self,
                    store: &'__a mut #store,
                    path: &'__a ::minllm::__private::FlowPath<'__a>,
                    params: &'__a ::minllm::Params,
                    hook: &'__a mut ::minllm::__private::DriveHook<'_, #store>,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<#outcome, ::minllm::Error>> + ::core::marker::Send + '__a {
                    async move {
                        self.__minllm_machine::<false, _>(store, path, params, hook).await.map_err(|__error| *__error)
                    }
                }
            }
        }
    } else {
        quote! {
            #(#cfgs)*
            #[automatically_derived]
            impl #impl_generics ::minllm::__private::SyncMachine<#store> for #name #ty_generics #where_clause {
                const NAME: &'static str = #name_str;

                fn run_machine_in(
                    &self,
                    store: &mut #store,
                    path: &::minllm::__private::FlowPath<'_>,
                    params: &::minllm::Params,
                    hook: &mut ::minllm::__private::DriveHook<'_, #store>,
                ) -> ::core::result::Result<#outcome, ::minllm::Error> {
                    self.__minllm_machine::<false, _>(store, path, params, hook)
                }
            }
        }
    }
}
