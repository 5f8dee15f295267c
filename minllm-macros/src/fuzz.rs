//! The macros never panic, whatever tokens they get: a fuzz harness on
//! proptest, run briefly by `cargo test` and for as long as you like with
//! `scripts/fuzz` (see TESTING.md).
//!
//! Inputs come two ways: random token trees from a vocabulary of the DSL's
//! words and Rust's punctuation, and mutations (deleted, inserted, replaced,
//! duplicated, swapped tokens, at any depth) of every `flow!`, `#[node]` and
//! `#[derive(Action)]` input in the compile-error tests (`ui-tests/tests`),
//! right and wrong ones alike. For `flow!`, the output must also be valid Rust
//! items, so that the user sees our error and not a syntax error in code they
//! did not write.

use std::str::FromStr;
use std::sync::OnceLock;

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use proptest::prelude::*;

/// A token tree we can edit: leaves (kept as text, which lexes back to the
/// same tokens; proc-macro2's own tokens cannot cross threads), and groups
/// holding their own list.
#[derive(Clone, Debug)]
enum Tok {
    Leaf(String),
    Group(Delimiter, Vec<Tok>),
}

fn to_toks(stream: TokenStream) -> Vec<Tok> {
    let mut out = Vec::new();
    // Joint punctuation (`>>`, `->`, `'a`) stays one leaf.
    let mut joint = String::new();
    for tree in stream {
        match tree {
            TokenTree::Group(g) => out.push(Tok::Group(g.delimiter(), to_toks(g.stream()))),
            TokenTree::Punct(p) if p.spacing() == proc_macro2::Spacing::Joint => joint.push(p.as_char()),
            leaf => {
                joint.push_str(&leaf.to_string());
                out.push(Tok::Leaf(std::mem::take(&mut joint)));
            }
        }
    }
    if !joint.is_empty() {
        out.push(Tok::Leaf(joint));
    }
    out
}

fn to_stream(toks: &[Tok]) -> TokenStream {
    toks.iter()
        .flat_map(|t| match t {
            Tok::Leaf(text) => TokenStream::from_str(text).unwrap_or_default(),
            Tok::Group(delimiter, inner) => TokenTree::Group(Group::new(*delimiter, to_stream(inner))).into(),
        })
        .collect()
}

/// Words and punctuation the parsers care about, and some they should not.
const VOCABULARY: &[&str] = &[
    "node",
    "start",
    "max_steps",
    "end",
    "struct",
    "async",
    "pub",
    "pub(crate)",
    "fn",
    "impl",
    "for",
    "where",
    "self",
    "Self",
    "crate",
    "super",
    "dyn",
    "mut",
    "const",
    "enum",
    "a",
    "b",
    "decide",
    "Foo",
    "Vec<u8>",
    "r#type",
    "r#node",
    "_",
    "'a",
    "'static",
    "'_",
    ":",
    ";",
    ">>",
    ">",
    "<",
    "-",
    "->",
    "=",
    "==",
    ",",
    "::",
    "#",
    "!",
    "&",
    "&mut",
    "*",
    "+",
    "@",
    "?",
    ".",
    "..",
    "|",
    "$",
    "\"go\"",
    "\"\"",
    "5",
    "0",
    "-1",
    "18446744073709551616",
    "1.5",
    "'c'",
    "b\"x\"",
    "true",
    "retries",
    "wait_ms",
    "batch",
    "parallel",
    "concurrent",
    "limit",
    "prep",
    "exec",
    "exec_fallback",
    "post",
    "Result",
    "BoxError",
    "ExecContext",
    "Params",
    "Option<T>",
    "T",
    "action",
    "rename",
    "doc",
    "cfg",
    "/// docs",
    "#[cfg(any())]",
    "#[doc = 5]",
    "#[doc(hidden)]",
    "#[action(rename = \"\")]",
];

fn vocabulary() -> &'static [Vec<Tok>] {
    static WORDS: OnceLock<Vec<Vec<Tok>>> = OnceLock::new();
    WORDS.get_or_init(|| {
        VOCABULARY.iter().map(|w| to_toks(TokenStream::from_str(w).expect("the vocabulary lexes"))).collect()
    })
}

