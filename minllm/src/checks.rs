//! Type checks that `#[node]` places on the user's own parameters: each passes a
//! value through unchanged when the types agree, and otherwise fails with a
//! message that says which hooks disagree.

/// `exec`'s parameter `&X` receives what `prep` returned (`P`), or what it
/// borrows as (`&str` for a `String`, `&[T]` for a `Vec<T>`).
#[diagnostic::on_unimplemented(
    message = "`exec` takes `&{Self}`, but `prep` returns `{P}`",
    label = "expected `&{P}` here",
    note = "`exec` receives a reference to the value `prep` returns (or to what it borrows as, like `&str` for a `String`)"
)]
#[doc(hidden)]
pub trait ExecInput<P> {
    fn cast(value: &P) -> &Self;
}

impl<T> ExecInput<T> for T {
    #[inline(always)]
    fn cast(value: &T) -> &T {
        value
    }
}

#[diagnostic::do_not_recommend]
impl ExecInput<String> for str {
    #[inline(always)]
    fn cast(value: &String) -> &str {
        value
    }
}

#[diagnostic::do_not_recommend]
impl<T> ExecInput<Vec<T>> for [T] {
    #[inline(always)]
    fn cast(value: &Vec<T>) -> &[T] {
        value
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn exec_input<X: ExecInput<P> + ?Sized, P>(value: &P) -> &X {
    X::cast(value)
}

/// A batch node's `exec` parameter `&X` receives one item of `prep`'s `Vec<I>`.
#[diagnostic::on_unimplemented(
    message = "`exec` takes `&{Self}`, but `prep` returns items of type `{I}`",
    label = "expected `&{I}` here",
    note = "a batch node's `exec` receives a reference to one item of the `Vec` that `prep` returns"
)]
#[doc(hidden)]
pub trait ExecItem<I> {
    fn cast(value: &I) -> &Self;
}

impl<T> ExecItem<T> for T {
    #[inline(always)]
    fn cast(value: &T) -> &T {
        value
    }
}

#[diagnostic::do_not_recommend]
impl ExecItem<String> for str {
    #[inline(always)]
    fn cast(value: &String) -> &str {
        value
    }
}

#[diagnostic::do_not_recommend]
impl<T> ExecItem<Vec<T>> for [T] {
    #[inline(always)]
    fn cast(value: &Vec<T>) -> &[T] {
        value
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn exec_item<X: ExecItem<I> + ?Sized, I>(value: &I) -> &X {
    X::cast(value)
}

/// `post`'s store parameter `&mut X` is the store `prep` reads (`S`).
#[diagnostic::on_unimplemented(
    message = "`post` takes the store `{Self}`, but `prep` takes the store `{S}`",
    label = "expected `&mut {S}` here",
    note = "the hooks of a node share one store type"
)]
#[doc(hidden)]
pub trait PostStore<S> {
    fn cast(value: &mut S) -> &mut Self;
}

impl<T> PostStore<T> for T {
    #[inline(always)]
    fn cast(value: &mut T) -> &mut T {
        value
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn post_store<X: PostStore<S>, S>(value: &mut S) -> &mut X {
    X::cast(value)
}

/// `post`'s prep parameter `X` receives what `prep` returned (`P`).
#[diagnostic::on_unimplemented(
    message = "`post` takes `{Self}` as its prep value, but `prep` returns `{P}`",
    label = "expected `{P}` here",
    note = "`post` receives the value `prep` returned; make the two types the same"
)]
#[doc(hidden)]
pub trait PostPrep<P> {
    fn cast(value: P) -> Self;
}

impl<T> PostPrep<T> for T {
    #[inline(always)]
    fn cast(value: T) -> T {
        value
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn post_prep<X: PostPrep<P>, P>(value: P) -> X {
    X::cast(value)
}

/// `post`'s exec parameter `X` receives what `exec` returned (`E`).
#[diagnostic::on_unimplemented(
    message = "`post` takes `{Self}` as its exec value, but `exec` returns `{E}`",
    label = "expected `{E}` here",
    note = "`post` receives the value `exec` returned; make the two types the same"
)]
#[doc(hidden)]
pub trait PostExec<E> {
    fn cast(value: E) -> Self;
}

impl<T> PostExec<T> for T {
    #[inline(always)]
    fn cast(value: T) -> T {
        value
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn post_exec<X: PostExec<E>, E>(value: E) -> X {
    X::cast(value)
}

/// What `flow!` can route on: `()` and the enums that derive `Action` (whose
/// variants it checks at compile time). Failing this, a node's action type
/// gets one error, and the edges after it none.
#[diagnostic::on_unimplemented(
    message = "`flow!` routes on enum actions, but this node's actions are `{Self}`",
    label = "this node returns `{Self}` actions",
    note = "derive `minllm::Action` on an enum, return it from `post`, and give each variant an edge: `node - Choice::Variant >> next;`",
    note = "a flow whose actions are strings is built at run time, with `Flow`"
)]
#[doc(hidden)]
pub trait Routable {
    /// The action, as the flow's `match` sees it.
    type Routed;
    /// The action itself.
    fn routed(self) -> Self::Routed;
}

#[diagnostic::do_not_recommend]
impl Routable for () {
    type Routed = ();
    #[inline(always)]
    fn routed(self) {}
}

