//! Warnings raised while a run is set up (a batch size larger than the data, …): collected on
//! the current thread and reported by the [`Runner`](crate::run::Runner) in
//! [`RunSummary::warnings`](crate::run::RunSummary::warnings), which the command line prints.
//!
//! A thread-local list rather than a logger: the library prints nothing, and the run that
//! raised a warning is the one that reports it (runs on other threads keep their own).

use std::cell::RefCell;

thread_local! {
    static PENDING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// At most this many distinct warnings wait on one thread (a loop that warns cannot grow the
/// list without bound when nobody collects it).
const MAX_PENDING: usize = 64;

/// Raises `message` on this thread (once: a repeated message is kept once).
pub fn warn(message: impl Into<String>) {
    let message = message.into();
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.len() < MAX_PENDING && !pending.contains(&message) {
            pending.push(message);
        }
    });
}

/// Takes the warnings raised on this thread since the last call.
pub fn take() -> Vec<String> {
    PENDING.with(|pending| std::mem::take(&mut *pending.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_taken_once_and_deduplicated() {
        let _ = take();
        warn("a");
        warn("b");
        warn("a");
        assert_eq!(take(), ["a", "b"]);
        assert!(take().is_empty());
    }
}
