//! Work that may happen only once a write committed, such as starting a run that was queued and
//! claimed inside that write: [`after_commit`] registers it from inside [`super::Store::write`],
//! the store runs it right after the write's transaction committed (before the caller hears of
//! it), and drops it unrun when the write, or the group it was committed with, rolled back.
//!
//! The store runs it, not the caller, because a caller can go away between the commit and its
//! answer (an HTTP client that hangs up cancels its request), and the work must not go with it.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

/// One registered piece of work.
type Callback = Box<dyn FnOnce() + Send>;

thread_local! {
    /// The callbacks of the write running on this thread; `None` outside a write.
    static PENDING: RefCell<Option<Vec<Callback>>> = const { RefCell::new(None) };
}

/// Runs `f` once the transaction of the write in progress on this thread committed. Returns false
/// (and drops `f`) when this thread runs no [`super::Store::write`] (a read, or a test's own
/// transaction): the caller then does without.
///
/// `f` runs on the thread that committed (the writer thread on SQLite), so it must be quick and
/// must not block: hand anything longer to a runtime (`tokio::runtime::Handle::spawn`).
pub fn after_commit(f: impl FnOnce() + Send + 'static) -> bool {
    PENDING.with(|p| match &mut *p.borrow_mut() {
        Some(pending) => {
            pending.push(Box::new(f));
            true
        }
        None => false,
    })
}

/// Whether a [`super::Store::write`] is running on this thread (so [`after_commit`] would take
/// work).
pub fn in_write() -> bool {
    PENDING.with(|p| p.borrow().is_some())
}

/// What one write registered, to run if it committed.
#[must_use = "run it once the transaction committed, or drop it if it rolled back"]
pub(super) struct Committed(Vec<Callback>);

impl Committed {
    /// Runs the work in registration order. A panic in one is logged and does not stop the
    /// others (nor the writer thread).
    pub(super) fn run(self) {
        for f in self.0 {
            if std::panic::catch_unwind(AssertUnwindSafe(f)).is_err() {
                tracing::error!("Work registered to run after a commit panicked.");
            }
        }
    }
}

/// Restores the enclosing collection (normally none) even if the write panicked.
struct Restore(Option<Option<Vec<Callback>>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            PENDING.with(|p| *p.borrow_mut() = outer);
        }
    }
}

/// Runs one write, collecting what it registers with [`after_commit`].
pub(super) fn collecting<T>(write: impl FnOnce() -> T) -> (T, Committed) {
    let mut restore = Restore(Some(PENDING.with(|p| p.replace(Some(Vec::new())))));
    let out = write();
    let mine = PENDING.with(|p| p.replace(restore.0.take().flatten()));
    (out, Committed(mine.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn outside_a_write_nothing_is_registered() {
        assert!(!in_write());
        assert!(!after_commit(|| {}));
    }

    #[test]
    fn a_write_collects_its_own_work_and_leaves_none_behind() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let (out, committed) = collecting(|| {
            assert!(in_write());
            assert!(after_commit(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }));
            7
        });
        assert_eq!(out, 7);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "nothing runs before the commit"
        );
        committed.run();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(!after_commit(|| {}), "the collection ended with the write");
    }

    #[test]
    fn a_panicking_write_leaves_no_collection_open() {
        let r = std::panic::catch_unwind(|| {
            collecting(|| {
                after_commit(|| {});
                panic!("write failed");
            })
        });
        assert!(r.is_err());
        assert!(!after_commit(|| {}));
    }
}
