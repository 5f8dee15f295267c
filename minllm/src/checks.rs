//! Type checks that `#[node]` places on the user's own parameters: each passes a
//! value through unchanged when the types agree, and otherwise fails with a
//! message that says which hooks disagree.

/// `exec`'s parameter `&X` receives what `prep` returned (`P`).
#[diagnostic::on_unimplemented(
    message = "`exec` takes `&{Self}`, but `prep` returns `{P}`",
    label = "expected `&{P}` here",
    note = "`exec` receives a reference to the value `prep` returns; make the two types the same"
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

#[doc(hidden)]
#[inline(always)]
pub fn exec_input<X: ExecInput<P>, P>(value: &P) -> &X {
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

#[doc(hidden)]
#[inline(always)]
pub fn exec_item<X: ExecItem<I>, I>(value: &I) -> &X {
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
