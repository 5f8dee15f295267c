//! Access to a flow's store: exclusive in a plain run, through a lock while
//! parallel branches share it, so that `prep` and `post` of different branches
//! never overlap while their `exec`s do.

use std::ops::{Deref, DerefMut};

use futures_util::future::BoxFuture;

/// A lock around a store shared by parallel branches (sync runs).
pub(crate) trait SharedAccess<S>: Sync {
    fn with(&self, f: &mut dyn FnMut(&mut S));
}

impl<S: Send> SharedAccess<S> for parking_lot::Mutex<&mut S> {
    fn with(&self, f: &mut dyn FnMut(&mut S)) {
        let mut guard = self.lock();
        f(&mut guard)
    }
}

/// The store as a node of a sync run sees it.
#[doc(hidden)]
pub struct StoreRef<'a, S> {
    inner: Inner<'a, S>,
}

enum Inner<'a, S> {
    Exclusive(&'a mut S),
    Shared(&'a (dyn SharedAccess<S> + 'a)),
}

impl<'a, S> StoreRef<'a, S> {
    pub(crate) fn exclusive(store: &'a mut S) -> Self {
        StoreRef { inner: Inner::Exclusive(store) }
    }

    pub(crate) fn shared(lock: &'a (dyn SharedAccess<S> + 'a)) -> Self {
        StoreRef { inner: Inner::Shared(lock) }
    }

    /// A shorter-lived handle to the same store.
    pub fn reborrow(&mut self) -> StoreRef<'_, S> {
        match &mut self.inner {
            Inner::Exclusive(s) => StoreRef::exclusive(s),
            Inner::Shared(l) => StoreRef::shared(*l),
        }
    }

    /// Runs `f` with exclusive access to the store.
    #[inline]
    pub fn with<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
        match &mut self.inner {
            Inner::Exclusive(s) => f(s),
            Inner::Shared(lock) => {
                let mut f = Some(f);
                let mut out = None;
                lock.with(&mut |s| {
                    if let Some(f) = f.take() {
                        out = Some(f(s));
                    }
                });
                out.expect("SharedAccess::with calls its closure exactly once")
            }
        }
    }
}

/// A lock around a store shared by concurrent branches (async runs).
pub(crate) trait AsyncSharedAccess<S>: Send + Sync {
    fn lock(&self) -> BoxFuture<'_, tokio::sync::MappedMutexGuard<'_, S>>;
}

impl<S: Send + Sync> AsyncSharedAccess<S> for tokio::sync::Mutex<&mut S> {
    fn lock(&self) -> BoxFuture<'_, tokio::sync::MappedMutexGuard<'_, S>> {
        Box::pin(async move { tokio::sync::MutexGuard::map(tokio::sync::Mutex::lock(self).await, |s| &mut **s) })
    }
}

/// The store as a node of an async run sees it.
#[doc(hidden)]
pub struct AsyncStoreRef<'a, S> {
    inner: AsyncInner<'a, S>,
}

enum AsyncInner<'a, S> {
    Exclusive(&'a mut S),
    Shared(&'a (dyn AsyncSharedAccess<S> + 'a)),
}

/// Exclusive access to the store, held while a hook runs.
#[doc(hidden)]
pub enum StoreGuard<'g, S> {
    Exclusive(&'g mut S),
    Shared(tokio::sync::MappedMutexGuard<'g, S>),
}

impl<S> Deref for StoreGuard<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        match self {
            StoreGuard::Exclusive(s) => s,
            StoreGuard::Shared(g) => g,
        }
    }
}

impl<S> DerefMut for StoreGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        match self {
            StoreGuard::Exclusive(s) => s,
            StoreGuard::Shared(g) => g,
        }
    }
}

impl<'a, S> AsyncStoreRef<'a, S> {
    pub(crate) fn exclusive(store: &'a mut S) -> Self {
        AsyncStoreRef { inner: AsyncInner::Exclusive(store) }
    }

    pub(crate) fn shared(lock: &'a (dyn AsyncSharedAccess<S> + 'a)) -> Self {
        AsyncStoreRef { inner: AsyncInner::Shared(lock) }
    }

    /// A shorter-lived handle to the same store.
    pub fn reborrow(&mut self) -> AsyncStoreRef<'_, S> {
        match &mut self.inner {
            AsyncInner::Exclusive(s) => AsyncStoreRef::exclusive(s),
            AsyncInner::Shared(l) => AsyncStoreRef::shared(*l),
        }
    }

    /// Exclusive access to the store until the guard drops: `Ok` with the
    /// guard at once for a store the run owns, else `Err` with the lock of a
    /// store shared by parallel branches, to await. Not an `async fn`: the
    /// runners lock twice per node, and the common case then awaits nothing.
    /// [`locked!`](crate::access::locked) does both.
    #[inline]
    pub(crate) fn lock_now(&mut self) -> Result<StoreGuard<'_, S>, SharedLock<'_, S>> {
        match &mut self.inner {
            AsyncInner::Exclusive(s) => Ok(StoreGuard::Exclusive(s)),
            AsyncInner::Shared(l) => Err(l.lock()),
        }
    }
}

