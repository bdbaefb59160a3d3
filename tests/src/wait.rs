//! Waiting for a condition, with a deadline: the one `eventually` of the
//! tests (no sleep where a condition can be polled, no wait without an end).

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls `done` every 10 ms until it holds.
///
/// # Panics
///
/// When it does not hold within `within`; the message names `what`.
pub async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] with a condition that awaits (reads a cache, pokes it
/// first).
///
/// # Panics
///
/// As [`eventually`].
pub async fn eventually_async(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(POLL).await;
    }
}
