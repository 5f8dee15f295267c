//! `flow!`'s grammar: one struct per production, each with a `Parse` impl that
//! keeps the user's tokens for error spans.
//!
//! ```text
//! flow      := attr* vis? "async"? "struct" IDENT generics? ":" TYPE ("->" TYPE)? where? "{" (attr* stmt)* "}"
//! stmt      := "node" IDENT ":" TYPE ("=" EXPR)? ";"
//!            | "start" IDENT ";"
//!            | "max_steps" EXPR ";"
//!            | IDENT link+ ";"
//! link      := ("-" PATH)? ">>" target
//! target    := IDENT | "end" ("(" EXPR ")")?
//! ```
//!
//! Doc comments may go on every statement; other attributes only on `node`
//! declarations, where they go on the node's field.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Expr, Generics, Ident, Path, Token, Type, Visibility, braced, parenthesized};

pub(crate) mod kw {
    syn::custom_keyword!(node);
    syn::custom_keyword!(start);
    syn::custom_keyword!(max_steps);
    syn::custom_keyword!(end);
}

/// Words with a meaning in the DSL, which cannot name nodes.
pub(crate) const KEYWORDS: [&str; 4] = ["node", "start", "max_steps", "end"];

/// A whole `flow!` invocation.
pub(crate) struct FlowDef {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) asyncness: Option<Token![async]>,
    pub(crate) name: Ident,
    pub(crate) generics: Generics,
    pub(crate) store: Type,
    pub(crate) outcome: Option<Type>,
    pub(crate) nodes: Vec<NodeDecl>,
    pub(crate) starts: Vec<Start>,
    pub(crate) max_steps: Vec<(kw::max_steps, Expr)>,
    pub(crate) edges: Vec<Edge>,
    /// The doc comments of the `max_steps` statements.
    pub(crate) max_steps_docs: Vec<String>,
}

/// `node name: Type = init;` (`= _`: an argument of `new`)
pub(crate) struct NodeDecl {
    /// The attributes other than doc comments, for the node's field.
    pub(crate) attrs: Vec<Attribute>,
    /// The doc comment's lines.
    pub(crate) docs: Vec<String>,
    pub(crate) name: Ident,
    pub(crate) ty: Type,
    pub(crate) init: Option<Expr>,
}

impl NodeDecl {
    /// Whether the node is given to `new` (`node name: Type = _;`).
    pub(crate) fn is_given(&self) -> bool {
        matches!(self.init, Some(Expr::Infer(_)))
    }
}

/// `start name;`
pub(crate) struct Start {
    pub(crate) name: Ident,
    pub(crate) docs: Vec<String>,
}

/// One edge: `from - action >> to`.
pub(crate) struct Edge {
    /// The doc comment of the statement, on the first edge of a chain.
    pub(crate) docs: Vec<String>,
    pub(crate) from: Ident,
    pub(crate) action: Option<Path>,
    /// The `>>` token, where a default edge's errors go.
    pub(crate) arrow: Token![>>],
    pub(crate) to: Target,
}

/// Where an edge leads.
// A handful per flow, parsed once: their size does not matter (it grows when
// the unit tests turn on proc-macro2's span locations).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Node(Ident),
    End { keyword: kw::end, value: Option<Expr> },
}

impl Edge {
    /// The span that stands for this edge's action in errors.
    pub(crate) fn action_span(&self) -> Span {
        match &self.action {
            Some(path) => syn::spanned::Spanned::span(path),
            None => self.arrow.spans[0],
        }
    }
}

