//! `#[node]`: the node trait implementation generated from the hook methods.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemImpl, Type};

use super::ast::{Batching, Hook, Hooks, Options, is_ref_to, mut_ref, shared_ref, vec_item};
use crate::errors::Errors;

/// Calls the user's hook `name` with `args`, awaiting it when it is async, and
/// turns its result into a `NodeResult`.
fn call(hook: &Hook<'_>, self_ty: &Type, args: &[TokenStream]) -> TokenStream {
    let name = hook.name();
    let span = hook.output_span();
    let mut call = quote_spanned!(span=> <#self_ty>::#name(self, #(#args),*));
    if hook.is_async() {
        call = quote_spanned!(span=> #call.await);
    }
    if hook.output().1 {
        quote_spanned!(span=> #call.map_err(::core::convert::Into::into))
    } else {
        quote_spanned!(span=> ::core::result::Result::Ok(#call))
    }
}

/// A lifetime the node type borrows with (`'static` aside), if any.
fn borrowed_lifetime(item: &ItemImpl) -> Option<syn::Lifetime> {
    if let Some(param) = item.generics.lifetimes().next() {
        return Some(param.lifetime.clone());
    }
    made_static(quote::ToTokens::to_token_stream(&item.self_ty)).1
}

/// The impl block with `'static` for every other lifetime.
fn without_lifetimes(item: &ItemImpl) -> TokenStream {
    let mut item = item.clone();
    item.generics.params =
        item.generics.params.into_iter().filter(|p| !matches!(p, syn::GenericParam::Lifetime(_))).collect();
    made_static(quote::ToTokens::to_token_stream(&item)).0
}

/// `tokens` with `'static` for every other lifetime, and the first lifetime
/// replaced.
fn made_static(tokens: TokenStream) -> (TokenStream, Option<syn::Lifetime>) {
    let mut out = Vec::new();
    let mut first = None;
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            proc_macro2::TokenTree::Punct(p) if p.as_char() == '\'' => {
                let apostrophe = p.span();
                out.push(proc_macro2::TokenTree::Punct(p));
                if let Some(proc_macro2::TokenTree::Ident(name)) = tokens.peek()
                    && name != "static"
                {
                    first.get_or_insert_with(|| syn::Lifetime { apostrophe, ident: name.clone() });
                    let name = proc_macro2::Ident::new("static", name.span());
                    tokens.next();
                    out.push(proc_macro2::TokenTree::Ident(name));
                }
            }
            proc_macro2::TokenTree::Group(g) => {
                let (inner, found) = made_static(g.stream());
                if first.is_none() {
                    first = found;
                }
                let mut group = proc_macro2::Group::new(g.delimiter(), inner);
                group.set_span(g.span());
                out.push(proc_macro2::TokenTree::Group(group));
            }
            other => out.push(other),
        }
    }
    (out.into_iter().collect(), first)
}

/// Passes `value` (of type `have`) to a parameter of type `want`, through a
/// trait whose diagnostic explains the mismatch on the user's parameter.
fn pass(check: &str, want: &Type, have: TokenStream, value: TokenStream) -> TokenStream {
    let check = syn::Ident::new(check, Span::call_site());
    quote_spanned!(want.span()=> ::minllm::__private::#check::<#want, #have>(#value))
}

pub(crate) fn expand(options: &Options, item: &ItemImpl, errors: &mut Errors) -> TokenStream {
    if let Some((path, _)) = &item.trait_ {
        errors.at(path, "`#[node]` goes on an inherent impl block (`impl MyNode { ... }`), not on a trait impl");
        return TokenStream::new();
    }
    let self_ty = &*item.self_ty;
    if !matches!(self_ty, Type::Path(p) if p.qself.is_none()) {
        errors.at(self_ty, "`#[node]` goes on the impl block of a named type: `impl MyNode { ... }`");
        return TokenStream::new();
    }
    if let Some(lifetime) = borrowed_lifetime(item) {
        errors.at(
            &lifetime,
            format!(
                "a node type cannot have a lifetime (`{lifetime}`): a flow owns its nodes and may run them on \
                 other threads, so a node owns its data (`String`, `Vec<T>`, `Arc<T>`) instead of borrowing it"
            ),
        );
        // The impl without bodies for the type made `'static`, so that a flow
        // of `Borrow<'static>` reports nothing more.
        return match syn::parse2::<ItemImpl>(without_lifetimes(item)) {
            Ok(item) if borrowed_lifetime(&item).is_none() => expand(options, &item, errors),
            _ => TokenStream::new(),
        };
    }
    let hooks = Hooks::find(item, errors);
    let is_async = hooks.is_async();
    let batch = !matches!(options.batching, Batching::None);
    if let (Batching::Parallel(span), Some(word)) = (options.batching, &options.parallel_word) {
        match (is_async, word == "parallel") {
            (true, true) => {
                errors.push(syn::Error::new(span, "async batch nodes run concurrently: write `concurrent`"))
            }
            (false, false) => errors.push(syn::Error::new(span, "sync batch nodes run on threads: write `parallel`")),
            _ => {}
        }
    }
    if let Some(blocking) = &options.blocking
        && (is_async || batch)
    {
        errors.at(
            blocking,
            "`blocking` is for sync nodes: it says whether `exec` may block an async run (an async node never does, and batch items always run off the runtime); remove it",
        );
    }

    // The store: from `prep`'s `&S`, else `post`'s `&mut S`, else any store.
    let prep_store = hooks.prep.as_ref().and_then(|p| match p.params.first() {
        Some(param) if is_ref_to(&param.ty, "Params") => {
            errors.at(&param.ty, "`prep` takes the store first: `fn prep(&self, store: &S, params: &Params)`");
            None
        }
        Some(param) => match shared_ref(&param.ty) {
            Some(s) => Some(s.clone()),
            None => {
                errors.at(&param.ty, "`prep` reads the store through a shared reference: `store: &S`");
                None
            }
        },
        None => {
            errors.at(
                &p.func.sig,
                "`prep` takes the store: `fn prep(&self, store: &S)` or `fn prep(&self, store: &S, params: &Params)`",
            );
            None
        }
    });
    let post_store = hooks.post.as_ref().and_then(|p| match p.params.first() {
        Some(param) => match mut_ref(&param.ty) {
            Some(s) => Some(s.clone()),
            None => {
                errors.at(&param.ty, "`post` writes the store through a mutable reference: `store: &mut S`");
                None
            }
        },
        None => {
            errors.at(&p.func.sig, "`post` takes the store: `fn post(&self, store: &mut S, prep: P, exec: E)`");
            None
        }
    });
    if hooks.exec.is_none() && !hooks.broken.iter().any(|h| h == "exec") {
        errors.at(
            self_ty,
            "a node needs an `exec` method, e.g. `fn exec(&self, prep: &P) -> Result<E, Error>`; \
             `prep`, `exec_fallback` and `post` are optional",
        );
    }
    let generic_store = prep_store.is_none() && post_store.is_none();
    let store: Type = prep_store.clone().or(post_store.clone()).unwrap_or_else(|| syn::parse_quote!(__MinllmStore));

    // prep: `(store)` or `(store, params)`; its value, or the items of a batch.
    let (prep_ty, prep_body) = match &hooks.prep {
        None => (syn::parse_quote!(()), quote!(::core::result::Result::Ok(()))),
        Some(p) => {
            let mut args = vec![quote!(store)];
            match p.params.len() {
                0 | 1 => {}
                2 if is_ref_to(&p.params[1].ty, "Params") => args.push(quote!(params)),
                _ => errors.at(
                    &p.func.sig.inputs,
                    "expected `fn prep(&self, store: &S)` or `fn prep(&self, store: &S, params: &Params)`",
                ),
            }
            (p.output().0, call(p, self_ty, &args))
        }
    };
    let item_ty: Type = if batch {
        match vec_item(&prep_ty) {
            Some(t) => t.clone(),
            None => {
                let at = hooks.prep.as_ref().map_or(self_ty.span(), Hook::output_span);
                errors.push(syn::Error::new(
                    at,
                    "a batch node's `prep` returns its items: `Vec<Item>` (or `Result<Vec<Item>, _>`)",
                ));
                syn::parse_quote!(())
            }
        }
    } else {
        prep_ty.clone()
    };
    let (input_word, input_check) = if batch { ("item", "exec_item") } else { ("prep", "exec_input") };
    let input_have = if batch { quote!(Self::Item) } else { quote!(Self::Prep) };

    // exec: `()`, `(input)`, `(ctx)` or `(input, ctx)`.
    let exec_ty = hooks.exec.as_ref().map_or_else(|| syn::parse_quote!(()), |e| e.output().0);
    let mut exec_args = Vec::new();
    let mut takes_input = false;
    let exec_params = hooks.exec.as_ref().map_or(&[][..], |e| &e.params[..]);
    for (i, param) in exec_params.iter().enumerate() {
        if is_ref_to(&param.ty, "ExecContext") && i == exec_params.len() - 1 {
            exec_args.push(quote!(ctx));
        } else if i == 0 {
            takes_input = true;
            match shared_ref(&param.ty) {
                Some(want) => exec_args.push(pass(input_check, want, input_have.clone(), quote!(input))),
                None => errors.at(&param.ty, format!("`exec` takes its {input_word} by reference: `{input_word}: &T`")),
            }
        } else if let Some(exec) = &hooks.exec {
            errors.at(&exec.func.sig.inputs, format!("expected `fn exec(&self, {input_word}: &T)` or `fn exec(&self, {input_word}: &T, ctx: &ExecContext)`"));
        }
    }
    let prep_missing = hooks.prep.is_none() && !hooks.broken.iter().any(|h| h == "prep");
    if takes_input && prep_missing {
        errors.at(&exec_params[0].ty, format!("`exec` takes a {input_word}, but this node has no `prep` to make it"));
    }
    let exec_body = hooks.exec.as_ref().map(|exec| call(exec, self_ty, &exec_args));

    // exec_fallback: like `exec`, with the error after the input:
    // `(error)`, `(input, error)`, `(error, ctx)` or `(input, error, ctx)`.
    let fallback = hooks.fallback.as_ref().map(|f| {
        let mut args = Vec::new();
        let with_ctx = f.params.last().is_some_and(|p| is_ref_to(&p.ty, "ExecContext"));
        let (input, error) = match (f.params.len(), with_ctx) {
            (1, false) | (2, true) => (None, Some(f.params[0])),
            (2, false) | (3, true) => (Some(f.params[0]), Some(f.params[1])),
            _ => (None, None),
        };
        match error {
            Some(error) => {
                if let Some(input) = input {
                    match shared_ref(&input.ty) {
                        Some(want) => args.push(pass(input_check, want, input_have.clone(), quote!(input))),
                        None => errors.at(&input.ty, format!("`exec_fallback` takes its {input_word} by reference: `{input_word}: &T`")),
                    }
                }
                let want = &error.ty;
                args.push(quote_spanned!(want.span()=> ::minllm::__private::fallback_error::<#want>(error)));
                if with_ctx {
                    args.push(quote!(ctx));
                }
            }
            None => errors.at(&f.func.sig.inputs, format!("expected `fn exec_fallback(&self, {input_word}: &T, error: BoxError)`; like `exec`, it may leave out the {input_word} and take `ctx: &ExecContext` last")),
        }
        call(f, self_ty, &args)
    });

    // post: `(store)`, `(store, exec)` or `(store, prep, exec)`.
    let (action_ty, post_body) = match &hooks.post {
        None => (syn::parse_quote!(()), quote!(::core::result::Result::Ok(()))),
        Some(p) => {
            let mut args = Vec::new();
            if let (Some(want), Some(_)) = (&post_store, p.params.first()) {
                if prep_store.is_some() {
                    args.push(pass("post_store", want, quote!(#store), quote!(store)));
                } else {
                    args.push(quote!(store));
                }
            }
            let (prep_word, exec_word) = if batch { ("items", "outputs") } else { ("prep", "exec") };
            let (prep_have, exec_have): (Type, Type) = if batch {
                (syn::parse_quote!(::std::vec::Vec<#item_ty>), syn::parse_quote!(::std::vec::Vec<#exec_ty>))
            } else {
                (prep_ty.clone(), exec_ty.clone())
            };
            match p.params.len() {
                0 | 1 => {}
                2 => args.push(pass("post_exec", &p.params[1].ty, quote!(#exec_have), quote!(exec))),
                3 => {
                    args.push(pass("post_prep", &p.params[1].ty, quote!(#prep_have), quote!(prep)));
                    args.push(pass("post_exec", &p.params[2].ty, quote!(#exec_have), quote!(exec)));
                }
                _ => errors.at(
                    &p.func.sig.inputs,
                    format!("expected `fn post(&self, store: &mut S, {prep_word}: P, {exec_word}: E)`; `{prep_word}` and `{exec_word}` may be left out from the left"),
                ),
            }
            (p.output().0, call(p, self_ty, &args))
        }
    };

    // A node is shared with other threads and lives as long as its flow: the
    // impl holds for the type parameters that allow it, so a `Gen<Rc<T>>` is
    // "not a node" where it is used instead of every hook failing here.
    let mut generics = item.generics.clone();
    let bounds: Vec<syn::WherePredicate> = item
        .generics
        .type_params()
        .map(|p| {
            let ident = &p.ident;
            syn::parse_quote!(#ident: ::core::marker::Send + ::core::marker::Sync + 'static)
        })
        .collect();
    generics.make_where_clause().predicates.extend(bounds);
    if generic_store {
        generics.params.push(syn::parse_quote!(__MinllmStore: ::core::marker::Send + ::core::marker::Sync + 'static));
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();

    let retry = (options.attempts.is_some() || options.wait.is_some()).then(|| {
        let attempts = options.attempts.as_ref().map_or(quote!(1), |r| quote!(#r));
        let wait = options.wait.as_ref().map_or(quote!(::core::time::Duration::ZERO), |w| quote!(#w));
        quote! {
            fn retry(&self) -> ::minllm::Retry {
                ::minllm::Retry { attempts: #attempts, wait: #wait }
            }
        }
    });
    let mode = match options.batching {
        Batching::Parallel(_) => {
            let limit = match &options.limit {
                Some(l) => quote!(::core::option::Option::Some(#l)),
                None => quote!(::core::option::Option::None),
            };
            Some(if is_async {
                quote! {
                    fn mode(&self) -> ::minllm::AsyncBatchMode {
                        ::minllm::AsyncBatchMode::Concurrent { limit: #limit }
                    }
                }
            } else {
                quote! {
                    fn mode(&self) -> ::minllm::BatchMode {
                        ::minllm::BatchMode::Parallel { threads: #limit }
                    }
                }
            })
        }
        _ => None,
    };
    let blocking = options.blocking.as_ref().filter(|_| !is_async && !batch).map(|blocking| {
        quote_spanned! {blocking.span()=>
            fn exec_blocks(&self) -> bool {
                #blocking
            }
        }
    });
    let asyncness = is_async.then(|| quote!(async));

    let (trait_name, input_assoc, output_assoc, post_params) = match (batch, is_async) {
        (false, false) => (quote!(Node), quote!(Prep), quote!(Exec), quote!(prep: Self::Prep, exec: Self::Exec)),
        (false, true) => (quote!(AsyncNode), quote!(Prep), quote!(Exec), quote!(prep: Self::Prep, exec: Self::Exec)),
        (true, false) => (
            quote!(BatchNode),
            quote!(Item),
            quote!(Output),
            quote!(prep: ::std::vec::Vec<Self::Item>, exec: ::std::vec::Vec<Self::Output>),
        ),
        (true, true) => (
            quote!(AsyncBatchNode),
            quote!(Item),
            quote!(Output),
            quote!(prep: ::std::vec::Vec<Self::Item>, exec: ::std::vec::Vec<Self::Output>),
        ),
    };
    let (input_ty, prep_ret) = if batch {
        (quote!(#item_ty), quote!(::std::vec::Vec<Self::Item>))
    } else {
        (quote!(#prep_ty), quote!(Self::Prep))
    };
    let exec_input = if batch { quote!(Self::Item) } else { quote!(Self::Prep) };
    let exec_ret = if batch { quote!(Self::Output) } else { quote!(Self::Exec) };
    // With an error reported, the impl keeps its types but not its bodies, so
    // that flows using the node do not fail too.
    let broken = !errors.is_empty();
    let stub = quote!(::core::unreachable!("this node did not compile"));
    let (prep_body, exec_body, post_body, fallback) = match exec_body {
        Some(exec_body) if !broken => (prep_body, exec_body, post_body, fallback),
        _ => (stub.clone(), stub.clone(), stub, None),
    };
    let fallback = fallback.map(|body| {
        quote! {
            #asyncness fn exec_fallback(&self, input: &#exec_input, error: ::minllm::BoxError, ctx: &::minllm::ExecContext<'_>)
                -> ::minllm::NodeResult<#exec_ret> { #body }
        }
    });

    quote! {
        #[automatically_derived]
        #[allow(unused_variables, clippy::unit_arg, clippy::needless_lifetimes, clippy::useless_conversion)]
        impl #impl_generics ::minllm::#trait_name<#store> for #self_ty #where_clause {
            type #input_assoc = #input_ty;
            type #output_assoc = #exec_ty;
            type Action = #action_ty;

            #asyncness fn prep(&self, store: &#store, params: &::minllm::Params) -> ::minllm::NodeResult<#prep_ret> {
                #prep_body
            }

            #asyncness fn exec(&self, input: &#exec_input, ctx: &::minllm::ExecContext<'_>) -> ::minllm::NodeResult<#exec_ret> {
                #exec_body
            }

            #fallback

            #asyncness fn post(&self, store: &mut #store, #post_params) -> ::minllm::NodeResult<Self::Action> {
                #post_body
            }

            #retry
            #mode
            #blocking
        }
    }
}
