//! Procedural macros of [minllm](https://docs.rs/minllm): the flow compiler.
//!
//! Use them through the `minllm` crate, which re-exports them: `minllm::flow!`,
//! `#[minllm::node]` and `#[derive(minllm::Action)]`.

mod action;
mod errors;
mod flow;
mod node;

use proc_macro::TokenStream;

/// Makes an enum the action type of nodes: each variant is one labelled edge.
///
/// Labels are the variant names in snake_case (`GiveUp` is `"give_up"`);
/// `#[action(rename = "...")]` sets one. Variants may carry data; only the
/// variant selects the edge.
///
/// `flow!` needs its action enums to derive `Action`: the derive lists the
/// variants, so the flow can check at compile time that each has an edge.
///
/// ```
/// use minllm::Action;
///
/// #[derive(Action)]
/// enum Decision {
///     Search,
///     GiveUp,
///     #[action(rename = "final")]
///     Answer(String),
/// }
///
/// assert_eq!(Decision::GiveUp.label(), "give_up");
/// assert_eq!(Decision::Answer("42".into()).label(), "final");
/// assert_eq!(Decision::declared(), Some(&["search", "give_up", "final"][..]));
/// ```
#[proc_macro_derive(Action, attributes(action))]
pub fn derive_action(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    action::derive(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns an impl block with plain `prep`, `exec`, `post` (and optionally
/// `exec_fallback`) methods into a node: it implements `Node`, `AsyncNode`,
/// `BatchNode` or `AsyncBatchNode`, taking the store, prep, exec and action
/// types from the signatures. Your methods stay as you wrote them.
///
/// | method | shape | when left out |
/// |---|---|---|
/// | `prep` | `fn prep(&self, store: &S) -> P` or `(&self, store: &S, params: &Params)` | `P` is `()` |
/// | `exec` | `fn exec(&self, prep: &P) -> E`; also `(&self)`, `(&self, prep: &P, ctx: &ExecContext)` | required |
/// | `exec_fallback` | `fn exec_fallback(&self, prep: &P, error: BoxError) -> E`; like `exec`, also `(&self, error)` and with `ctx` last | returns the error |
/// | `post` | `fn post(&self, store: &mut S, prep: P, exec: E) -> A`; also `(store, exec)`, `(store)` | `A` is `()` |
///
/// In a batch node (`batch`, `parallel`, `concurrent`), `prep` returns
/// `Vec<Item>`, `exec` takes one `&Item` (or `&str` for a `String` item, `&[T]`
/// for a `Vec<T>` one) and returns an `Output`, and `post` gets the lists:
/// `fn post(&self, store: &mut S, items: Vec<Item>, outputs: Vec<Output>) -> A`,
/// or `(store, outputs)`, or `(store)`; `outputs[i]` is item `i`'s, whatever
/// order the items ran in.
///
/// Any hook may return `Result<T, E>` (any error that converts into `BoxError`,
/// so `?` works) or a plain `T`, and may be an `async fn` (the node is then an
/// `AsyncNode`). `exec` may take `&str` for a `String` and `&[T]` for a `Vec<T>`.
/// A node with neither `prep` nor `post` works with any store.
///
/// A node type owns its data (no lifetime parameters: a flow may run its nodes
/// on other threads); a generic node type gets `Send + Sync + 'static` bounds on
/// its type parameters added to the generated impl, so `Echo<u32>` is a node and
/// `Echo<Rc<u32>>` is not. To work on several stores, make the store a type
/// parameter of the node (`impl<S: HasText> Summarize<S>`); the hooks cannot
/// have generic parameters of their own.
///
/// Options: `attempts = N` (how often `exec` runs at most, the first run
/// included: PocketFlow's `max_retries`), `wait = <Duration>` or
/// `wait_ms = N` (between attempts), `batch` (`prep` returns `Vec<Item>`, `exec`
/// runs per item, `post` gets `Vec<Item>` and `Vec<Output>`), `parallel` (a batch
/// on threads, for sync nodes), `concurrent` (a batch of concurrent futures, for
/// async nodes), `limit = N` (at most N items at once). These write the node's `mode`
/// (`BatchMode::Parallel { threads }`, `AsyncBatchMode::Concurrent { limit }`):
/// a batch node says itself how its items run, in `flow!` and runtime flows alike.
/// `blocking = false` (sync nodes) says that `exec` is quick: in async runs it
/// then runs in place instead of on tokio's blocking pool (`Node::exec_blocks`).
///
/// Mistakes are compile errors on your own tokens: `exec` taking something other
/// than what `prep` returns, `post` taking the wrong prep or exec value, `prep`
/// and `post` taking different stores, a missing `exec`, a hook of the wrong
/// shape, an unknown or repeated option, a lifetime on the node type. A node
/// with an error still implements its node trait (without its bodies), so the
/// flows that use it report nothing more.
///
/// ```
/// use minllm::{BoxError, ExecContext, Node, Params, node};
///
/// #[derive(Default)]
/// struct Chat { question: String, answer: String }
///
/// struct Ask;
///
/// #[node(attempts = 3, wait_ms = 100)]
/// impl Ask {
///     fn prep(&self, chat: &Chat) -> String {
///         chat.question.clone()
///     }
///     fn exec(&self, question: &str, ctx: &ExecContext) -> Result<String, BoxError> {
///         Ok(format!("answer to {question} (attempt {})", ctx.attempt()))
///     }
///     fn post(&self, chat: &mut Chat, answer: String) {
///         chat.answer = answer;
///     }
/// }
///
/// let mut chat = Chat { question: "why".into(), ..Chat::default() };
/// Ask.run(&mut chat).unwrap();
/// assert_eq!(chat.answer, "answer to why (attempt 1)");
///
/// /// A batch node on all cores.
/// struct Lengths;
///
/// #[node(parallel)]
/// impl Lengths {
///     fn prep(&self, words: &Vec<String>) -> Vec<String> {
///         words.clone()
///     }
///     fn exec(&self, word: &str) -> usize {
///         word.len()
///     }
/// }
/// ```
#[proc_macro_attribute]
pub fn node(args: TokenStream, input: TokenStream) -> TokenStream {
    node::node(args.into(), input.into()).into()
}

/// Declares a flow that the compiler checks, and generates it as a plain state
/// machine: a struct holding the nodes and a loop over an enum of states with
/// direct calls (no boxing, no lookups, no allocation per step).
///
/// # Grammar
///
/// ```text
/// flow!   { attrs* vis? async? struct Name<generics>?: Store (-> Outcome)? where? { (attrs* statement)* } }
///
/// statement:
///     node name: Type;              // a node, made with Default::default()
///     node name: Type = expr;       // a node, made with `expr`
///     node name: Type = _;          // a node given to `new(..)` (a client, a channel, a pool)
///     start name;                   // the start node (required)
///     max_steps expr;               // the step limit (required when the graph has a cycle)
///     a >> b;                       // after `a` (which returns `()`), run `b`
///     a - Enum::Variant >> b;       // after `a` returns `Enum::Variant`, run `b`
///     a >> b >> c - E::X >> d;      // chains
///     a >> end;                     // the flow ends (outcome `()`)
///     a - E::Done >> end(Outcome::Found);   // the flow ends with an outcome
/// ```
///
/// A node's action type is `()` (one default edge, `a >> b`) or an enum deriving
/// [`Action`](derive@Action) (one edge per variant). A node with no edges ends
/// the flow when its action is `()`. The outcome is what `run` returns and what
/// a parent flow branches on when this flow is one of its nodes; its type comes
/// from the `end(...)` values (`Outcome::Found` gives `Outcome`) or from
/// `-> Outcome` in the header. Flows route on enums, which the compiler can
/// check; a graph whose actions are strings is built at run time, with
/// `minllm::Flow`.
///
/// # Attributes
///
/// Attributes on the flow go on its struct; a `#[cfg(...)]` there removes
/// everything generated for the flow with it. Doc comments may go on every
/// statement: they show in the Mermaid chart as comments (`%% ...`), and a
/// node's also in the struct's rustdoc (the list of nodes) and on its
/// `with_<node>` setter. Other attributes go only on `node` declarations, where
/// they apply to the node's field (say, `#[serde(skip)]` when the struct derives
/// `Serialize`). A statement cannot be configured out with `#[cfg]`: put it on
/// the whole flow.
///
/// # What it generates
///
/// - `Name::new(..)`, which makes the flow's nodes: each `= expr` is evaluated
///   there, once per flow made (not once per run), a node without one is made
///   with `Default`, and the nodes declared `= _` are its arguments, in the order
///   they are declared, so that none can be forgotten (`Name::new(client, sender)`).
///   A node type without `Default` declared without `= ...` is a compile error that
///   says so. The flow is `Default` too when no node is `= _`. `with_<node>(node)`
///   replaces a node.
/// - `run(&self, &mut Store) -> Result<Outcome, minllm::Error>` and
///   `run_with(&self, &mut Store, &Params)`; both are `async fn` for an
///   `async struct`, whose nodes may be async (an async node in a sync flow is a
///   compile error that says so);
/// - `Name::MERMAID`, the graph as a Mermaid chart, also shown in the type's docs;
/// - the traits that make the flow a node of another `flow!` (the parent
///   branches on its outcome) or of a runtime-built `minllm::Flow`.
///
/// The store of an `async struct` flow must be `Send + Sync + 'static` (its
/// tasks share it); a sync flow takes any store. Nodes are `#[node]` types,
/// types implementing the node traits, or other `flow!` flows (a runtime-built
/// `minllm::Flow` cannot be a node of a `flow!`). The struct gets `Default`
/// from the macro, so do not derive it. `MERMAID` is drawn by the writer of
/// runtime flows and Python (`minllm::graph`), so one graph gets one chart from
/// all three; it labels an edge with its variant's default label (`GiveUp` is
/// `give_up`: a `#[action(rename)]` on the enum is not visible to the macro).
///
/// # What it checks, at compile time
///
/// Each is an error on your own tokens, and one build reports them all: a node
/// used but not declared (with a "did you mean"), a node declared twice, two
/// edges for the same node and action, an action variant with no edge, an edge
/// for a variant that does not exist, a node unreachable from the start, a cycle
/// without `max_steps` (shown as `a -> b -> a`), nodes whose store type is not
/// the flow's, a missing or unknown start node, ends that disagree on the
/// outcome, an edge from `end`, an async node in a sync flow, string actions,
/// and malformed syntax (an "expected ..." message).
///
/// # Example
///
/// ```
/// use minllm::{flow, node, Action};
///
/// #[derive(Default)]
/// struct Research { notes: Vec<String>, answer: Option<String> }
///
/// #[derive(Clone, Copy, Action)]
/// enum Decision { Search, Answer }
///
/// #[derive(Clone, Copy, Debug, PartialEq, Action)]
/// enum Outcome { Answered }
///
/// #[derive(Default)]
/// struct Decide;
/// #[node]
/// impl Decide {
///     fn prep(&self, r: &Research) -> usize { r.notes.len() }
///     fn exec(&self, notes: &usize) -> Decision {
///         if *notes < 2 { Decision::Search } else { Decision::Answer }
///     }
///     fn post(&self, _: &mut Research, d: Decision) -> Decision { d }
/// }
///
/// #[derive(Default)]
/// struct Search;
/// #[node]
/// impl Search {
///     fn exec(&self) -> String { "a fact".into() }
///     fn post(&self, r: &mut Research, fact: String) { r.notes.push(fact) }
/// }
///
/// #[derive(Default)]
/// struct Answer;
/// #[node]
/// impl Answer {
///     fn prep(&self, r: &Research) -> usize { r.notes.len() }
///     fn exec(&self, n: &usize) -> String { format!("{n} facts") }
///     fn post(&self, r: &mut Research, a: String) { r.answer = Some(a) }
/// }
///
/// flow! {
///     /// Searches until it can answer.
///     pub struct Agent: Research {
///         /// Searches again until there are enough notes.
///         node decide: Decide;
///         node search: Search;
///         node answer: Answer;
///         start decide;
///         max_steps 20;
///         decide - Decision::Search >> search >> decide;
///         decide - Decision::Answer >> answer >> end(Outcome::Answered);
///     }
/// }
///
/// let mut research = Research::default();
/// assert_eq!(Agent::new().run(&mut research).unwrap(), Outcome::Answered);
/// assert_eq!(research.answer.as_deref(), Some("2 facts"));
/// assert!(Agent::MERMAID.contains("n0 -->|\"search\"| n1"));
/// assert!(Agent::MERMAID.contains("%% Searches again until there are enough notes."));
/// ```
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    flow::flow(input.into()).into()
}

#[cfg(test)]
mod fuzz;
