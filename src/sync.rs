//! The one way the crate takes a lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering it when a thread panicked while holding it: every value the crate
/// guards stays consistent between statements (counters, queues of reports), so what the
/// panicking thread left is still good to read and write.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
