//! The error `interrupt` pauses a run with, and how the engine knows it.

/// The marker error of [`interrupt`](super::interrupt): not retried, not given to a fallback.
#[derive(Debug)]
pub(crate) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the node called interrupt(): the run pauses for an answer")
    }
}

impl std::error::Error for Interrupted {}

/// Whether `error` (or what caused it) is an [`interrupt`](super::interrupt).
pub(crate) fn is_interrupt(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(error);
    while let Some(e) = at {
        if e.is::<Interrupted>() {
            return true;
        }
        at = e.source();
    }
    false
}