/// The lock of a store shared by parallel branches, to await.
pub(crate) type SharedLock<'g, S> = BoxFuture<'g, tokio::sync::MappedMutexGuard<'g, S>>;

/// The guard of an async store (an [`AsyncStoreRef`] or an [`AsyncAccess`]),
/// awaiting the lock only when the store is shared.
macro_rules! locked {
    ($store:expr) => {
        match $store.lock_now() {
            Ok(guard) => guard,
            Err(waiting) => $crate::access::StoreGuard::Shared(waiting.await),
        }
    };
}
pub(crate) use locked;

/// A store made shareable between parallel branches (sync runs): a new lock
/// around an exclusive store, or the lock an enclosing parallel run already holds.
pub(crate) enum Share<'a, S> {
    Owned(parking_lot::Mutex<&'a mut S>),
    Borrowed(&'a (dyn SharedAccess<S> + 'a)),
}

impl<S: Send> Share<'_, S> {
    pub(crate) fn access(&self) -> &(dyn SharedAccess<S> + '_) {
        match self {
            Share::Owned(lock) => lock,
            Share::Borrowed(lock) => *lock,
        }
    }
}

impl<'a, S> StoreRef<'a, S> {
    pub(crate) fn share(self) -> Share<'a, S> {
        match self.inner {
            Inner::Exclusive(s) => Share::Owned(parking_lot::Mutex::new(s)),
            Inner::Shared(lock) => Share::Borrowed(lock),
        }
    }
}

/// [`Share`] for async runs.
pub(crate) enum AsyncShare<'a, S> {
    Owned(tokio::sync::Mutex<&'a mut S>),
    Borrowed(&'a (dyn AsyncSharedAccess<S> + 'a)),
}

impl<S: Send + Sync> AsyncShare<'_, S> {
    pub(crate) fn access(&self) -> &(dyn AsyncSharedAccess<S> + '_) {
        match self {
            AsyncShare::Owned(lock) => lock,
            AsyncShare::Borrowed(lock) => *lock,
        }
    }
}

impl<'a, S> AsyncStoreRef<'a, S> {
    pub(crate) fn share(self) -> AsyncShare<'a, S> {
        match self.inner {
            AsyncInner::Exclusive(s) => AsyncShare::Owned(tokio::sync::Mutex::new(s)),
            AsyncInner::Shared(lock) => AsyncShare::Borrowed(lock),
        }
    }
}

/// How a node runner reaches the store in a sync run: `&mut S` where the run
/// owns it (`flow!` code, nodes run alone), a [`StoreRef`] in runtime flows.
/// The runners are written once against this ([`AsyncAccess`] in async runs).
pub(crate) trait Access<S> {
    fn with_store<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R;
}

impl<S> Access<S> for &mut S {
    #[inline(always)]
    fn with_store<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
        f(self)
    }
}

impl<S> Access<S> for StoreRef<'_, S> {
    #[inline(always)]
    fn with_store<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
        self.with(f)
    }
}

/// How an async runner reaches the store: `&mut S` where the run owns it
/// (`flow!` code, nodes run alone), an [`AsyncStoreRef`] in runtime flows.
pub(crate) trait AsyncAccess<S>: Send {
    /// The guard at once, or the lock to await (a store shared by branches).
    fn lock_now(&mut self) -> Result<StoreGuard<'_, S>, SharedLock<'_, S>>;
}

impl<S: Send + Sync> AsyncAccess<S> for &mut S {
    #[inline(always)]
    fn lock_now(&mut self) -> Result<StoreGuard<'_, S>, SharedLock<'_, S>> {
        Ok(StoreGuard::Exclusive(self))
    }
}

impl<S: Send + Sync> AsyncAccess<S> for AsyncStoreRef<'_, S> {
    #[inline(always)]
    fn lock_now(&mut self) -> Result<StoreGuard<'_, S>, SharedLock<'_, S>> {
        AsyncStoreRef::lock_now(self)
    }
}