impl Parse for FlowDef {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let asyncness: Option<Token![async]> = input.parse()?;
        if !input.peek(Token![struct]) {
            return Err(input.error(
                "expected `struct`: a flow is declared as `pub struct Name: Store { ... }` (or `async struct` when a node is async)",
            ));
        }
        input.parse::<Token![struct]>()?;
        let name: Ident = input.parse()?;
        let mut generics: Generics = input.parse()?;
        if !input.peek(Token![:]) {
            return Err(input.error(format!("expected `:` and the store type: `struct {name}: MyStore {{ ... }}`")));
        }
        input.parse::<Token![:]>()?;
        let store: Type = input.call(Type::without_plus)?;
        let outcome = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?;
            Some(input.call(Type::without_plus)?)
        } else {
            None
        };
        generics.where_clause = input.parse()?;
        let body;
        braced!(body in input);
        let mut def = FlowDef {
            attrs,
            vis,
            asyncness,
            name,
            generics,
            store,
            outcome,
            nodes: Vec::new(),
            starts: Vec::new(),
            max_steps: Vec::new(),
            edges: Vec::new(),
            max_steps_docs: Vec::new(),
        };
        while !body.is_empty() {
            let attrs = body.call(Attribute::parse_outer)?;
            if body.is_empty() {
                let last = attrs.last().map_or_else(Span::call_site, syn::spanned::Spanned::span);
                return Err(syn::Error::new(last, "expected a statement after this attribute"));
            }
            def.parse_statement(&body, attrs)?;
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the flow's body; `flow!` declares one flow"));
        }
        Ok(def)
    }
}

impl FlowDef {
    fn parse_statement(&mut self, input: ParseStream, attrs: Vec<Attribute>) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        let is_node = lookahead.peek(kw::node);
        let (docs, attrs) = split_docs(attrs, is_node)?;
        if is_node {
            input.parse::<kw::node>()?;
            let name: Ident = input.parse()?;
            if !input.peek(Token![:]) {
                return Err(input.error(format!("expected `:` and the node's type: `node {name}: MyNode;`")));
            }
            input.parse::<Token![:]>()?;
            let ty: Type = input.parse()?;
            let init = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                Some(input.parse()?)
            } else {
                None
            };
            semicolon(input, "after a node declaration")?;
            self.nodes.push(NodeDecl { attrs, docs, name, ty, init });
        } else if lookahead.peek(kw::start) {
            input.parse::<kw::start>()?;
            self.starts.push(Start { name: input.parse()?, docs });
            semicolon(input, "after `start <node>`")?;
        } else if lookahead.peek(kw::max_steps) {
            let keyword: kw::max_steps = input.parse()?;
            self.max_steps.push((keyword, input.parse()?));
            semicolon(input, "after `max_steps <limit>`")?;
            self.max_steps_docs.extend(docs);
        } else if lookahead.peek(kw::end) {
            let keyword: kw::end = input.parse()?;
            return Err(syn::Error::new(keyword.span, "`end` finishes the flow; an edge cannot start from it"));
        } else if lookahead.peek(Ident) {
            self.parse_chain(input, &docs)?;
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }

    /// `a - A::X >> b >> c - C::Y >> end(..);`
    fn parse_chain(&mut self, input: ParseStream, docs: &[String]) -> syn::Result<()> {
        let mut from: Ident = input.parse()?;
        let mut first = true;
        if input.peek(Ident) || !(input.peek(Token![-]) || input.peek(Token![>>])) {
            return Err(unknown_statement(&from, input));
        }
        loop {
            let action = if input.peek(Token![-]) {
                input.parse::<Token![-]>()?;
                if input.peek(syn::Lit) {
                    return Err(input.error(
                        "an edge names a variant of the node's action enum (`- Choice::Go`), not a string; \
                         derive `minllm::Action` on the enum, or build a flow with string actions at run time, with `Flow`",
                    ));
                }
                Some(action_path(input)?)
            } else {
                None
            };
            if !input.peek(Token![>>]) {
                return Err(input.error(match &action {
                    Some(_) => "expected `>>` and the next node after the action",
                    None => "expected `>>` or `-`",
                }));
            }
            let arrow: Token![>>] = input.parse()?;
            let to = if input.peek(kw::end) {
                let keyword: kw::end = input.parse()?;
                let value = if input.peek(syn::token::Paren) {
                    let inner;
                    parenthesized!(inner in input);
                    Some(inner.parse()?)
                } else {
                    None
                };
                Target::End { keyword, value }
            } else if input.peek(Ident) {
                Target::Node(input.parse()?)
            } else {
                return Err(input.error("expected the next node's name, or `end`"));
            };
            let next = match &to {
                Target::Node(ident) => Some(ident.clone()),
                Target::End { .. } => None,
            };
            let docs = if first { docs.to_vec() } else { Vec::new() };
            first = false;
            self.edges.push(Edge { docs, from: from.clone(), action, arrow, to });
            if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                return Ok(());
            }
            let Some(next) = next else {
                return Err(input.error("`end` finishes the flow; nothing can follow it in a chain (expected `;`)"));
            };
            if !(input.peek(Token![-]) || input.peek(Token![>>])) {
                return Err(input.error("expected `;`, `>>` or `-`"));
            }
            from = next;
        }
    }
}

