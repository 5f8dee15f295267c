//! Params: the per-run settings a flow passes to each node's `prep`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
pub use serde_json::Value;

/// A flow's params: a small, immutable map of JSON values that reaches the `prep`
/// of every node in the flow's run. Batch flows run their inner flow once per
/// params, merged over the parent's.
///
/// Cloning is cheap (a reference count).
///
/// ```
/// use minllm::Params;
///
/// let base = Params::new().with("lang", "en").with("depth", 2);
/// let item = Params::new().with("file", "a.txt").with("depth", 3);
/// let merged = base.merged(&item);
/// assert_eq!(merged.get_str("lang"), Some("en"));
/// assert_eq!(merged.get::<u32>("depth").unwrap(), 3);
/// assert_eq!(merged.get_str("file"), Some("a.txt"));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Params(Arc<BTreeMap<String, Value>>);

/// A param that is missing or does not have the type asked for.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// No param with this name.
    #[error("param `{key}` is not set (params: {present:?})")]
    Missing {
        /// The name asked for.
        key: String,
        /// The names that are set.
        present: Vec<String>,
    },
    /// The param's value does not convert to the type asked for.
    #[error("param `{key}` is {found}, which is not a `{expected}`: {reason}")]
    WrongType {
        /// The name asked for.
        key: String,
        /// The value found, as JSON, cut short when long.
        found: String,
        /// The type asked for.
        expected: &'static str,
        /// Why the conversion failed, cut short when long.
        reason: String,
    },
}

impl Params {
    /// No params.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// These params with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        Arc::make_mut(&mut self.0).insert(key.into(), value.into());
        self
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        Arc::make_mut(&mut self.0).insert(key.into(), value.into());
    }

    /// The params as one JSON object (what travels to a worker).
    pub(crate) fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Params from a JSON object; `None` for any other value.
    #[cfg_attr(not(feature = "restate"), allow(dead_code))]
    pub(crate) fn from_json(value: Value) -> Option<Params> {
        match value {
            Value::Object(map) => Some(Params(Arc::new(map.into_iter().collect()))),
            _ => None,
        }
    }

    /// The raw value of `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The value of `key` as a string slice, if it is a JSON string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The value of `key` converted to `T`, with an error naming the key when it is
    /// missing or of another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, ParamError> {
        let value = self
            .0
            .get(key)
            .ok_or_else(|| ParamError::Missing { key: key.to_owned(), present: self.0.keys().cloned().collect() })?;
        T::deserialize(value).map_err(|e| ParamError::WrongType {
            key: key.to_owned(),
            found: excerpt_json(value),
            expected: std::any::type_name::<T>(),
            reason: excerpt(&e.to_string()),
        })
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// How many params are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no param is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The params, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `self` with every param of `over` set on top (`over` wins).
    pub fn merged(&self, over: &Params) -> Params {
        if over.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return over.clone();
        }
        let mut map = (*self.0).clone();
        map.extend(over.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Params(Arc::new(map))
    }
}

/// How much of a value an error message shows.
const EXCERPT: usize = 100;

/// `text`, cut after [`EXCERPT`] characters with a note of its length.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// `value` as JSON, cut short when long, without writing out more of it than is shown.
fn excerpt_json(value: &Value) -> String {
    /// Keeps the first bytes written and counts the rest.
    struct Head {
        kept: Vec<u8>,
        total: usize,
    }
    impl std::io::Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = (4 * EXCERPT).saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&buf[..buf.len().min(room)]);
            self.total += buf.len();
            if self.total > 4 * EXCERPT {
                // Enough seen: stop serialising.
                return Err(std::io::Error::other("long enough"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut head = Head { kept: Vec::new(), total: 0 };
    let complete = serde_json::to_writer(&mut head, value).is_ok();
    let text = String::from_utf8_lossy(&head.kept);
    match text.char_indices().nth(EXCERPT) {
        None if complete => text.into_owned(),
        None => format!("{text}..."),
        Some((cut, _)) => format!("{}...", &text[..cut]),
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Params(Arc::new(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))
    }
}

impl<K: Into<String>, V: Into<Value>, const N: usize> From<[(K, V); N]> for Params {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_and_missing_name_the_key() {
        let p = Params::from([("n", "x")]);
        let e = p.get::<u32>("n").unwrap_err().to_string();
        assert!(e.contains("param `n`") && e.contains("u32"), "{e}");
        let e = p.get::<u32>("m").unwrap_err().to_string();
        assert!(e.contains("`m` is not set") && e.contains("\"n\""), "{e}");
    }

    #[test]
    fn params_are_set_read_and_listed() {
        let mut p = Params::new();
        assert!(p.is_empty() && !p.contains("lang") && p.value("lang").is_none());
        p.set("lang", "en");
        p.set("depth", 2);
        assert!(p.contains("lang") && !p.contains("file"));
        assert_eq!(p.value("depth"), Some(&Value::from(2)));
        assert_eq!(p.len(), 2);
        let listed: Vec<(&str, &Value)> = p.iter().collect();
        assert_eq!(listed, [("depth", &Value::from(2)), ("lang", &Value::from("en"))]);
        assert_eq!(format!("{p:?}"), r#"{"depth": Number(2), "lang": String("en")}"#);
    }

    #[test]
    fn an_excerpt_counts_characters_not_bytes() {
        let p = Params::from([("name", "é".repeat(1000))]);
        let ParamError::WrongType { found, .. } = p.get::<u32>("name").unwrap_err() else { panic!() };
        assert_eq!(found, format!("\"{}...", "é".repeat(99)));
        // Written in many small pieces, still cut by characters.
        let list: Vec<&str> = vec!["é"; 100];
        let p = Params::from([("names", serde_json::json!(list))]);
        let ParamError::WrongType { found, .. } = p.get::<u32>("names").unwrap_err() else { panic!() };
        assert_eq!(found.chars().count(), 103, "{found}");
        assert!(found.starts_with("[\"é\",\"é\",") && found.ends_with("..."), "{found}");
    }

    #[test]
    fn a_wrong_type_error_shows_only_the_start_of_a_big_value() {
        let big = "x".repeat(1_000_000);
        let p = Params::from([("doc", big.as_str())]);
        let e = p.get::<u32>("doc").unwrap_err();
        let ParamError::WrongType { found, reason, .. } = &e else { panic!("{e:?}") };
        assert_eq!(found, &format!("\"{}...", "x".repeat(99)));
        assert!(reason.starts_with("invalid type: string \"xxx") && reason.ends_with("bytes in all)"), "{reason}");
        assert!(e.to_string().len() < 400, "{e}");
        let list = Params::from([("n", serde_json::json!([1, 2, 3]))]);
        let ParamError::WrongType { found, .. } = list.get::<u32>("n").unwrap_err() else { panic!() };
        assert_eq!(found, "[1,2,3]");
    }
}
