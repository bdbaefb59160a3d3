//! The near tier: an in-process copy of entries read from Redis, kept
//! correct by Redis itself. The tracking links (`tracking.rs`) feed
//! it the server's invalidations; this module decides what may be served.
//!
//! Three rules keep a near hit from ever being older than what Redis holds
//! (give or take the one round trip an invalidation travels):
//!
//! - **Link state.** The tier serves only while every tracking link is up.
//!   `state` packs an epoch with an "up" bit; every entry carries the state
//!   it was stored under and is served only while that is still the state.
//!   A link going down or coming back, a topology change and a flush each
//!   start a new epoch, which voids every entry at once (and moka drops
//!   them too).
//! - **Reads racing invalidations, per key.** A read takes a [`Ticket`]
//!   before it asks Redis: the key is entered in a table of reads in
//!   flight, with a generation that every invalidation of that key bumps.
//!   What the read returns is stored only if its key's generation is still
//!   the ticket's, checked and stored under the key's shard lock, the lock
//!   an invalidation takes to bump the generation and remove the held
//!   copy. So a copy is dropped when, and only when, its own key is
//!   written: writes of other keys (and of internal keys: leases, claims,
//!   version records, which the tier never holds) cost it nothing. The
//!   table holds only keys being read (a ticket's `Drop` takes its key
//!   out), so it stays small however many keys are written.
//! - **Heartbeat.** The tracking link answers a `PING` every 100 ms
//!   (`tracking.rs`); each answer proves that every invalidation of a write
//!   the server ran before that `PING` was sent has reached the tier.
//!   Nothing is served or stored past [`HEARTBEAT_GRACE`] after the
//!   sending of the last answered one, so a link that goes silent without
//!   closing (a frozen server, a path that drops everything) stops the
//!   tier within that time, even if the supervisor task is slow to notice.
//! - **Own writes.** A write through this cache invalidates the key before
//!   it is sent and again once Redis acknowledged it, so a read that got the
//!   old value while the write was in flight cannot keep it.
//!
//! The tier holds entries' bytes exactly as Redis returned them, and only
//! entries fresh under their own TTL, for no longer than that TTL's rest
//! (and the `near_ttl` cap): refresh-ahead, stale windows, leases and the
//! breaker all keep working through Redis.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::sync::Cache as Moka;

use crate::codec::meta_of;

mod fields;
pub(crate) mod size;
#[cfg(feature = "redis")]
pub(crate) mod tracking;

/// Counted on top of what an entry holds (its key, its bytes, its decoded
/// copy): moka's node and its bookkeeping, the entry struct, the key's
/// `String` (measured by the `near` benchmark's memory row; see
/// BENCHMARKS.md).
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// How long after sending the last `PING` the tracking links answered the
/// tier may serve: a silent link is noticed within this, under the
/// contract's 500 ms. Heartbeats go every 100 ms, so a link whose round
/// trip stays under about 350 ms never lets the tier lapse.
pub(crate) const HEARTBEAT_GRACE: Duration = Duration::from_millis(450);

/// Shards of the table of reads in flight: an invalidation locks one, so
/// pushes and reads of different keys rarely meet.
const SHARDS: usize = 64;

/// One held entry. moka hands out clones of its values: one `Arc` here.
#[derive(Clone)]
struct NearEntry(Arc<NearCopy>);

/// What the near tier holds for a key.
pub(crate) struct NearCopy {
    /// The entry's bytes, as Redis returned them.
    pub(crate) bytes: Bytes,
    /// The `state` this entry was stored under.
    state: u64,
    /// When it leaves the tier (its TTL's rest, capped by `near_ttl`).
    expires: Instant,
    /// The entry decoded, when a reader that can clone its type kept it
    /// (`Decoded<T>` of that reader's `T`: a reader of another type finds
    /// no match by `TypeId` and decodes the bytes itself).
    decoded: Option<Box<dyn Any + Send + Sync>>,
    /// What the memory bound counts for it: see [`Near::new`].
    weight: u32,
}

impl NearCopy {
    /// The decoded copy, if one of type `D` was kept.
    pub(crate) fn decoded<D: Any>(&self) -> Option<&D> {
        self.decoded.as_ref()?.downcast_ref::<D>()
    }
}

struct Life;

impl Expiry<String, NearEntry> for Life {
    fn expire_after_create(&self, _: &String, entry: &NearEntry, now: Instant) -> Option<Duration> {
        Some(entry.0.expires.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &NearEntry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.0.expires.saturating_duration_since(now))
    }
}

