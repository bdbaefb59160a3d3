//! Pending invalidations: evictions that have not reached Redis yet.
//!
//! Every eviction (a `delete`, a `set` or put, a prefix eviction) is
//! written here before its command is sent and struck off when Redis
//! confirms it. One that fails, times out, is skipped by the open breaker,
//! or whose caller is cancelled mid-flight is stranded: it stays, and is
//! replayed when Redis answers again (see `replay.rs`). Until Redis confirms
//! it, in flight or stranded, reads of the keys it covers bypass Redis: the
//! value there may be the one the eviction is meant to remove.
//!
//! The replay tries every 100 ms, through an open breaker, and (on one
//! Redis) the breaker lets no read probe meanwhile (see
//! `backend/breaker.rs`): the
//! evictions land within about 100 ms of Redis answering again, before
//! this cache's reads go there. Other processes do not know of them: one
//! whose breaker closes first may read such a key from Redis until then
//! (the README gives the measured window).
//!
//! The journal is bounded. When it overflows, no eviction is dropped:
//! instead the whole cache bypasses Redis until a clear of its namespace
//! and version succeeds, which the replay does first.
//!
//! What it cannot cover: the journal lives in this process. A failover to a
//! replica that never saw a delete the old primary acknowledged, or a
//! process that dies with evictions pending, leaves the old value in Redis
//! until its TTL ends.

mod replay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use tokio::sync::Notify;

/// What an eviction removes: one full key, or every key under a full prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Eviction {
    Key(String),
    Prefix(String),
}

/// One pending target.
struct Record {
    /// The sequence number of its latest record.
    seq: u64,
    /// Whether an attempt ended without Redis confirming it: it waits for
    /// the replay (and is not replayed while its first attempt is still in
    /// flight).
    stranded: bool,
}

#[derive(Default)]
struct State {
    /// Keys and prefixes apart, so that a read looks its key up instead of
    /// scanning every pending eviction.
    keys: HashMap<String, Record>,
    prefixes: HashMap<String, Record>,
    /// How many records are stranded: what the capacity bounds. Evictions
    /// in flight are bounded by the calls making them.
    stranded: usize,
    /// Set when a stranded eviction found the journal full: its sequence
    /// number.
    overflowed_at: Option<u64>,
}

impl State {
    fn records<'a>(
        &'a mut self,
        target: &'a Eviction,
    ) -> (&'a mut HashMap<String, Record>, &'a str) {
        match target {
            Eviction::Key(key) => (&mut self.keys, key),
            Eviction::Prefix(prefix) => (&mut self.prefixes, prefix),
        }
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty() && self.overflowed_at.is_none()
    }
}

pub(crate) struct Journal {
    capacity: usize,
    /// Whether anything is pending or the journal overflowed: the one load
    /// the hit path pays while all is well.
    active: AtomicBool,
    next: AtomicU64,
    state: Mutex<State>,
    /// Whether a replay task runs; `wake` hurries it when Redis answers.
    replaying: AtomicBool,
    wake: Arc<Notify>,
    /// What runs the replay: the cache that owns this journal.
    replayer: OnceLock<Weak<dyn Replayer>>,
}

/// What replays stranded evictions: the cache that owns the journal (see
/// `replay.rs`). The journal starts it when an eviction is stranded or
/// Redis answers while evictions wait.
pub(crate) trait Replayer: Send + Sync {
    /// Starts a replay task (the journal has marked one as running).
    fn start_replay(&self);
}

/// A snapshot of what to replay.
pub(crate) struct Backlog {
    /// Whether the journal overflowed: a clear comes first.
    pub(crate) overflowed: bool,
    pub(crate) targets: Vec<(Eviction, u64)>,
    /// Every record up to this number is covered by a clear now.
    pub(crate) up_to: u64,
}

/// An eviction on its way to Redis: the one guard of an eviction.
/// [`done`](Self::done) strikes it off; dropped without that (the command
/// failed, or the caller was cancelled at an await), it is stranded in the
/// journal and the replay is started.
pub(crate) struct Pending<'a> {
    journal: &'a Journal,
    target: Option<Eviction>,
    seq: u64,
}

