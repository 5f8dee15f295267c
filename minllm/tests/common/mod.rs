//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

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

/// Runs `f` with a tracing subscriber that writes plain text to a buffer, and
/// returns what it wrote.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}