/// A near tier and the links that keep it correct: what `Inner` holds.
pub(crate) struct NearTier {
    near: Arc<Near>,
    #[cfg(feature = "redis")]
    _links: tracking::Tracking,
}

impl NearTier {
    /// Starts the tier, down, and its tracking links, which bring it up.
    #[cfg(feature = "redis")]
    pub(crate) fn start(
        max_bytes: u64,
        cap: Duration,
        servers: tracking::Servers,
        prefix: String,
        pairing: Arc<tracking::Pairing>,
    ) -> Self {
        let near = Arc::new(Near::new(max_bytes, cap));
        let _ = pairing.near.set(Arc::downgrade(&near));
        let links = tracking::start(Arc::clone(&near), servers, prefix, pairing);
        Self {
            near,
            _links: links,
        }
    }

    /// Waits until the tier serves, at most `patience`.
    #[cfg(feature = "redis")]
    pub(crate) async fn wait_up(&self, patience: Duration) {
        let _ = tokio::time::timeout(patience, async {
            while !self.near.is_up() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

impl std::ops::Deref for NearTier {
    type Target = Near;

    fn deref(&self) -> &Near {
        &self.near
    }
}

/// A read of one key in flight: the state and the key's generation when it
/// began (see the module docs). Dropped, the read leaves the table.
pub(crate) struct Ticket<'a> {
    near: &'a Near,
    state: u64,
    hash: u64,
    generation: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut reads = self.near.shard(self.hash);
        if let Some(read) = reads.get_mut(&self.hash) {
            read.readers -= 1;
            if read.readers == 0 {
                reads.remove(&self.hash);
            }
        }
    }
}

/// The reads in flight of one key (by hash: two keys that share one only
/// cost each other a copy, never serve a stale one).
struct Reads {
    readers: u32,
    /// Bumped by every invalidation of the key while it is read.
    generation: u64,
}

pub(crate) struct Near {
    entries: Moka<String, NearEntry>,
    cap: Duration,
    /// `epoch << 1 | up`.
    state: AtomicU64,
    reads: Box<[Mutex<HashMap<u64, Reads>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Milliseconds since `born` until which the links' last heartbeat
    /// lets the tier serve (0: none yet).
    heard_until: AtomicU64,
    born: Instant,
}

impl Near {
    /// A tier of at most `max_bytes`, entries living at most `cap`. What the
    /// bound counts for an entry is what the tier holds for it: its key, its
    /// bytes as Redis returned them, the decoded copy kept beside them (its
    /// inline size and the heap its strings, sequences and maps own, as
    /// [`size::of`] walks it), and [`ENTRY_OVERHEAD`]. It starts down:
    /// nothing is served until the tracking links report in.
    pub(crate) fn new(max_bytes: u64, cap: Duration) -> Self {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &String, entry: &NearEntry| entry.0.weight)
            .expire_after(Life)
            .build();
        Self {
            entries,
            cap,
            state: AtomicU64::new(0),
            reads: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            heard_until: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, HashMap<u64, Reads>> {
        // Truncation is the point: any bits of the hash pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        let at = (hash >> 58) as usize % SHARDS;
        self.reads[at]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the tier serves now.
    pub(crate) fn is_up(&self) -> bool {
        self.state.load(SeqCst) & 1 == 1
    }

    /// Every link answered a heartbeat sent at `sent`: the tier may serve
    /// until [`HEARTBEAT_GRACE`] after it.
    pub(crate) fn heard(&self, sent: Instant) {
        let until = sent.saturating_duration_since(self.born) + HEARTBEAT_GRACE;
        self.heard_until
            .fetch_max(crate::clock::millis(until), SeqCst);
    }

    /// Whether the links' last heartbeat is too old to trust the tier.
    fn overdue(&self) -> bool {
        crate::clock::millis(self.born.elapsed()) >= self.heard_until.load(SeqCst)
    }

    /// What is held for `key`, if the tier serves and holds a copy stored
    /// under the current state.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<NearCopy>> {
        let state = self.state.load(SeqCst);
        if state & 1 == 0 || self.overdue() {
            return None;
        }
        let NearEntry(held) = self.entries.get(key)?;
        (held.state == state).then_some(held)
    }

    /// Taken before a read of `key` from Redis; `None` while the tier does
    /// not serve (nothing read then may be stored).
    pub(crate) fn ticket(&self, key: &str) -> Option<Ticket<'_>> {
        let state = self.state.load(SeqCst);
        if state & 1 == 0 || self.overdue() {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        let mut reads = self.shard(hash);
        let read = reads.entry(hash).or_insert(Reads {
            readers: 0,
            generation: 0,
        });
        read.readers += 1;
        Some(Ticket {
            near: self,
            state,
            hash,
            generation: read.generation,
        })
    }

    /// Offers what a read of `key` under `ticket` returned: stored if it is
    /// a value entry fresh at `now_ms` and no invalidation of the key nor a
    /// new epoch overtook the read. A tagged entry is never kept: it holds
    /// only while its tags do, which no near copy checks.
    pub(crate) fn offer(&self, key: &str, bytes: &Bytes, ticket: Ticket<'_>, now_ms: u64) {
        let Some(meta) = meta_of(bytes) else {
            return;
        };
        if now_ms >= meta.expires_ms || crate::codec::extended::is_tagged(bytes) {
            return;
        }
        let life = Duration::from_millis(meta.expires_ms - now_ms).min(self.cap);
        let held = NearCopy {
            bytes: bytes.clone(),
            state: ticket.state,
            expires: Instant::now() + life,
            decoded: None,
            weight: weight(key, bytes, 0),
        };
        self.store(key, held, &ticket);
    }

    /// Stores `held` as `key`'s copy, unless an invalidation of the key or
    /// a new epoch overtook the read of `ticket`.
    fn store(&self, key: &str, held: NearCopy, ticket: &Ticket<'_>) {
        {
            let reads = self.shard(ticket.hash);
            let current = reads.get(&ticket.hash).map(|read| read.generation);
            if current != Some(ticket.generation) || self.state.load(SeqCst) != ticket.state {
                return;
            }
            self.entries
                .insert(key.to_owned(), NearEntry(Arc::new(held)));
        }
        // A new epoch that began while it went in: void already (`get`
        // would not serve it); this only frees the memory.
        if self.state.load(SeqCst) != ticket.state {
            self.entries.invalidate(key);
        }
    }

    /// Keeps `decoded`, of `heap` bytes beyond its inline size, beside the
    /// copy `held` of `key`, if the tier still holds that very copy: later
    /// readers clone it instead of decoding, and the bound counts it.
    pub(crate) fn keep<D: Any + Send + Sync>(
        &self,
        key: &str,
        held: &Arc<NearCopy>,
        decoded: D,
        heap: usize,
    ) {
        if held.decoded.is_some() {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let _reads = self.shard(hash);
        let still = self
            .entries
            .get(key)
            .is_some_and(|NearEntry(current)| Arc::ptr_eq(&current, held));
        if !still {
            return;
        }
        let decoded_size = std::mem::size_of::<D>() + heap;
        self.entries.insert(
            key.to_owned(),
            NearEntry(Arc::new(NearCopy {
                bytes: held.bytes.clone(),
                state: held.state,
                expires: held.expires,
                decoded: Some(Box::new(decoded)),
                weight: weight(key, &held.bytes, decoded_size),
            })),
        );
    }

    /// Drops `key`'s copy and fails every read of it in flight; no other
    /// key's copy or read is touched.
    pub(crate) fn evict(&self, key: &str) {
        let hash = self.hasher.hash_one(key);
        let mut reads = self.shard(hash);
        if let Some(read) = reads.get_mut(&hash) {
            read.generation += 1;
        }
        self.entries.invalidate(key);
        drop(reads);
    }

    /// Starts a new epoch whose up bit `up` decides from the current state
    /// (`None`: leave the state alone), in one step, so that a flush and a
    /// link going down cannot undo each other; empties the tier if it did.
    fn new_epoch(&self, up: impl Fn(bool) -> Option<bool>) {
        let moved = self.state.fetch_update(SeqCst, SeqCst, |state| {
            let up = up(state & 1 == 1)?;
            Some((((state >> 1) + 1) << 1) | u64::from(up))
        });
        if moved.is_ok() {
            self.entries.invalidate_all();
        }
    }

    /// Everything goes (a flush on the server, an eviction by prefix, a
    /// topology change); the tier keeps serving what is read from now on,
    /// if it served.
    pub(crate) fn evict_all(&self) {
        self.new_epoch(Some);
    }

    /// A tracking link is down: nothing is served or stored until
    /// [`up`](Self::up).
    pub(crate) fn down(&self) {
        self.new_epoch(|up| up.then_some(false));
    }

    /// Every tracking link is up again: the tier starts empty.
    pub(crate) fn up(&self) {
        self.new_epoch(|_| Some(true));
    }

    /// Bytes the bound counts now (moka's running total).
    #[cfg(test)]
    fn weighed(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

/// What the bound counts for an entry: see [`Near::new`].
fn weight(key: &str, bytes: &Bytes, decoded: usize) -> u32 {
    u32::try_from(key.len() + bytes.len() + decoded + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Meta};
    use crate::options::DEFAULT_NEAR_TTL;

    fn fresh(now: u64) -> Bytes {
        Bytes::from(
            Codec::default()
                .encode(
                    &7u32,
                    Meta {
                        expires_ms: now + 60_000,
                        delta_ms: 1,
                    },
                )
                .expect("a u32 encodes"),
        )
    }

    fn up() -> Near {
        let near = Near::new(1 << 20, DEFAULT_NEAR_TTL);
        near.up();
        near.heard(Instant::now());
        near
    }

    #[test]
    fn serves_nothing_until_up() {
        let near = Near::new(1 << 20, DEFAULT_NEAR_TTL);
        assert!(near.ticket("k").is_none());
        near.up();
        assert!(near.ticket("k").is_none(), "no heartbeat yet");
        near.heard(Instant::now());
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), ticket, 1);
        assert!(near.get("k").is_some());
    }

    #[test]
    fn an_invalidation_between_ticket_and_offer_wins() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.evict("k");
        near.offer("k", &fresh(1), ticket, 1);
        assert!(near.get("k").is_none());
    }

    #[test]
    fn a_copy_is_dropped_by_its_own_key_only() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), ticket, 1);
        // A read of `k` in flight is not failed by other keys either.
        let reading = near.ticket("k").expect("up");
        for n in 0..20_000 {
            near.evict(&format!("other:{n}"));
        }
        assert!(near.get("k").is_some(), "other keys' writes cost nothing");
        near.offer("k", &fresh(1), reading, 1);
        assert!(near.get("k").is_some());
        near.evict("k");
        assert!(near.get("k").is_none());
    }

    #[test]
    fn finished_reads_leave_the_table() {
        let near = up();
        let first = near.ticket("k").expect("up");
        let second = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), first, 1);
        drop(second);
        let empty = near
            .reads
            .iter()
            .all(|shard| shard.lock().expect("not poisoned").is_empty());
        assert!(empty, "no read is in flight");
    }

    #[test]
    fn the_bound_counts_decoded_copies() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        let bytes = fresh(1);
        near.offer("k", &bytes, ticket, 1);
        let plain = near.weighed();
        assert_eq!(plain, (1 + bytes.len() + ENTRY_OVERHEAD) as u64);
        let held = near.get("k").expect("held");
        let decoded = vec![0u8; 1000];
        near.keep("k", &held, decoded, 1000);
        let kept = near.get("k").expect("still held");
        assert_eq!(kept.decoded::<Vec<u8>>().map(Vec::len), Some(1000));
        assert_eq!(
            near.weighed(),
            plain + (std::mem::size_of::<Vec<u8>>() + 1000) as u64
        );
        // A copy replaced meanwhile is not given another's decoded value.
        near.evict("k");
        near.keep("k", &kept, vec![1u8], 1);
        assert!(near.get("k").is_none());
    }

    #[test]
    fn a_flush_racing_a_link_going_down_leaves_it_down() {
        let near = up();
        near.down();
        near.evict_all();
        assert!(!near.is_up(), "a flush never brings the tier up");
    }

    #[test]
    fn an_epoch_between_ticket_and_offer_wins() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.down();
        near.up();
        near.offer("k", &fresh(1), ticket, 1);
        assert!(near.get("k").is_none());
    }

    #[test]
    fn down_voids_and_up_starts_empty() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), ticket, 1);
        near.down();
        assert!(near.get("k").is_none());
        near.up();
        assert!(near.get("k").is_none());
    }

    #[test]
    fn an_overdue_heartbeat_stops_the_tier() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), ticket, 1);
        assert!(near.get("k").is_some());
        // The last answered heartbeat was sent longer ago than the grace.
        near.heard_until.store(1, SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        assert!(near.get("k").is_none(), "no hit once overdue");
        assert!(near.ticket("k").is_none(), "nothing stored either");
        near.heard(Instant::now());
        assert!(near.get("k").is_some(), "the link answered again");
    }

    #[test]
    fn stale_and_foreign_bytes_are_not_stored() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &fresh(1), ticket, 120_000);
        assert!(near.get("k").is_none());
        let ticket = near.ticket("k").expect("up");
        near.offer("k", &Bytes::from_static(b"hostile"), ticket, 1);
        assert!(near.get("k").is_none());
    }
}