impl Pending<'_> {
    /// Redis confirmed the eviction.
    pub(crate) fn done(mut self) {
        if let Some(target) = self.target.take() {
            self.journal.confirm(&target, self.seq);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            tracing::debug!(?target, "cachefw: eviction kept for replay");
            self.journal.strand(&target, self.seq);
            self.journal.request_replay();
        }
    }
}

impl Journal {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            active: AtomicBool::new(false),
            next: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            replaying: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            replayer: OnceLock::new(),
        }
    }

    /// Names what replays this journal's stranded evictions (once).
    pub(crate) fn replayed_by(&self, replayer: Weak<dyn Replayer>) {
        let _ = self.replayer.set(replayer);
    }

    /// Makes sure a replay of pending evictions runs, or hurries it.
    pub(crate) fn request_replay(&self) {
        if self.replaying.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
            return;
        }
        match self.replayer.get().and_then(Weak::upgrade) {
            Some(replayer) => replayer.start_replay(),
            None => self.replaying.store(false, Ordering::Release),
        }
    }

    /// The replay task ended (see `replay.rs`).
    fn replay_stopped(&self) {
        self.replaying.store(false, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an eviction about to be sent.
    pub(crate) fn record(&self, target: Eviction) -> Pending<'_> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let (records, name) = state.records(&target);
        match records.get_mut(name) {
            // Still stranded if an earlier attempt was.
            Some(record) => record.seq = seq,
            None => {
                records.insert(
                    name.to_owned(),
                    Record {
                        seq,
                        stranded: false,
                    },
                );
            }
        }
        self.active.store(true, Ordering::Release);
        Pending {
            journal: self,
            target: Some(target),
            seq,
        }
    }

    /// Strikes `target` off, if no later record of it is pending.
    pub(crate) fn confirm(&self, target: &Eviction, seq: u64) {
        let mut state = self.lock();
        let (records, name) = state.records(target);
        if records.get(name).is_some_and(|r| r.seq <= seq)
            && let Some(record) = records.remove(name)
            && record.stranded
        {
            state.stranded -= 1;
        }
        self.refresh(&state);
    }

    /// An attempt ended without Redis confirming it: the replay takes it,
    /// or, past the capacity, a clear of the whole namespace covers it.
    fn strand(&self, target: &Eviction, seq: u64) {
        let mut state = self.lock();
        let full = state.stranded >= self.capacity;
        let (records, name) = state.records(target);
        match records.get_mut(name) {
            Some(record) if !record.stranded => {
                if full {
                    records.remove(name);
                } else {
                    record.stranded = true;
                }
            }
            _ => return,
        }
        if !full {
            state.stranded += 1;
            return;
        }
        if state.overflowed_at.is_none() {
            tracing::warn!(
                capacity = self.capacity,
                "cachefw: too many evictions are waiting for Redis; reads bypass Redis \
                 until the whole namespace is cleared"
            );
        }
        state.overflowed_at = Some(state.overflowed_at.map_or(seq, |at| at.max(seq)));
    }

    fn refresh(&self, state: &State) {
        if state.is_empty() {
            self.active.store(false, Ordering::Release);
        }
    }

    /// Whether a read of `full` must bypass Redis: an eviction covering it
    /// has not been confirmed, or the journal overflowed.
    pub(crate) fn bypasses(&self, full: &str) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        let state = self.lock();
        state.overflowed_at.is_some()
            || state.keys.contains_key(full)
            || state
                .prefixes
                .keys()
                .any(|prefix| full.starts_with(prefix.as_str()))
    }

    /// Whether nothing waits for the replay: no stranded eviction and no
    /// overflow. The first check is one atomic load.
    pub(crate) fn is_settled(&self) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return true;
        }
        let state = self.lock();
        state.stranded == 0 && state.overflowed_at.is_none()
    }

    /// What to replay now: the stranded evictions.
    pub(crate) fn backlog(&self) -> Backlog {
        let up_to = self.next_seq();
        let state = self.lock();
        let stranded = |records: &HashMap<String, Record>, target: fn(String) -> Eviction| {
            records
                .iter()
                .filter(|(_, record)| record.stranded)
                .map(move |(name, record)| (target(name.clone()), record.seq))
                .collect::<Vec<_>>()
        };
        let mut targets = stranded(&state.prefixes, Eviction::Prefix);
        targets.extend(stranded(&state.keys, Eviction::Key));
        Backlog {
            overflowed: state.overflowed_at.is_some(),
            targets,
            up_to,
        }
    }

    /// The sequence number the next record gets: a clear that starts now
    /// covers every record before it.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Every entry of the namespace was removed by a clear that began after
    /// record `up_to - 1`: everything recorded before is covered.
    pub(crate) fn cleared(&self, up_to: u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut dropped = 0;
        for records in [&mut state.keys, &mut state.prefixes] {
            records.retain(|_, record| {
                let keep = record.seq >= up_to;
                if !keep && record.stranded {
                    dropped += 1;
                }
                keep
            });
        }
        state.stranded -= dropped;
        if state.overflowed_at.is_some_and(|at| at < up_to) {
            state.overflowed_at = None;
            tracing::info!("cachefw: namespace cleared; reads use Redis again");
        }
        self.refresh(state);
    }

    /// The number of evictions Redis has not confirmed.
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.keys.len() + state.prefixes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Eviction {
        Eviction::Key(k.to_owned())
    }

    #[test]
    fn confirmed_evictions_leave_nothing() {
        let journal = Journal::new(10);
        let pending = journal.record(key("a"));
        assert!(journal.bypasses("a"), "in flight");
        assert!(journal.is_settled(), "nothing to replay while in flight");
        assert!(journal.backlog().targets.is_empty());
        pending.done();
        assert!(journal.is_settled());
        assert!(!journal.bypasses("a"));
        assert_eq!(journal.len(), 0);
    }

    #[test]
    fn failed_or_cancelled_evictions_stay_and_block_reads() {
        let journal = Journal::new(10);
        drop(journal.record(key("ns:v1:user:1")));
        drop(journal.record(Eviction::Prefix("ns:v1:order:".into())));
        assert!(journal.bypasses("ns:v1:user:1"));
        assert!(journal.bypasses("ns:v1:order:9"));
        assert!(!journal.bypasses("ns:v1:user:2"));
        let backlog = journal.backlog();
        assert_eq!(backlog.targets.len(), 2);
        assert!(!journal.is_settled());
        for (target, seq) in &backlog.targets {
            journal.confirm(target, *seq);
        }
        assert!(journal.is_settled());
        assert!(!journal.bypasses("ns:v1:user:1"));
    }

    #[test]
    fn an_older_confirmation_does_not_strike_a_newer_record() {
        let journal = Journal::new(10);
        let old = journal.record(key("a"));
        drop(journal.record(key("a"))); // a later eviction failed
        old.done();
        assert!(journal.bypasses("a"), "the later eviction is still pending");
    }

    #[test]
    fn overflow_bypasses_everything_until_a_clear() {
        let journal = Journal::new(2);
        for k in ["a", "b", "c"] {
            drop(journal.record(key(k)));
        }
        assert!(journal.bypasses("anything"));
        let backlog = journal.backlog();
        assert!(backlog.overflowed);
        assert_eq!(
            backlog.targets.len(),
            2,
            "the third is covered by the clear"
        );
        journal.cleared(backlog.up_to);
        assert!(!journal.bypasses("anything"));
        assert!(journal.is_settled());
        drop(journal.record(key("d")));
        assert!(journal.bypasses("d"));
        assert!(!journal.bypasses("e"));
        assert_eq!(journal.len(), 1);

        // A record that overflows after a clear began is not covered by it.
        let journal = Journal::new(1);
        drop(journal.record(key("a")));
        let backlog = journal.backlog();
        drop(journal.record(key("b")));
        journal.cleared(backlog.up_to);
        assert!(journal.bypasses("anything"));
    }

    #[test]
    fn evictions_in_flight_never_overflow() {
        // A healthy bulk delete of more keys than the capacity.
        let journal = Journal::new(2);
        let pending: Vec<_> = (0..100)
            .map(|i| journal.record(key(&i.to_string())))
            .collect();
        assert!(!journal.backlog().overflowed);
        pending.into_iter().for_each(Pending::done);
        assert!(journal.is_settled());
        assert!(!journal.bypasses("7"));
        assert_eq!(journal.len(), 0);
    }
}
