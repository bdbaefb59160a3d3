//! Counting and logging cache failures without flooding the log, and
//! warning once per attribute that has no cache.
//!
//! A dead Redis fails every call; logging each would bury everything else.
//! Each kind of failure (timeout, unavailable, redis, decode, …) is logged
//! at most once per window, with how many of that kind were held back
//! since its last line. A success does not reset the window, so a fault
//! that comes and goes logs a few lines a minute, not one per flap. When
//! the backend answers again after failing, that is logged too, at most
//! once per window.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::stats::Counters;

/// The least time between two lines about one kind of failure.
pub(crate) const WINDOW: Duration = Duration::from_secs(15);

/// The log state of one kind of failure.
struct Kind {
    name: &'static str,
    last_line: Option<Instant>,
    held_back: u64,
}

pub(crate) struct Reporter {
    kinds: Mutex<Vec<Kind>>,
    /// Whether the backend's last failure has not been followed by an answer.
    failing: AtomicBool,
    last_recovery: Mutex<Option<Instant>>,
}

impl Reporter {
    pub(crate) fn new() -> Self {
        Self {
            kinds: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
            last_recovery: Mutex::new(None),
        }
    }

    /// Notes that the backend answered; logs the recovery after failures.
    /// Whether it had been failing.
    pub(crate) fn answered(&self, backend: &str) -> bool {
        // A plain load first: the hit path pays no write to a shared line.
        if !self.failing.load(Ordering::Relaxed) || !self.failing.swap(false, Ordering::Relaxed) {
            return false;
        }
        let mut last = self
            .last_recovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= WINDOW) {
            *last = Some(Instant::now());
            tracing::info!(backend, "cachefw: the cache backend answers again");
        }
        true
    }

    /// Counts `error` in `stats` and logs it unless its kind was logged
    /// within the window.
    pub(crate) fn failure(&self, stats: &Counters, backend: &str, error: &Error) {
        stats.error();
        if matches!(error, Error::Unavailable { .. }) {
            stats.short_circuited();
        }
        if error.is_backend_failure() {
            self.failing.store(true, Ordering::Relaxed);
        }
        let name = error.kind();
        let held_back = {
            let mut kinds = self
                .kinds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = match kinds.iter().position(|kind| kind.name == name) {
                Some(index) => index,
                None => {
                    kinds.push(Kind {
                        name,
                        last_line: None,
                        held_back: 0,
                    });
                    kinds.len() - 1
                }
            };
            let kind = &mut kinds[index];
            if kind.last_line.is_some_and(|at| at.elapsed() < WINDOW) {
                kind.held_back += 1;
                return;
            }
            kind.last_line = Some(Instant::now());
            std::mem::take(&mut kind.held_back)
        };
        tracing::warn!(
            backend,
            kind = name,
            %error,
            held_back,
            "cachefw: cache operation failed; callers are served from the source \
             (held_back: failures of this kind not logged since its last line)"
        );
    }
}

/// Warns that `attribute` on `site` (`module_path!()::name`, at `at`) ran
/// with no cache: it names none and none is installed, so it `missed` what
/// it is there for. The caller logs this once per attribute.
pub(crate) fn uninstalled(
    site: &'static str,
    at: &'static str,
    attribute: &'static str,
    missed: &'static str,
) {
    tracing::warn!(
        function = site,
        at,
        "cachefw: {attribute} on `{site}` {missed}. It names no `cache = …`, and no cache is \
         installed: give it `cache = …` (on a method, `#[cache_config(cache = self.cache)]` on \
         its impl block gives every attribute there that cache), or call \
         cachefw::install(cache) at start-up. Logged once for this attribute, at {at}."
    );
}
