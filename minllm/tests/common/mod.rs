//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use minllm::{ExecContext, Node, NodeResult, Params, SharedStore};

/// Appends its name to the store's `trace` list and returns a fixed action.
pub struct Mark {
    pub name: &'static str,
    pub action: &'static str,
}

pub fn mark(name: &'static str) -> Mark {
    Mark { name, action: "" }
}

impl Node for Mark {
    type Prep = ();
    type Exec = ();
    type Action = &'static str;
    fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
        Ok(())
    }
    fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<&'static str> {
        push(store, self.name);
        Ok(self.action)
    }
}

pub fn push(store: &SharedStore, entry: impl Into<String>) {
    store.update_or_insert("trace", Vec::new, |t: &mut Vec<String>| t.push(entry.into())).unwrap();
}

pub fn trace(store: &SharedStore) -> Vec<String> {
    store.get::<Vec<String>>("trace").unwrap_or_default()
}

thread_local! {
    /// Where this thread's log lines go while `capture_logs` runs.
    static CAPTURE: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Writes to the capturing buffer of the current thread, if any.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buf) = &*c.borrow() {
                buf.lock().unwrap().extend_from_slice(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns the plain-text log lines written on this thread
/// meanwhile.
///
/// One global subscriber, set on first use, serves the whole test binary. A
/// subscriber set per test with `with_default` was not reliable while other
/// tests ran: a callsite first hit on another thread while that subscriber was
/// being registered could cache "never interested" and lose the test's lines.
/// The interest cache is rebuilt once more for callsites that were mid-way
/// through registration when the global subscriber was set.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadSink)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    tracing::callsite::rebuild_interest_cache();
    let buf = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|c| *c.borrow_mut() = Some(buf.clone()));
    let out = f();
    CAPTURE.with(|c| *c.borrow_mut() = None);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    (out, text)
}

/// How long a test waits for something that only fails to come when the code
/// under test is wrong: far longer than any scheduling delay.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long an item that saw a sibling fail holds on before it returns: far
/// longer than the runtime takes to act on that failure (microseconds), so that
/// its thread does not take another item before the failure cancels the batch.
pub const MARGIN: Duration = Duration::from_millis(200);

/// Blocks the thread until `done` holds, or PATIENCE passes.
pub fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits on the runtime until `done` holds, or PATIENCE passes.
pub async fn wait_until_async(done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Counts what runs at once. Each visitor that arrives before any has left
/// waits until `target` were inside at once (or PATIENCE passes), then stays
/// for `hold`: time for one more visitor to come in, if a cap let it. So a cap
/// below the target shows as a peak below it, and one above it (or none) as a
/// peak above it.
#[derive(Default)]
pub struct Gauge {
    target: usize,
    now: AtomicUsize,
    peak: AtomicUsize,
    left: AtomicUsize,
}

impl Gauge {
    pub fn new(target: usize) -> Self {
        Gauge { target, ..Gauge::default() }
    }

    fn arrive(&self) -> bool {
        self.peak.fetch_max(self.now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        self.left.load(Ordering::SeqCst) == 0
    }

    fn depart(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.left.fetch_add(1, Ordering::SeqCst);
    }

    /// One visit, blocking the thread while it waits.
    pub fn visit(&self, hold: Duration) {
        if self.arrive() {
            wait_until(|| self.peak() >= self.target);
        }
        std::thread::sleep(hold);
        self.depart();
    }

    /// One visit, waiting on the runtime.
    pub async fn visit_async(&self, hold: Duration) {
        if self.arrive() {
            wait_until_async(|| self.peak() >= self.target).await;
        }
        tokio::time::sleep(hold).await;
        self.depart();
    }

    /// The most visitors inside at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// How many visits ended.
    pub fn visits(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }

    /// Forgets what was seen, for a second run.
    pub fn reset(&self) {
        self.peak.store(0, Ordering::SeqCst);
        self.left.store(0, Ordering::SeqCst);
    }
}
