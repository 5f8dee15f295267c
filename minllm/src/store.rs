//! `SharedStore`: the string-keyed store of runtime-built flows.

use std::any::{Any, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

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

type Map = HashMap<String, Entry>;

thread_local! {
    /// The stores whose lock this thread holds while a closure given to them
    /// runs: the map's address, whether the lock is exclusive, and the method.
    static HELD: std::cell::RefCell<Vec<(usize, bool, &'static str)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes, while it lives, that this thread holds a store's lock for a closure.
struct Holding;

impl Holding {
    fn new(store: &SharedStore, exclusive: bool, method: &'static str) -> Holding {
        HELD.with(|held| held.borrow_mut().push((store.id(), exclusive, method)));
        Holding
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HELD.with(|held| held.borrow_mut().pop());
    }
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
///
/// The closures given to [`with`](Self::with), [`update`](Self::update) and
/// [`update_or_insert`](Self::update_or_insert) run while the store is locked:
/// using the store inside them panics with a message saying so (only reading
/// inside `with` is allowed), where it would otherwise wait forever.
#[derive(Clone, Default)]
pub struct SharedStore {
    map: Arc<RwLock<Map>>,
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
    /// read lock meanwhile: keep `f` short.
    ///
    /// # Panics
    ///
    /// When `f` writes to this store (that would wait forever for the lock `f`
    /// runs under); reading it is fine.
    pub fn with<T: Any, R>(&self, key: &str, f: impl FnOnce(&T) -> R) -> Result<R, StoreError> {
        let map = self.read("with");
        let entry = map.get(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        match entry.value.downcast_ref::<T>() {
            Some(v) => {
                let _holding = Holding::new(self, false, "with");
                Ok(f(v))
            }
            None => Err(wrong_type::<T>(key, entry)),
        }
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn set<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        let entry = Entry { value: Box::new(value), type_name: type_name::<T>() };
        self.write("set").insert(key.into(), entry);
    }

    /// Changes the value under `key` in place, under the write lock, so that
    /// concurrent updates (e.g. pushing to a list) do not lose each other.
    ///
    /// # Panics
    ///
    /// When `f` uses this store at all: it runs under the store's exclusive
    /// lock, which any other access would wait for forever.
    pub fn update<T: Any, R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> Result<R, StoreError> {
        let mut map = self.write("update");
        let entry = map.get_mut(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        let found = entry.type_name;
        match entry.value.downcast_mut::<T>() {
            Some(v) => {
                let _holding = Holding::new(self, true, "update");
                Ok(f(v))
            }
            None => Err(StoreError::WrongType { key: key.to_owned(), expected: type_name::<T>(), found }),
        }
    }

    /// Like [`update`](Self::update), inserting `default()` first when the key
    /// is missing. Panics as `update` does when `default` or `f` use the store.
    pub fn update_or_insert<T: Any + Send + Sync, R>(
        &self,
        key: &str,
        default: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, StoreError> {
        let mut map = self.write("update_or_insert");
        let _holding = Holding::new(self, true, "update_or_insert");
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
        self.write("remove").remove(key).is_some()
    }

    /// Removes and returns the value under `key` when it has type `T`; a value of
    /// another type stays in the store.
    pub fn take<T: Any>(&self, key: &str) -> Result<T, StoreError> {
        let mut map = self.write("take");
        let entry = map.get(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        if !entry.value.is::<T>() {
            return Err(wrong_type::<T>(key, entry));
        }
        let entry = map.remove(key).ok_or_else(|| StoreError::Missing { key: key.to_owned() })?;
        entry.value.downcast::<T>().map(|b| *b).map_err(|_| StoreError::Missing { key: key.to_owned() })
    }

    /// Whether a value is stored under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.read("contains").contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.read("keys").keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.read("len").len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.read("is_empty").is_empty()
    }

    /// Removes every value.
    pub fn clear(&self) {
        self.write("clear").clear();
    }

    /// Whether `self` and `other` are handles to the same store.
    pub fn ptr_eq(&self, other: &SharedStore) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.map) as usize
    }

    /// Whether this thread runs a closure under this store's lock: `Some(true)`
    /// when that lock is exclusive.
    fn held(&self) -> Option<(bool, &'static str)> {
        let id = self.id();
        HELD.with(|held| {
            held.borrow().iter().rev().find(|h| h.0 == id).map(|&(_, exclusive, method)| (exclusive, method))
        })
    }

    /// The read lock, for `method`.
    fn read(&self, method: &'static str) -> RwLockReadGuard<'_, Map> {
        match self.held() {
            None => self.map.read(),
            // Inside `with`: a second read must not queue behind a waiting writer.
            Some((false, _)) => self.map.read_recursive(),
            Some((true, holder)) => reentered(method, holder),
        }
    }

    /// The write lock, for `method`.
    fn write(&self, method: &'static str) -> RwLockWriteGuard<'_, Map> {
        match self.held() {
            None => self.map.write(),
            Some((_, holder)) => reentered(method, holder),
        }
    }
}

impl SharedStore {
    /// Calls `f` with each key, value and type name (for checkpoints), under
    /// the read lock.
    pub(crate) fn for_each_value(&self, mut f: impl FnMut(&str, &(dyn Any + Send + Sync), &'static str)) {
        let map = self.read("checkpoint");
        for (key, entry) in map.iter() {
            f(key, entry.value.as_ref(), entry.type_name);
        }
    }

    /// Replaces every value with `values` (a checkpoint being loaded).
    pub(crate) fn replace_all(&self, values: Vec<(String, Box<dyn Any + Send + Sync>, &'static str)>) {
        let mut map = self.write("resume");
        map.clear();
        for (key, value, type_name) in values {
            map.insert(key, Entry { value, type_name });
        }
    }
}

/// The documented panic for a store used inside one of its own closures.
#[cold]
#[track_caller]
fn reentered(method: &str, holder: &str) -> ! {
    panic!(
        "SharedStore::{method} was called inside the closure given to SharedStore::{holder} on the same store, \
         which would wait forever for the lock that closure runs under; use the store before or after the closure"
    )
}

fn wrong_type<T>(key: &str, entry: &Entry) -> StoreError {
    StoreError::WrongType { key: key.to_owned(), expected: type_name::<T>(), found: entry.type_name }
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.read("fmt");
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
    fn using_the_store_inside_its_own_closures_panics_instead_of_hanging() {
        let s = SharedStore::new();
        s.set("n", 1_u8);
        let inside_update = [
            (
                "get",
                Box::new(|s: &SharedStore| {
                    let _ = s.get::<u8>("n");
                }) as Box<dyn Fn(&SharedStore)>,
            ),
            ("set", Box::new(|s: &SharedStore| s.set("m", 2_u8))),
            (
                "len",
                Box::new(|s: &SharedStore| {
                    let _ = s.len();
                }),
            ),
            ("update", Box::new(|s: &SharedStore| drop(s.update("n", |_: &mut u8| ())))),
        ];
        for (method, use_it) in &inside_update {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                s.update("n", |_: &mut u8| use_it(&s)).ok();
            }));
            let message = r.map(|_| String::new()).unwrap_err().downcast::<String>().map(|m| *m).unwrap_or_default();
            assert_eq!(
                message,
                format!(
                    "SharedStore::{} was called inside the closure given to SharedStore::update on the same store, \
                     which would wait forever for the lock that closure runs under; use the store before or after the closure",
                    if *method == "get" { "with" } else { method }
                )
            );
        }
        // Writing inside `with` and `update_or_insert` is refused the same way.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.with("n", |_: &u8| s.remove("n")).ok()));
        assert!(r.is_err());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.update_or_insert("k", || s.get::<u8>("n").unwrap_or(0), |_| ()).ok()
        }));
        assert!(r.is_err());
        // Reading inside `with` works; the store is usable after every panic.
        assert_eq!(s.with("n", |n: &u8| *n + s.get::<u8>("n").unwrap_or(0)), Ok(2));
        assert_eq!(s.keys(), ["n"]);
        s.update("n", |n: &mut u8| *n = 5).unwrap();
        assert_eq!(s.get::<u8>("n"), Some(5));
    }

    #[test]
    fn len_clear_and_identity() {
        let a = SharedStore::new();
        assert!(a.is_empty() && a.is_empty());
        a.set("x", 1_u8);
        a.set("y", 2_u8);
        assert_eq!(a.len(), 2);
        assert!(!a.is_empty());
        let b = SharedStore::new();
        assert!(!a.ptr_eq(&b) && a.ptr_eq(&a.clone()));
        // Another store may be used inside this one's closures.
        a.update("x", |x: &mut u8| b.set("copied", *x)).unwrap();
        assert_eq!(b.get::<u8>("copied"), Some(1));
        assert_eq!(format!("{a:?}"), r#"{"x": "u8", "y": "u8"}"#);
        a.clear();
        assert!(a.is_empty() && a.keys().is_empty());
        assert_eq!(b.len(), 1, "clearing one store leaves the others");
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
