//! `#[node]`: its options and the shape of the hook methods it finds.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, PatType, ReturnType, Type};

use crate::errors::Errors;

/// How the node's items run, for batch nodes.
#[derive(Clone, Copy)]
pub(crate) enum Batching {
    None,
    Sequential,
    /// `parallel` (threads) or `concurrent` (futures); the keyword's span.
    Parallel(Span),
}

/// The options of `#[node(...)]`.
pub(crate) struct Options {
    pub(crate) attempts: Option<Expr>,
    pub(crate) wait: Option<Expr>,
    pub(crate) batching: Batching,
    /// `parallel` or `concurrent`, as written.
    pub(crate) parallel_word: Option<Ident>,
    pub(crate) limit: Option<Expr>,
    /// `blocking = <bool>`: whether a sync node's `exec` may block.
    pub(crate) blocking: Option<Expr>,
}

const OPTIONS: &str = "`attempts = N`, `wait = <Duration>`, `wait_ms = N`, `batch`, `parallel`, `concurrent`, `limit = N`, `blocking = <bool>`";

impl Options {
    pub(crate) fn parse(args: proc_macro2::TokenStream, errors: &mut Errors) -> Options {
        let mut options = Options {
            attempts: None,
            wait: None,
            batching: Batching::None,
            parallel_word: None,
            limit: None,
            blocking: None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut unknown: Vec<syn::Error> = Vec::new();
        let parser = syn::meta::parser(|meta| {
            let Some(ident) = meta.path.get_ident().cloned() else {
                return Err(meta.error(format!("unknown option; expected one of {OPTIONS}")));
            };
            let name = ident.to_string();
            let canonical = if name == "wait_ms" { "wait".to_owned() } else { name.clone() };
            if seen.contains(&canonical) {
                return Err(meta.error(format!("option `{name}` is given twice")));
            }
            seen.push(canonical);
            match name.as_str() {
                "attempts" => options.attempts = Some(meta.value()?.parse()?),
                "wait" => options.wait = Some(meta.value()?.parse()?),
                "wait_ms" => {
                    let ms: Expr = meta.value()?.parse()?;
                    options.wait =
                        Some(syn::parse_quote_spanned!(ms.span()=> ::core::time::Duration::from_millis(#ms)));
                }
                "limit" => options.limit = Some(meta.value()?.parse()?),
                "blocking" => options.blocking = Some(meta.value()?.parse()?),
                "batch" => {
                    if let Batching::None = options.batching {
                        options.batching = Batching::Sequential;
                    }
                }
                "parallel" | "concurrent" => {
                    if let Some(other) = &options.parallel_word {
                        return Err(meta.error(format!("`{name}` and `{other}` cannot both be set; keep one")));
                    }
                    options.batching = Batching::Parallel(ident.span());
                    options.parallel_word = Some(ident);
                }
                _ => {
                    const NAMES: [&str; 8] =
                        ["attempts", "wait", "wait_ms", "batch", "parallel", "concurrent", "limit", "blocking"];
                    let hint = match name.as_str() {
                        // It counts attempts, the first included, as PocketFlow's `max_retries` does.
                        "retry" | "retries" | "max_retries" | "max_attempts" | "tries" => Some("attempts"),
                        "delay" | "backoff" => Some("wait"),
                        "par" | "threads" => Some("parallel"),
                        "max_workers" | "concurrency" => Some("limit"),
                        "blocks" | "inline" | "offload" | "quick" => Some("blocking"),
                        other if crate::flow::analyze::similar(other, "retries") => Some("attempts"),
                        other => NAMES.iter().copied().find(|n| crate::flow::analyze::similar(other, n)),
                    };
                    let hint = hint.map_or_else(String::new, |h| format!(" (did you mean `{h}`?)"));
                    unknown.push(meta.error(format!("unknown option `{name}`{hint}; expected one of {OPTIONS}")));
                    // Skip its value, if any, and go on to report the others.
                    if meta.input.peek(syn::Token![=]) {
                        let _: Expr = meta.value()?.parse()?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            errors.push(e);
        }
        for e in unknown {
            errors.push(e);
        }
        if let (Some(limit), None) = (&options.limit, &options.parallel_word) {
            errors
                .at(limit, "`limit` caps a parallel batch; add `parallel` (sync nodes) or `concurrent` (async nodes)");
        }
        options
    }
}

/// A hook method found in the impl block.
pub(crate) struct Hook<'a> {
    pub(crate) func: &'a ImplItemFn,
    /// The typed parameters after `self`.
    pub(crate) params: Vec<&'a PatType>,
}

impl<'a> Hook<'a> {
    pub(crate) fn name(&self) -> &Ident {
        &self.func.sig.ident
    }

    pub(crate) fn is_async(&self) -> bool {
        self.func.sig.asyncness.is_some()
    }

    /// The value type of the hook's result (`T` of `Result<T, E>`, or the whole
    /// return type), and whether it is a `Result`.
    pub(crate) fn output(&self) -> (Type, bool) {
        match &self.func.sig.output {
            ReturnType::Default => (syn::parse_quote!(()), false),
            ReturnType::Type(_, ty) => match result_ok_type(ty) {
                Some(ok) => (ok.clone(), true),
                None => ((**ty).clone(), false),
            },
        }
    }

    /// The span to report a wrong return type on.
    pub(crate) fn output_span(&self) -> Span {
        match &self.func.sig.output {
            ReturnType::Default => self.func.sig.ident.span(),
            ReturnType::Type(_, ty) => ty.span(),
        }
    }
}

/// `T` when `ty` is `Result<T, ..>` (any path ending in `Result` or `NodeResult`).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" && last.ident != "NodeResult" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The hooks of a node impl block.
pub(crate) struct Hooks<'a> {
    /// Hooks found with an error already reported.
    pub(crate) broken: Vec<String>,
    pub(crate) prep: Option<Hook<'a>>,
    pub(crate) exec: Option<Hook<'a>>,
    pub(crate) fallback: Option<Hook<'a>>,
    pub(crate) post: Option<Hook<'a>>,
}

impl<'a> Hooks<'a> {
    pub(crate) fn find(item: &'a ItemImpl, errors: &mut Errors) -> Hooks<'a> {
        let mut hooks = Hooks { broken: Vec::new(), prep: None, exec: None, fallback: None, post: None };
        for f in item.items.iter().filter_map(|i| if let ImplItem::Fn(f) = i { Some(f) } else { None }) {
            let slot = match f.sig.ident.to_string().as_str() {
                "prep" => &mut hooks.prep,
                "exec" => &mut hooks.exec,
                "exec_fallback" => &mut hooks.fallback,
                "post" => &mut hooks.post,
                _ => continue,
            };
            match hook(f, errors) {
                Some(hook) => *slot = Some(hook),
                None => hooks.broken.push(f.sig.ident.to_string()),
            }
        }
        hooks
    }

    pub(crate) fn is_async(&self) -> bool {
        [&self.prep, &self.exec, &self.fallback, &self.post].into_iter().flatten().any(Hook::is_async)
    }
}

/// Checks the receiver and generics of a hook; returns its typed parameters.
fn hook<'a>(f: &'a ImplItemFn, errors: &mut Errors) -> Option<Hook<'a>> {
    let name = &f.sig.ident;
    let mut inputs = f.sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if matches!(r.kind, syn::ReceiverKind::Reference(_, _, None)) => {}
        Some(FnArg::Receiver(r)) => {
            errors.at(
                r,
                format!("`{name}` takes `&self`: hooks may run in parallel, so they cannot take `&mut self` or `self`"),
            );
            return None;
        }
        _ => {
            errors.at(&f.sig, format!("`{name}` must be a method taking `&self`"));
            return None;
        }
    }
    if f.sig.generics.params.iter().all(|p| matches!(p, syn::GenericParam::Lifetime(_)))
        && !f.sig.generics.params.is_empty()
    {
        errors.at(
            &f.sig.generics,
            format!(
                "`{name}` cannot borrow from its arguments: return an owned value (clone what you need from the store)"
            ),
        );
        return None;
    }
    if !f.sig.generics.params.is_empty() {
        errors.at(
            &f.sig.generics,
            format!(
                "`{name}` cannot have generic parameters of its own: a flow knows a node by its type alone; \
                 for a node that works on several stores, make the store a parameter of the node's type \
                 (`struct MyNode<S>`, `impl<S: MyTrait> MyNode<S>`)"
            ),
        );
        return None;
    }
    let params = inputs
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    Some(Hook { func: f, params })
}

/// `T` of `&T` (not `&mut T`).
pub(crate) fn shared_ref(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
        _ => None,
    }
}

/// `T` of `&mut T`.
pub(crate) fn mut_ref(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => Some(&r.elem),
        _ => None,
    }
}

/// Whether `ty` names a type whose last path segment is `name` (`ExecContext`, `Params`, ...),
/// behind a shared reference.
pub(crate) fn is_ref_to(ty: &Type, name: &str) -> bool {
    match shared_ref(ty) {
        Some(Type::Path(p)) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}

/// `T` of `Vec<T>`.
pub(crate) fn vec_item(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}
