//! Actions: the labels on a flow's edges.

use std::borrow::Cow;
use std::fmt;

/// The label of the edge a node takes when no label is given.
pub const DEFAULT_ACTION: &str = minllm_graph::DEFAULT_ACTION;

/// What a node's `post` returns: the label of the edge to follow next.
///
/// Runtime-built flows compare labels as strings. Typed flows (`flow!`) `match` on
/// the value itself, which is why an enum is the best action type: the compiler
/// then knows every label a node can return.
///
/// Implemented for `()` (always `"default"`), `String`, `&'static str`,
/// `Option<S>` (`None` is `"default"`) and [`Label`]. An empty string also means
/// `"default"`, as in PocketFlow.
///
/// For an enum, derive it: `#[derive(minllm::Action)]`. The derive also lists
/// the variants for `flow!`, which checks at compile time that each has an edge
/// and `match`es on them; `flow!` accepts derived action enums (and `()`) only,
/// and says so on the node when it meets another action type. A hand-written
/// impl, like the one below, works in runtime-built flows, where labels are
/// compared as strings:
///
/// ```
/// use minllm::Action;
///
/// enum Decision { Search, Answer }
///
/// impl Action for Decision {
///     fn label(&self) -> &str {
///         match self {
///             Decision::Search => "search",
///             Decision::Answer => "answer",
///         }
///     }
///     fn declared() -> Option<&'static [&'static str]> {
///         Some(&["search", "answer"])
///     }
/// }
///
/// assert_eq!(Decision::Answer.label(), "answer");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an action type",
    note = "for an enum, derive it: `#[derive(minllm::Action)]`; `()`, `String` and `&'static str` are actions too"
)]
pub trait Action: Send + 'static {
    /// The edge label this action selects.
    fn label(&self) -> &str;

    /// Every label a value of this type can have, when the type knows them
    /// (enums do, strings don't). [`Flow::validate`](crate::Flow::validate) uses it
    /// to find actions with no edge.
    fn declared() -> Option<&'static [&'static str]> {
        None
    }

    /// Turns the action into an owned [`Label`]. Override it to avoid an allocation
    /// when the label is static (the derive does).
    fn into_label(self) -> Label
    where
        Self: Sized,
    {
        Label::from(self.label().to_owned())
    }

    /// The Rust names of an enum's variants, set by `#[derive(Action)]`; `flow!`
    /// checks at compile time that each one has an edge.
    #[doc(hidden)]
    const __VARIANTS: Option<&'static [&'static str]> = None;
}

impl Action for () {
    fn label(&self) -> &str {
        DEFAULT_ACTION
    }
    fn declared() -> Option<&'static [&'static str]> {
        Some(&[DEFAULT_ACTION])
    }
    fn into_label(self) -> Label {
        Label::DEFAULT
    }
}

impl Action for String {
    fn label(&self) -> &str {
        if self.is_empty() { DEFAULT_ACTION } else { self }
    }
    fn into_label(self) -> Label {
        Label::from(self)
    }
}

impl Action for &'static str {
    fn label(&self) -> &str {
        if self.is_empty() { DEFAULT_ACTION } else { self }
    }
    fn into_label(self) -> Label {
        Label::from(self)
    }
}

impl<A: Action> Action for Option<A> {
    fn label(&self) -> &str {
        match self {
            Some(a) => a.label(),
            None => DEFAULT_ACTION,
        }
    }
    fn into_label(self) -> Label {
        match self {
            Some(a) => a.into_label(),
            None => Label::DEFAULT,
        }
    }
}

impl Action for Label {
    fn label(&self) -> &str {
        self.as_str()
    }
    fn into_label(self) -> Label {
        self
    }
}

/// An owned action label; cheap for static labels (no allocation).
///
/// An empty label reads as `"default"`.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Label(Cow<'static, str>);

impl PartialEq for Label {
    /// Labels are equal when their strings are. A node's action and the edge
    /// made from the same action share their static string, so the common
    /// case is one pointer compare, not a string compare per transition.
    #[inline]
    fn eq(&self, other: &Label) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
    }
}

impl std::hash::Hash for Label {
    /// As the string hashes, so that equal labels hash alike.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Label {
    /// The label of [`DEFAULT_ACTION`] (public as `Label::new_static(DEFAULT_ACTION)`).
    pub(crate) const DEFAULT: Label = Label(Cow::Borrowed(DEFAULT_ACTION));

    /// A label from a static string, usable in `const` items.
    #[inline]
    pub const fn new_static(label: &'static str) -> Label {
        if label.is_empty() { Label::DEFAULT } else { Label(Cow::Borrowed(label)) }
    }

    /// The label as a string.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Label {
    fn from(s: &'static str) -> Self {
        Label::new_static(s)
    }
}

impl From<String> for Label {
    fn from(s: String) -> Self {
        if s.is_empty() { Label::DEFAULT } else { Label(Cow::Owned(s)) }
    }
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Label {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_type_reports_its_label() {
        assert_eq!(().label(), "default");
        assert_eq!(Some("go").label(), "go");
        assert_eq!(None::<&str>.label(), "default");
        assert_eq!(Label::from("go".to_string()).label(), "go");
        assert_eq!(String::from("go").label(), "go");
    }

    #[test]
    fn a_label_reads_as_its_text() {
        let label = Label::from(String::from("search"));
        assert_eq!(&*label, "search");
        assert_eq!(label.as_ref(), "search");
        assert_eq!(label.len(), 6, "through Deref");
        assert!(label == *"search" && label != *"answer");
        assert!(label == "search" && label != "answer");
        assert_eq!(format!("{label:?}"), "\"search\"");
        assert_eq!(format!("{label}"), "search");
    }

    #[test]
    fn labels_are_equal_when_their_text_is_wherever_it_lives() {
        use std::hash::{BuildHasher, RandomState};
        let stat = Label::new_static("search");
        let owned = Label::from(String::from("search"));
        let other_static = Label::new_static(&"research"[2..]);
        for (a, b) in [(&stat, &owned), (&owned, &stat), (&stat, &other_static), (&stat, &stat)] {
            assert!(a == b, "{a} == {b}");
            let hasher = RandomState::new();
            assert_eq!(hasher.hash_one(a), hasher.hash_one(b), "equal labels hash alike");
        }
        // The same length and a different text, or a shared start.
        assert!(stat != Label::new_static("answer") && Label::from(String::from("sea")) != stat);
        assert!(Label::new_static(&"searching"[..6]) == stat && Label::new_static(&"searching"[..5]) != stat);
    }

    #[test]
    fn empty_and_none_mean_default() {
        assert_eq!(String::new().label(), "default");
        assert_eq!("".label(), "default");
        assert_eq!(None::<String>.into_label(), Label::DEFAULT);
        assert_eq!(Label::from(String::new()), "default");
        assert_eq!(().into_label(), "default");
        assert_eq!(Some("go").into_label(), "go");
    }
}
