//! One write at a time per row, within a process: write-behind takes a
//! write's timestamp and updates the cached row under this lock, so that
//! the cache sees a process's writes of a row in timestamp order (a patch
//! applied to the cached row must not land before an older write of it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// The rows being written, each with its lock.
#[derive(Default)]
pub(crate) struct RowLocks {
    rows: Mutex<HashMap<String, Row>>,
}

/// A row's lock, and how many writes hold it or wait for it.
struct Row {
    lock: Arc<tokio::sync::Mutex<()>>,
    interested: usize,
}

/// A row's lock, held until dropped (a cancelled write lets it go too).
pub(crate) struct RowLock<'a> {
    locks: &'a RowLocks,
    key: String,
    held: Option<OwnedMutexGuard<()>>,
}

impl RowLocks {
    /// Waits for the row with cache key `key`.
    pub(crate) async fn lock(&self, key: &str) -> RowLock<'_> {
        let row = {
            let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
            let row = rows.entry(key.to_owned()).or_insert_with(|| Row {
                lock: Arc::default(),
                interested: 0,
            });
            row.interested += 1;
            row.lock.clone()
        };
        // Made before the wait: a caller cancelled while waiting still
        // removes the row's entry when it is the last one interested.
        let mut lock = RowLock {
            locks: self,
            key: key.to_owned(),
            held: None,
        };
        lock.held = Some(row.lock_owned().await);
        lock
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for RowLock<'_> {
    fn drop(&mut self) {
        self.held = None;
        let mut rows = self
            .locks
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = rows.get_mut(&self.key) {
            row.interested = row.interested.saturating_sub(1);
            if row.interested == 0 {
                rows.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn writes_of_a_row_wait_for_each_other_and_leave_nothing() {
        let locks = RowLocks::default();
        let first = locks.lock("a").await;
        let other = locks.lock("b").await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.lock("a")).await;
        assert!(waiting.is_err(), "the second write of a row waits");
        drop(other);
        assert_eq!(locks.len(), 1);
        drop(first);
        assert_eq!(locks.len(), 0, "a cancelled waiter left no entry behind");
        let again = locks.lock("a").await;
        drop(again);
        assert_eq!(locks.len(), 0);
    }
}
