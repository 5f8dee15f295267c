//! Journaled steps of a sync `flow!` machine, whose nodes are borrowed, not
//! shared: a journal takes a step as a `'static` future, so the step's work
//! runs on a scoped thread that waits for the journal to poll the future (a
//! replayed step is never polled, and its thread quits unrun). The machine's
//! thread meanwhile drives the journal ([`drive_here`]).

use std::future::Future;
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Scope;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::durable::steps::failed_step;

/// What a step's thread hears first: run the work and reply, or quit.
type Go = Option<oneshot::Sender<Vec<u8>>>;

/// The scoped threads of one node's steps.
pub(crate) struct Bridge<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    waiting: Mutex<Vec<mpsc::Sender<Go>>>,
}

impl<'scope, 'env> Bridge<'scope, 'env> {
    pub(crate) fn new(scope: &'scope Scope<'scope, 'env>) -> Self {
        Bridge { scope, waiting: Mutex::new(Vec::new()) }
    }

    /// The step future of `work`, which runs on a thread of the scope when
    /// the journal polls the future.
    pub(crate) fn step(&self, work: impl FnOnce() -> Vec<u8> + Send + 'scope) -> BoxFuture<'static, Vec<u8>> {
        let (go, heard) = mpsc::channel::<Go>();
        self.waiting.lock().push(go.clone());
        self.scope.spawn(move || {
            if let Ok(Some(reply)) = heard.recv() {
                let _ = reply.send(work());
            }
        });
        Box::pin(async move {
            let (reply, result) = oneshot::channel();
            if go.send(Some(reply)).is_err() {
                return gone("its node's run had ended");
            }
            result.await.unwrap_or_else(|_| gone("its thread ended without a result"))
        })
    }

    /// Tells the threads whose steps were not polled to quit (the scope then
    /// joins them all).
    pub(crate) fn quit(&self) {
        for go in self.waiting.lock().drain(..) {
            let _ = go.send(None);
        }
    }
}

fn gone(why: &str) -> Vec<u8> {
    failed_step(format!("the step did not run: {why}"), 1)
}

/// Drives `future` (a node's journaled steps) on this thread, which a sync
/// machine holds: in place on a multi-thread tokio runtime, parked between
/// polls on a thread of no runtime (a machine run on a thread of its own);
/// `None` on a current-thread runtime, which has no thread to spare.
pub(crate) fn drive_here<F: Future>(future: F) -> Option<F::Output> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Some(tokio::task::block_in_place(|| handle.block_on(future)))
        }
        Ok(_) => None,
        Err(_) => Some(block_on_parked(future)),
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to its end on this thread, parked while it waits.
pub(crate) fn block_on_parked<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
