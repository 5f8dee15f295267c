//! Where a step runs: the path of flows around it, the stack it may still
//! use, and the cancel flag of its parallel branch.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

/// One flow of a [`FlowPath`]: its name and, for a batch flow's runs, the item.
#[derive(Clone, Copy)]
pub(crate) struct Seg<'a> {
    pub(crate) name: &'a str,
    pub(crate) item: Option<usize>,
}

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        match self.item {
            Some(i) => write!(f, "[{i}]"),
            None => Ok(()),
        }
    }
}

/// The path of flows a step runs in, printed as `outer > batch[3] > inner`.
///
/// A path links to its parent's; the flows a run enters in place (nested
/// flows, without native recursion) are a slice of the runner's own.
#[derive(Clone, Copy)]
#[doc(hidden)]
pub struct FlowPath<'a> {
    parent: Option<&'a FlowPath<'a>>,
    head: Seg<'a>,
    tail: &'a [Seg<'a>],
}

impl<'a> FlowPath<'a> {
    #[inline]
    pub fn root(name: &'a str) -> Self {
        FlowPath { parent: None, head: Seg { name, item: None }, tail: &[] }
    }

    #[inline]
    pub(crate) fn child(&'a self, name: &'a str, item: Option<usize>) -> FlowPath<'a> {
        FlowPath { parent: Some(self), head: Seg { name, item }, tail: &[] }
    }

    /// This path followed by the flows `inner`.
    #[inline]
    pub(crate) fn extended(&'a self, inner: &'a [Seg<'a>]) -> FlowPath<'a> {
        match inner.split_first() {
            None => *self,
            Some((head, tail)) => FlowPath { parent: Some(self), head: *head, tail },
        }
    }

    /// Whether this is the path of an outermost flow.
    #[inline]
    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none() && self.tail.is_empty()
    }
}

impl fmt::Display for FlowPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Outermost first, without recursion: paths can be very long.
        let mut chain = vec![self];
        while let Some(parent) = chain.last().and_then(|p| p.parent) {
            chain.push(parent);
        }
        for (i, path) in chain.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{}", path.head)?;
            for seg in path.tail {
                write!(f, " > {seg}")?;
            }
        }
        Ok(())
    }
}

/// Native recursion (a batch flow inside a batch flow's inner flow, and so on)
/// stops with [`Error::TooDeep`] before the thread's stack runs out. Outermost
/// runs are never refused, whatever their thread's stack.
pub(crate) fn check_stack(path: &FlowPath<'_>) -> Result<(), Error> {
    /// What a nested run keeps free for the nodes it runs.
    const RESERVE: usize = 128 * 1024;
    if path.is_root() {
        return Ok(());
    }
    match stacker::remaining_stack() {
        Some(left) if left < RESERVE => Err(Error::TooDeep { flow: path.to_string(), left }),
        _ => Ok(()),
    }
}

/// Set when a parallel sibling failed; checked between steps, items and retries.
#[doc(hidden)]
pub struct Cancel<'a> {
    flag: AtomicBool,
    parent: Option<&'a Cancel<'a>>,
}

impl<'a> Cancel<'a> {
    pub(crate) fn new(parent: Option<&'a Cancel<'a>>) -> Self {
        Cancel { flag: AtomicBool::new(false), parent }
    }

    pub(crate) fn cancel(&self) {
        // Release/Acquire: whoever sees the flag also sees the error stored before it.
        self.flag.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.parent.is_some_and(Cancel::is_cancelled)
    }
}

pub(crate) fn is_cancelled(cancel: Option<&Cancel<'_>>) -> bool {
    cancel.is_some_and(Cancel::is_cancelled)
}