#[doc(hidden)]
#[inline(always)]
pub fn routed<A: Routable>(action: A) -> A::Routed {
    action.routed()
}

/// A default edge (`a >> b`) is taken on the `()` action.
#[diagnostic::on_unimplemented(
    message = "this node returns `{Self}` actions, so its edges must name them",
    label = "a default edge needs a node that returns `()`",
    note = "write one edge per variant: `node - {Self}::Variant >> next;`"
)]
#[doc(hidden)]
pub trait DefaultEdge {}

#[diagnostic::do_not_recommend]
impl DefaultEdge for () {}

#[doc(hidden)]
#[inline(always)]
pub fn default_edge<A: Routable>(_: A)
where
    A::Routed: DefaultEdge,
{
}

/// A node with no edges ends the flow, which only makes sense when its action
/// carries no choice.
#[diagnostic::on_unimplemented(
    message = "this node has no edges, but it returns `{Self}` actions",
    label = "every action of this node needs an edge",
    note = "give each variant an edge (`node - {Self}::Variant >> next;`), or end the flow there: `node - {Self}::Variant >> end;`"
)]
#[doc(hidden)]
pub trait ImplicitEnd {}

#[diagnostic::do_not_recommend]
impl ImplicitEnd for () {}

#[doc(hidden)]
#[inline(always)]
pub fn implicit_end<A: Routable>(_: A)
where
    A::Routed: ImplicitEnd,
{
}

/// The message for the first variant of `ty` (a node's action enum) without
/// an edge, if any. Variants the edges name that do not exist are left to the
/// compiler's own error on the edge. The generated code panics with it inside
/// its own `const` item, so that the error shows the user's node alone.
#[doc(hidden)]
pub const fn missing_edge(
    variants: Option<&[&str]>,
    handled: &[&str],
    node: &str,
    ty: &str,
) -> Option<([u8; 1024], usize)> {
    // An enum without the derive lists no variants; it is not `Routable`
    // either, which is reported on the node, once.
    let Some(variants) = variants else { return None };
    let mut h = 0;
    while h < handled.len() {
        if !contains(variants, handled[h]) {
            return None;
        }
        h += 1;
    }
    let mut v = 0;
    while v < variants.len() {
        if !contains(handled, variants[v]) {
            let variant = variants[v];
            return Some(concat(&[
                "node `",
                node,
                "` can return `",
                ty,
                "::",
                variant,
                "` but has no edge for it; add `",
                node,
                " - ",
                ty,
                "::",
                variant,
                " >> <next node>;` or `>> end;`",
            ]));
        }
        v += 1;
    }
    None
}

const fn contains(list: &[&str], item: &str) -> bool {
    let mut i = 0;
    while i < list.len() {
        if eq(list[i], item) {
            return true;
        }
        i += 1;
    }
    false
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The concatenation of `parts` (cut at 1 KiB, on a character boundary).
const fn concat(parts: &[&str]) -> ([u8; 1024], usize) {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p].as_bytes();
        if len + bytes.len() > buf.len() {
            break;
        }
        let mut i = 0;
        while i < bytes.len() {
            buf[len] = bytes[i];
            len += 1;
            i += 1;
        }
        p += 1;
    }
    (buf, len)
}

#[doc(hidden)]
pub const fn as_str(buf: &[u8], len: usize) -> &str {
    let (bytes, _) = buf.split_at(len);
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => "an action of a node has no edge",
    }
}

/// The error parameter of `exec_fallback` is the error `exec` failed with.
#[diagnostic::on_unimplemented(
    message = "`exec_fallback` receives the error as `BoxError`, not `{Self}`",
    label = "write `error: minllm::BoxError` here",
    note = "errors of every type reach the fallback boxed; downcast with `error.downcast_ref::<MyError>()`"
)]
#[doc(hidden)]
pub trait FallbackError {
    fn cast(error: crate::BoxError) -> Self;
}

#[diagnostic::do_not_recommend]
impl FallbackError for crate::BoxError {
    #[inline(always)]
    fn cast(error: crate::BoxError) -> Self {
        error
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn fallback_error<X: FallbackError>(error: crate::BoxError) -> X {
    X::cast(error)
}

/// The store of an async flow is shared with the tasks that run it.
#[doc(hidden)]
#[inline(always)]
pub fn assert_store<S: Send + Sync + 'static>() {}

/// A node `flow!` makes with `Default` (declared `node name: Type;`).
#[diagnostic::on_unimplemented(
    message = "the node type `{Self}` has no `Default`, so `flow!` cannot make it",
    label = "`flow!` makes this node with `Default::default()`",
    note = "give it as an argument of `new`: `node name: {Self} = _;` (a client, a channel, a pool), or make it with an expression: `node name: {Self} = {Self}::new(..);`, or derive or implement `Default` for it"
)]
#[doc(hidden)]
pub trait DefaultNode: Sized {
    fn make() -> Self;
}

#[diagnostic::do_not_recommend]
impl<T: Default> DefaultNode for T {
    #[inline(always)]
    fn make() -> Self {
        T::default()
    }
}

#[doc(hidden)]
#[inline(always)]
pub fn default_node<T: DefaultNode>() -> T {
    T::make()
}
