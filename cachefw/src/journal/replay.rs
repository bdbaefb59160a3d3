//! The replay of stranded evictions: a task per cache that runs while
//! evictions wait, and sends them to Redis every [`REPLAY_EVERY`] until
//! none is left.
//!
//! While evictions wait, an open breaker lets only the replay through (and
//! its first answered command closes it; see `backend/breaker.rs`), so they
//! land before this cache's reads go to Redis again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Eviction, Journal, Replayer};
use crate::inner::Inner;

/// While evictions wait, the replay tries them this often, whatever the
/// breaker's interval (its commands are the probes: see `breaker.rs`), so
/// that they land within about this long of Redis answering again. An
/// answer from Redis to another call hurries it.
const REPLAY_EVERY: Duration = Duration::from_millis(100);
/// After an answer woke it, the replay still waits this long: a Redis that
/// answers for some keys but not others must not spin it.
const WOKEN_PAUSE: Duration = Duration::from_millis(20);
/// A pass that scans (a prefix eviction, a clear after an overflow) and
/// fails waits longer each time, up to this.
const MAX_SCAN_PAUSE: Duration = Duration::from_secs(1);
/// Keys per replayed batch: a batch that reaches Redis is struck off even
/// if a later one does not.
const REPLAY_BATCH: usize = 500;

impl Replayer for Inner {
    fn start_replay(&self) {
        // The guard exists before the task does: a task dropped unpolled
        // (its runtime is shutting down) still clears the flag.
        let flag = Replaying {
            me: self.me(),
            finished: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(replay(flag))),
            Err(_) => drop(flag),
        }
    }
}

/// How a replay pass went.
struct Pass {
    /// Whether any eviction reached Redis.
    progressed: bool,
    /// Whether it had to scan the keyspace (a prefix eviction, or a clear
    /// after an overflow): a pass not to repeat faster than the backoff.
    scans: bool,
}

/// Clears the replay flag however the task ends: done, or dropped with its
/// runtime (even before it first ran). A task that finished restarts the
/// replay when evictions were stranded after its last look; one dropped by
/// a shutting-down runtime does not (the next failure or answer will).
struct Replaying {
    me: Weak<Inner>,
    finished: bool,
}

impl Drop for Replaying {
    fn drop(&mut self) {
        if let Some(inner) = self.me.upgrade() {
            // Nobody probes for the replay now: the breakers' own probes
            // resume.
            inner.backend().replay_first(false);
            let journal = inner.journal();
            journal.replay_stopped();
            if self.finished && !journal.is_settled() {
                journal.request_replay();
            }
        }
    }
}

/// Replays pending evictions until none is left or the cache is dropped,
/// every [`REPLAY_EVERY`] while Redis does not take them. Holds the cache
/// only while a pass runs.
async fn replay(mut flag: Replaying) {
    let mut scan_pause = REPLAY_EVERY;
    loop {
        let Some(inner) = flag.me.upgrade() else {
            return;
        };
        if inner.journal().is_settled() {
            flag.finished = true;
            return;
        }
        inner.backend().replay_first(true);
        let pass = crate::backend::breaker::replaying(pass(&inner)).await;
        if inner.journal().is_settled() {
            flag.finished = true;
            return;
        }
        let wake = inner.journal().wake.clone();
        drop(inner);
        if pass.scans && !pass.progressed {
            // A scan that failed (a primary still unreachable) waits out a
            // growing pause: answers from the other nodes must not repeat
            // it.
            scan_pause = (scan_pause * 2).min(MAX_SCAN_PAUSE);
            tokio::time::sleep(scan_pause).await;
            continue;
        }
        scan_pause = REPLAY_EVERY;
        tokio::select! {
            () = tokio::time::sleep(REPLAY_EVERY) => {}
            () = async {
                wake.notified().await;
                tokio::time::sleep(WOKEN_PAUSE).await;
            } => {}
        }
    }
}

/// One pass over the pending evictions. A failure is not counted again:
/// it is the same outage the original eviction met.
async fn pass(inner: &Arc<Inner>) -> Pass {
    let journal: &Journal = inner.journal();
    let backend = inner.backend();
    let prefix = inner.keys().prefix();
    let backlog = journal.backlog();
    if backlog.overflowed {
        inner.flights().detach_prefix(prefix);
        let cleared = backend.evict_prefix(prefix).await.is_ok();
        if cleared {
            if let Some(near) = inner.near() {
                near.evict_all();
            }
            journal.cleared(backlog.up_to);
        }
        return Pass {
            progressed: cleared,
            scans: true,
        };
    }
    let mut progressed = false;
    let (keys, prefixes): (Vec<_>, Vec<_>) = backlog
        .targets
        .into_iter()
        .partition(|(target, _)| matches!(target, Eviction::Key(_)));
    let prefixes_empty = prefixes.is_empty();
    for (target, seq) in prefixes {
        if let Eviction::Prefix(prefix) = &target
            && backend.evict_prefix(prefix).await.is_ok()
        {
            inner.near_evict(std::slice::from_ref(&target));
            journal.confirm(&target, seq);
            progressed = true;
        }
    }
    for batch in keys.chunks(REPLAY_BATCH) {
        let fulls: Vec<String> = batch
            .iter()
            .filter_map(|(target, _)| match target {
                Eviction::Key(key) => Some(key.clone()),
                Eviction::Prefix(_) => None,
            })
            .collect();
        if backend.delete_many(&fulls).await.is_ok() {
            // A near copy read while the eviction waited goes too.
            fulls.iter().for_each(|full| inner.near_written(full));
            for (target, seq) in batch {
                journal.confirm(target, *seq);
            }
            progressed = true;
        }
    }
    if progressed {
        tracing::info!(
            left = journal.len(),
            "cachefw: replayed evictions that had not reached Redis"
        );
    }
    Pass {
        progressed,
        scans: !prefixes_empty,
    }
}
