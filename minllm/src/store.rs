//! `SharedStore`: the string-keyed store of runtime-built flows.

use std::any::{Any, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// A value that was missing or not of the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No value under this key.
    #[error("store has no key `{key}`")]
    Missing {
        /// The key asked for.
        key: String,
    },
    /// The value under this key has another type.
    #[error("store key `{key}` holds a `{found}`, not a `{expected}`")]
    WrongType {
        /// The key asked for.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: &'static str,
    },
}

struct Entry {
    value: Box<dyn Any + Send + Sync>,
    type_name: &'static str,
}

/// A thread-safe map from string keys to values of any type: the shared store of
/// runtime-built flows, like the `shared` dict of PocketFlow.
///
/// Cloning a `SharedStore` clones a handle: both see the same values. Reading a
/// key with the wrong type returns `None` (or [`StoreError::WrongType`] from
/// [`try_get`](Self::try_get)); it never panics. A panic in user code never
/// poisons it.
///
/// ```
/// use minllm::SharedStore;
///
/// let store = SharedStore::new();
/// store.set("question", "What is Rust?".to_string());
/// store.set("hits", 3_u32);
/// assert_eq!(store.get::<String>("question").as_deref(), Some("What is Rust?"));
/// assert_eq!(store.get::<u64>("hits"), None); // stored as u32
/// assert!(store.try_get::<u64>("hits").unwrap_err().to_string().contains("u32"));
/// store.update("hits", |n: &mut u32| *n += 1).unwrap();
/// assert_eq!(store.get::<u32>("hits"), Some(4));
/// ```
#[derive(Clone, Default)]
pub struct SharedStore {
    map: Arc<RwLock<HashMap<String, Entry>>>,
}

impl SharedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clone of the value under `key`, or `None` when it is missing or of
    /// another type.
    pub fn get<T: Any + Clone>(&self, key: &str) -> Option<T> {
        self.try_get(key).ok()
    }

    /// A clone of the value under `key`, or an error saying what was missing or
    /// which type was found instead.
    pub fn try_get<T: Any + Clone>(&self, key: &str) -> Result<T, StoreError> {
        self.with(key, T::clone)
    }

    /// Calls `f` with a reference to the value under `key` (no clone), holding a
    /// read lock meanwhile: keep `f` short and do not touch the store inside it.
    pub fn with<T: Any, R>(&self, key: &str, f: impl FnOnce(&T) -> R) -> Result<R, StoreError> {
        let map = self.map.read();
        let entry = map.get(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        match entry.value.downcast_ref::<T>() {
            Some(v) => Ok(f(v)),
            None => Err(wrong_type::<T>(key, entry)),
        }
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn set<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        let entry = Entry { value: Box::new(value), type_name: type_name::<T>() };
        self.map.write().insert(key.into(), entry);
    }

    /// Changes the value under `key` in place, under the write lock, so that
    /// concurrent updates (e.g. pushing to a list) do not lose each other.
    /// `f` must not use the store (that would wait for the lock it holds).
    pub fn update<T: Any, R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> Result<R, StoreError> {
        let mut map = self.map.write();
        let entry = map.get_mut(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        let found = entry.type_name;
        match entry.value.downcast_mut::<T>() {
            Some(v) => Ok(f(v)),
            None => Err(StoreError::WrongType { key: key.to_owned(), expected: type_name::<T>(), found }),
        }
    }

    /// Like [`update`](Self::update), inserting `default()` first when the key is missing.
    pub fn update_or_insert<T: Any + Send + Sync, R>(
        &self,
        key: &str,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, StoreError> {
        let mut map = self.map.write();
        let entry = map
            .entry(key.to_owned())
            .or_insert_with(|| Entry { value: Box::new(default()), type_name: type_name::<T>() });
        let found = entry.type_name;
        match entry.value.downcast_mut::<T>() {
            Some(v) => Ok(f(v)),
            None => Err(StoreError::WrongType { key: key.to_owned(), expected: type_name::<T>(), found }),
        }
    }

    /// Removes the value under `key`; returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        self.map.write().remove(key).is_some()
    }

    /// Removes and returns the value under `key` when it has type `T`; a value of
    /// another type stays in the store.
    pub fn take<T: Any>(&self, key: &str) -> Result<T, StoreError> {
        let mut map = self.map.write();
        let entry = map.get(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        if !entry.value.is::<T>() {
            return Err(wrong_type::<T>(key, entry));
        }
        let entry = map.remove(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        entry.value.downcast::<T>().map(|b| *b).map_err(|_| StoreError::Missing { key: key.to_owned() })
    }

    /// Whether a value is stored under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.map.read().contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.read().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.read().is_empty()
    }

    /// Removes every value.
    pub fn clear(&self) {
        self.map.write().clear();
    }

    /// Whether `self` and `other` are handles to the same store.
    pub fn ptr_eq(&self, other: &SharedStore) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }
}

fn wrong_type<T>(key: &str, entry: &Entry) -> StoreError {
    StoreError::WrongType { key: key.to_owned(), expected: type_name::<T>(), found: entry.type_name }
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.map.read();
        let mut keys: Vec<_> = map.iter().map(|(k, e)| (k.as_str(), e.type_name)).collect();
        keys.sort();
        f.debug_map().entries(keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_values() {
        let a = SharedStore::new();
        let b = a.clone();
        b.set("k", vec![1, 2]);
        assert!(a.contains("k") && a.ptr_eq(&b));
        assert_eq!(a.get::<Vec<i32>>("k"), Some(vec![1, 2]));
        assert!(a.remove("k"));
        assert!(!a.remove("k"));
        assert!(b.is_empty());
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        let s = SharedStore::new();
        s.set("n", 1_i32);
        assert_eq!(
            s.try_get::<String>("n"),
            Err(StoreError::WrongType { key: "n".into(), expected: "alloc::string::String", found: "i32" })
        );
        assert_eq!(s.try_get::<i32>("m"), Err(StoreError::Missing { key: "m".into() }));
        assert!(s.update("n", |_: &mut u8| ()).is_err());
        assert!(s.take::<String>("n").is_err());
        assert_eq!(s.get::<i32>("n"), Some(1), "a failed take keeps the value");
        assert_eq!(s.take::<i32>("n"), Ok(1));
        assert!(!s.contains("n"));
    }

    #[test]
    fn concurrent_updates_do_not_lose_writes() {
        let s = SharedStore::new();
        s.set("list", Vec::<usize>::new());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = s.clone();
                scope.spawn(move || {
                    for i in 0..250 {
                        s.update("list", |v: &mut Vec<usize>| v.push(t * 1000 + i)).unwrap();
                    }
                });
            }
        });
        assert_eq!(s.with("list", |v: &Vec<usize>| v.len()), Ok(1000));
    }

    #[test]
    fn a_panic_while_locked_does_not_poison() {
        let s = SharedStore::new();
        s.set("n", 1_u8);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.update("n", |_: &mut u8| panic!("boom")).ok();
        }));
        assert!(r.is_err());
        assert_eq!(s.get::<u8>("n"), Some(1));
        s.update_or_insert("m", || 0_u8, |m| *m += 2).unwrap();
        assert_eq!(s.keys(), ["m", "n"]);
    }
}
