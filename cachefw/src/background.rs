//! Work a cache finishes on its own, after the caller that started it has
//! its answer: refreshes ahead of expiry, revalidations of stale entries,
//! and loads that outlived their `load_timeout`. Plus the fail-safe
//! throttle, which spares a failing source for a while after a stale value
//! was served in its place.
//!
//! Background tasks are aborted when the last handle on the cache drops,
//! and waited for (up to a patience) by `Cache::shutdown`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// Keys the fail-safe throttle remembers before it forgets the expired.
const THROTTLE_KEYS: usize = 10_000;

#[derive(Default)]
pub(crate) struct Background {
    tasks: Mutex<JoinSet<()>>,
    /// Per key, until when a failed source is spared (fail-safe).
    throttled: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Background {
    /// Runs `task` as the cache's own background work: it is aborted when
    /// the last handle on the cache is dropped, and waited for by
    /// `shutdown`. Outside a runtime, nothing runs.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut tasks = lock(&self.tasks);
        // Finished tasks are reaped here, so the set holds only live ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(task, &runtime);
    }

    /// Aborts the background work (the last handle was dropped).
    pub(crate) fn abort(&self) {
        lock(&self.tasks).abort_all();
    }

    /// Waits for the background work, at most `patience`; aborts what is
    /// left then.
    pub(crate) async fn shutdown(&self, patience: Duration) {
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let drained = tokio::time::timeout(patience, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
    }

    /// Whether `full`'s source is spared after a failed load (fail-safe).
    pub(crate) fn throttled(&self, full: &str) -> bool {
        lock(&self.throttled)
            .get(full)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Spares `full`'s source for `period`.
    pub(crate) fn throttle(&self, full: &str, period: Duration) {
        let now = Instant::now();
        let mut throttled = lock(&self.throttled);
        if throttled.len() >= THROTTLE_KEYS {
            throttled.retain(|_, until| *until > now);
        }
        throttled.insert(full.to_owned(), now + period);
    }
}