/// Splits a statement's attributes into its doc comment's lines and the rest,
/// which only a node declaration can carry (they go on its field).
fn split_docs(attrs: Vec<Attribute>, is_node: bool) -> syn::Result<(Vec<String>, Vec<Attribute>)> {
    let mut docs = Vec::new();
    let mut rest = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc")
            && let syn::Meta::NameValue(syn::MetaNameValue {
                value: Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }),
                ..
            }) = &attr.meta
        {
            docs.extend(text.value().lines().map(|l| l.strip_prefix(' ').unwrap_or(l).to_owned()));
            continue;
        }
        if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            return Err(syn::Error::new_spanned(
                &attr,
                "a `flow!` graph is checked as a whole, so one statement cannot be configured out; \
                 put `#[cfg(...)]` on the whole flow, or declare one flow per configuration",
            ));
        }
        if !is_node {
            return Err(syn::Error::new_spanned(
                &attr,
                "only doc comments (`/// ...`) can go on this statement; other attributes go on `node` \
                 declarations, where they apply to the node's field",
            ));
        }
        rest.push(attr);
    }
    Ok((docs, rest))
}

/// The variant an edge names, e.g. `Decision::Search` or `Choice::<T>::Go`:
/// written with `::<` however it was typed, so that it is a valid pattern too.
fn action_path(input: ParseStream) -> syn::Result<Path> {
    // (A path parsed here has no parenthesized arguments: `Choice(u8)` stops
    // at the `(`, which the caller reports.)
    let mut path: Path = input.parse()?;
    for segment in &mut path.segments {
        if let syn::PathArguments::AngleBracketed(args) = &mut segment.arguments {
            args.colon2_token.get_or_insert_with(Default::default);
        }
    }
    Ok(path)
}

fn semicolon(input: ParseStream, after: &str) -> syn::Result<()> {
    if input.peek(Token![;]) {
        input.parse::<Token![;]>()?;
        Ok(())
    } else {
        Err(input.error(format!("expected `;` {after}")))
    }
}

/// The error for a statement that starts with an unknown word, e.g. `strat decide;`.
fn unknown_statement(word: &Ident, input: ParseStream) -> syn::Error {
    let text = word.to_string();
    let suggestion = KEYWORDS.iter().find(|k| crate::flow::analyze::similar(&text, k));
    let expected = "expected `node`, `start`, `max_steps` or an edge like `a >> b`";
    match suggestion {
        Some(k) if input.peek(Ident) || input.peek(syn::Lit) => {
            syn::Error::new(word.span(), format!("unknown statement `{text}` (did you mean `{k}`?); {expected}"))
        }
        _ if input.peek(Ident) => syn::Error::new(word.span(), format!("unknown statement `{text}`; {expected}")),
        _ => input.error(format!("expected `>>` or `-` after `{text}`")),
    }
}