/// Random tokens: words of the vocabulary and groups of them, nested.
fn tokens() -> impl Strategy<Value = Vec<Tok>> {
    let word = (0..VOCABULARY.len()).prop_map(|i| vocabulary()[i].clone());
    let leaf = prop::collection::vec(word, 0..6).prop_map(|words| words.concat());
    leaf.prop_recursive(4, 64, 8, |inner| {
        let delimiter = prop_oneof![
            Just(Delimiter::Brace),
            Just(Delimiter::Parenthesis),
            Just(Delimiter::Bracket),
            Just(Delimiter::None),
        ];
        prop::collection::vec((inner.clone(), prop::option::of((delimiter, inner))), 1..5).prop_map(|parts| {
            let mut out = Vec::new();
            for (words, group) in parts {
                out.extend(words);
                if let Some((delimiter, inside)) = group {
                    out.push(Tok::Group(delimiter, inside));
                }
            }
            out
        })
    })
}

/// One edit; positions count every token at every depth, modulo their number.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Insert(usize, Vec<Tok>),
    Replace(usize, Vec<Tok>),
    /// Puts a copy of the first token in place of the second: a node name
    /// where another was, an edge's target as its source, and so on.
    Copy(usize, usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Drops everything after the position, in its group.
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    // Mostly one word at a time, so that many edited inputs still parse and
    // reach the checks behind the parser.
    let word = (0..VOCABULARY.len()).prop_map(|i| vocabulary()[i].clone());
    let new = prop_oneof![4 => word, 1 => tokens()];
    let edit = prop_oneof![
        2 => any::<usize>().prop_map(Edit::Delete),
        2 => (any::<usize>(), new.clone()).prop_map(|(i, t)| Edit::Insert(i, t)),
        2 => (any::<usize>(), new).prop_map(|(i, t)| Edit::Replace(i, t)),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Copy(i, j)),
        1 => any::<usize>().prop_map(Edit::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn count(toks: &[Tok]) -> usize {
    toks.iter().map(|t| 1 + if let Tok::Group(_, inner) = t { count(inner) } else { 0 }).sum()
}

/// The list holding the token at depth-first position `at`, and its index there.
fn locate(toks: &mut Vec<Tok>, mut at: usize) -> Option<(&mut Vec<Tok>, usize)> {
    let mut i = 0;
    while i < toks.len() {
        if at == 0 {
            return Some((toks, i));
        }
        at -= 1;
        let inner_len = if let Tok::Group(_, inner) = &toks[i] { count(inner) } else { 0 };
        if at < inner_len {
            let Tok::Group(_, inner) = &mut toks[i] else { unreachable!() };
            return locate(inner, at);
        }
        at -= inner_len;
        i += 1;
    }
    None
}

fn apply(mut toks: Vec<Tok>, edits: &[Edit]) -> Vec<Tok> {
    for edit in edits {
        let n = count(&toks);
        if n == 0 {
            if let Edit::Insert(_, new) | Edit::Replace(_, new) = edit {
                toks.extend(new.iter().cloned());
            }
            continue;
        }
        match edit {
            Edit::Delete(at) => {
                if let Some((list, i)) = locate(&mut toks, at % n) {
                    list.remove(i);
                }
            }
            Edit::Insert(at, new) => {
                if let Some((list, i)) = locate(&mut toks, at % n) {
                    list.splice(i..i, new.iter().cloned());
                }
            }
            Edit::Replace(at, new) => {
                if let Some((list, i)) = locate(&mut toks, at % n) {
                    list.splice(i..=i, new.iter().cloned());
                }
            }
            Edit::Copy(from, to) => {
                // Between words only, which keeps most statements parsing.
                let words: Vec<usize> = (0..n)
                    .filter(|&at| {
                        locate(&mut toks, at).is_some_and(|(list, i)| {
                            matches!(&list[i], Tok::Leaf(w) if w.starts_with(|c: char| c.is_alphabetic() || c == '_'))
                        })
                    })
                    .collect();
                if words.is_empty() {
                    continue;
                }
                let (from, to) = (words[from % words.len()], words[to % words.len()]);
                let copy = locate(&mut toks, from).map(|(list, i)| list[i].clone());
                if let (Some(copy), Some((list, i))) = (copy, locate(&mut toks, to)) {
                    list[i] = copy;
                }
            }
            Edit::Duplicate(at) => {
                if let Some((list, i)) = locate(&mut toks, at % n) {
                    let copy = list[i].clone();
                    list.insert(i, copy);
                }
            }
            Edit::Swap(a, b) => {
                if let Some((list, i)) = locate(&mut toks, a % n) {
                    let j = b % list.len();
                    list.swap(i, j);
                }
            }
            Edit::Truncate(at) => {
                if let Some((list, i)) = locate(&mut toks, at % n) {
                    list.truncate(i);
                }
            }
        }
    }
    toks
}

/// Flows that parse, with random graphs: names from a small pool (so that
/// edges meet declared, undeclared and repeated nodes), labelled and default
/// edges, ends with and without outcomes, starts and limits given zero, one or
/// two times. These reach the graph checks behind the parser.
fn grammar_flows() -> impl Strategy<Value = String> {
    const NAMES: &[&str] = &["a", "b", "c", "d", "r#type", "search", "end_"];
    const TYPES: &[&str] = &["A", "B<T>", "Vec<u8>", "crate::C", "<X as Y>::Z", "[u8; 4]"];
    const ACTIONS: &[&str] = &["E::X", "E::Y", "F::X", "X", "a::b::C", "E::X::Y", "Self::X"];
    const ENDS: &[&str] = &["end", "end(Out::Done)", "end(Out::Other)", "end(5)", "end(())"];
    let name = prop::sample::select(NAMES);
    let target =
        prop_oneof![3 => name.clone().prop_map(str::to_owned), 1 => prop::sample::select(ENDS).prop_map(str::to_owned)];
    let link = (prop::option::of(prop::sample::select(ACTIONS)), target).prop_map(|(action, to)| match action {
        Some(a) => format!(" - {a} >> {to}"),
        None => format!(" >> {to}"),
    });
    let statement = prop_oneof![
        3 => (name.clone(), prop::sample::select(TYPES), any::<bool>())
            .prop_map(|(n, t, init)| if init { format!("node {n}: {t} = Default::default();") } else { format!("node {n}: {t};") }),
        1 => name.clone().prop_map(|n| format!("start {n};")),
        1 => prop::sample::select(&["max_steps 5;", "max_steps 0;", "max_steps -1;", "max_steps \"x\";"][..]).prop_map(str::to_owned),
        4 => (name, prop::collection::vec(link, 1..4)).prop_map(|(from, links)| format!("{from}{};", links.concat())),
        1 => Just("/// a doc comment\n".to_owned()),
    ];
    let header = prop::sample::select(
        &[
            "struct F: S",
            "pub async struct F: S",
            "struct F<T>: S<T> where T: Send",
            "struct F: S -> Out",
            "#[cfg(any())] struct F: S",
            "#[derive(Clone)] pub(crate) struct F: &'static mut S",
        ][..],
    );
    (header, prop::collection::vec(statement, 0..12))
        .prop_map(|(header, statements)| format!("{header} {{ {} }}", statements.join(" ")))
}

/// The inputs of the macros in the compile-error tests.
struct Corpus {
    flows: Vec<Vec<Tok>>,
    /// `(#[node] arguments, impl block)`.
    nodes: Vec<(Vec<Tok>, Vec<Tok>)>,
    /// Items with `#[derive(Action)]`, the derive attribute removed.
    actions: Vec<Vec<Tok>>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut corpus = Corpus { flows: Vec::new(), nodes: Vec::new(), actions: Vec::new() };
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui-tests/tests");
        for dir in ["pass", "fail"] {
            let entries = std::fs::read_dir(root.join(dir)).expect("ui-tests/tests is next to this crate");
            for entry in entries {
                let path = entry.expect("a readable directory").path();
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let source = std::fs::read_to_string(&path).expect("a readable test file");
                // Some compile-error tests do not even parse; they seed nothing.
                let Ok(file) = syn::parse_file(&source) else { continue };
                collect(&file.items, &mut corpus);
            }
        }
        assert!(corpus.flows.len() > 20 && corpus.nodes.len() > 20, "the corpus was found");
        corpus
    })
}

fn collect(items: &[syn::Item], corpus: &mut Corpus) {
    for item in items {
        match item {
            syn::Item::Macro(m) if m.mac.path.is_ident("flow") => corpus.flows.push(to_toks(m.mac.tokens.clone())),
            syn::Item::Impl(i) => {
                let mut item = i.clone();
                if let Some(at) = item.attrs.iter().position(|a| a.path().is_ident("node")) {
                    let attr = item.attrs.remove(at);
                    let args = match attr.meta {
                        syn::Meta::List(list) => list.tokens,
                        _ => TokenStream::new(),
                    };
                    corpus.nodes.push((to_toks(args), to_toks(quote::ToTokens::to_token_stream(&item))));
                }
            }
            syn::Item::Enum(_) | syn::Item::Struct(_) => {
                let tokens = quote::ToTokens::to_token_stream(item);
                if tokens.to_string().contains("Action") {
                    corpus.actions.push(to_toks(tokens));
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    collect(items, corpus);
                }
            }
            _ => {}
        }
    }
}

fn config() -> ProptestConfig {
    // `PROPTEST_CASES` sets the length of a run (scripts/fuzz); `cargo test`
    // runs a short one.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

fn check_flow(input: TokenStream) {
    let output = crate::flow::flow(input.clone());
    if let Err(e) = syn::parse2::<syn::File>(output) {
        panic!("flow! wrote invalid Rust ({e}) for\n{input}");
    }
}

fn check_node(args: TokenStream, item: TokenStream) {
    let output = crate::node::node(args, item.clone());
    // The user's tokens are passed on as they are, so only input that is an
    // impl block must give items.
    if syn::parse2::<syn::ItemImpl>(item.clone()).is_ok()
        && let Err(e) = syn::parse2::<syn::File>(output)
    {
        panic!("#[node] wrote invalid Rust ({e}) for\n{item}");
    }
}

fn check_action(item: TokenStream) {
    if let Ok(input) = syn::parse2::<syn::DeriveInput>(item) {
        let output = crate::action::derive(input).unwrap_or_else(syn::Error::into_compile_error);
        if let Err(e) = syn::parse2::<syn::File>(output.clone()) {
            panic!("#[derive(Action)] wrote invalid Rust ({e}):\n{output}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn flow_never_panics_on_random_tokens(toks in tokens()) {
        check_flow(to_stream(&toks));
    }

    #[test]
    fn flow_never_panics_on_random_graphs(source in grammar_flows()) {
        let input = TokenStream::from_str(&source).expect("the generated flow lexes");
        check_flow(input);
    }

    #[test]
    fn flow_never_panics_on_edited_flows(seed in any::<prop::sample::Index>(), edits in edits()) {
        let flows = &corpus().flows;
        let flow = flows[seed.index(flows.len())].clone();
        check_flow(to_stream(&apply(flow, &edits)));
    }

    #[test]
    fn node_never_panics_on_random_tokens(args in tokens(), item in tokens()) {
        check_node(to_stream(&args), to_stream(&item));
    }

    #[test]
    fn node_never_panics_on_edited_nodes(
        seed in any::<prop::sample::Index>(),
        arg_edits in prop::option::of(edits()),
        edits in edits(),
    ) {
        let nodes = &corpus().nodes;
        let (args, item) = nodes[seed.index(nodes.len())].clone();
        let args = match arg_edits { Some(e) => apply(args, &e), None => args };
        check_node(to_stream(&args), to_stream(&apply(item, &edits)));
    }

    #[test]
    fn derive_action_never_panics_on_edited_enums(seed in any::<prop::sample::Index>(), edits in edits()) {
        let actions = &corpus().actions;
        let item = actions[seed.index(actions.len())].clone();
        check_action(to_stream(&apply(item, &edits)));
    }
}
