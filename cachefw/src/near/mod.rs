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
//! - **Reads racing invalidations.** A read takes a [`Ticket`] (the state
//!   and its key's stripe counter) before it asks Redis, and what it stores
//!   carries that ticket. A held copy is served only while its stripe's
//!   counter is still the one in its ticket: an invalidation of any key of
//!   the stripe bumps the counter, and every copy taken before the bump is
//!   void from that instant, whether it was stored before the bump, after
//!   it, or is being stored right now. Removing it from moka afterwards
//!   only frees the memory (so moka's own orderings decide nothing).
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
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::sync::Cache as Moka;

use crate::codec::meta_of;

#[cfg(feature = "redis")]
pub(crate) mod tracking;

/// Counted on top of a key's and a value's bytes for each entry: moka's node
/// and its bookkeeping, the entry struct, the key's `String` (measured by the
/// `near` benchmark's memory row; see BENCHMARKS.md).
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// How long a near entry lives at most unless `near_ttl` says otherwise.
pub(crate) const DEFAULT_NEAR_TTL: Duration = Duration::from_secs(60);

/// How long after sending the last `PING` the tracking links answered the
/// tier may serve: a silent link is noticed within this, under the
/// contract's 500 ms. Heartbeats go every 100 ms, so a link whose round
/// trip stays under about 350 ms never lets the tier lapse.
pub(crate) const HEARTBEAT_GRACE: Duration = Duration::from_millis(450);

/// Stripes of invalidation counters: a key's reads compare against its
/// stripe's, so an invalidation of another key in the same stripe only costs
/// a read the chance to be stored (never a stale copy).
const STRIPES: usize = 4096;

/// One held entry. moka hands out clones of its values: one `Arc` here.
#[derive(Clone)]
struct NearEntry(Arc<Held>);

/// What the near tier holds for a key.
pub(crate) struct Held {
    /// The entry's bytes, as Redis returned them.
    pub(crate) bytes: Bytes,
    /// The `state` this entry was stored under.
    state: u64,
    /// Its key's stripe, and that stripe's counter when the read began.
    stripe: usize,
    count: u64,
    life: Duration,
    /// The entry decoded, once a reader that can clone its type decoded it
    /// (`Decoded<T>` of that reader's `T`: a reader of another type finds
    /// no match by `TypeId` and decodes the bytes itself).
    decoded: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Held {
    /// The decoded copy, if one of type `D` was kept.
    pub(crate) fn decoded<D: Any>(&self) -> Option<&D> {
        self.decoded.get()?.downcast_ref::<D>()
    }

    /// Keeps `decoded` for later readers (the first kept stays).
    pub(crate) fn keep<D: Any + Send + Sync>(&self, decoded: D) {
        let _ = self.decoded.set(Box::new(decoded));
    }
}

struct Life;

impl Expiry<String, NearEntry> for Life {
    fn expire_after_create(&self, _: &String, entry: &NearEntry, _: Instant) -> Option<Duration> {
        Some(entry.0.life)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &NearEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.0.life)
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
    ) -> Self {
        let near = Arc::new(Near::new(max_bytes, cap));
        let links = tracking::start(Arc::clone(&near), servers, prefix);
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

/// What a read saw before it asked Redis; see the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    state: u64,
    stripe: usize,
    count: u64,
}

pub(crate) struct Near {
    entries: Moka<String, NearEntry>,
    cap: Duration,
    /// `epoch << 1 | up`.
    state: AtomicU64,
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    /// Milliseconds since `born` until which the links' last heartbeat
    /// lets the tier serve (0: none yet).
    heard_until: AtomicU64,
    born: Instant,
}

impl Near {
    /// A tier of at most `max_bytes` (keys, values and [`ENTRY_OVERHEAD`]),
    /// entries living at most `cap`. It starts down: nothing is served
    /// until the tracking links report in.
    pub(crate) fn new(max_bytes: u64, cap: Duration) -> Self {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            // The bytes count twice: once as held, once more for the decoded
            // copy kept beside them (whose real size cannot be known).
            .weigher(|key: &String, entry: &NearEntry| {
                u32::try_from(key.len() + 2 * entry.0.bytes.len() + ENTRY_OVERHEAD)
                    .unwrap_or(u32::MAX)
            })
            .expire_after(Life)
            .build();
        Self {
            entries,
            cap,
            state: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            heard_until: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    fn stripe(&self, key: &str) -> usize {
        // Truncation is the point: any bits of the hash pick a stripe.
        #[allow(clippy::cast_possible_truncation)]
        let stripe = self.hasher.hash_one(key) as usize % STRIPES;
        stripe
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
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Held>> {
        let state = self.state.load(SeqCst);
        if state & 1 == 0 || self.overdue() {
            return None;
        }
        let NearEntry(held) = self.entries.get(key)?;
        (held.state == state && self.stripes[held.stripe].load(SeqCst) == held.count)
            .then_some(held)
    }

    /// Taken before a read of `key` from Redis; `None` while the tier does
    /// not serve (nothing read then may be stored).
    pub(crate) fn ticket(&self, key: &str) -> Option<Ticket> {
        let state = self.state.load(SeqCst);
        if state & 1 == 0 || self.overdue() {
            return None;
        }
        let stripe = self.stripe(key);
        Some(Ticket {
            state,
            stripe,
            count: self.stripes[stripe].load(SeqCst),
        })
    }

    /// Offers what a read of `key` under `ticket` returned: stored if it is
    /// a value entry fresh at `now_ms`, and removed again if an
    /// invalidation or a new epoch overtook the read.
    pub(crate) fn offer(&self, key: &str, bytes: &Bytes, ticket: Ticket, now_ms: u64) {
        let Some(meta) = meta_of(bytes) else {
            return;
        };
        if now_ms >= meta.expires_ms {
            return;
        }
        let life = Duration::from_millis(meta.expires_ms - now_ms).min(self.cap);
        self.entries.insert(
            key.to_owned(),
            NearEntry(Arc::new(Held {
                bytes: bytes.clone(),
                state: ticket.state,
                stripe: ticket.stripe,
                count: ticket.count,
                life,
                decoded: OnceLock::new(),
            })),
        );
        // Void already if overtaken (`get` would not serve it): this only
        // frees the memory.
        if self.state.load(SeqCst) != ticket.state
            || self.stripes[ticket.stripe].load(SeqCst) != ticket.count
        {
            self.entries.invalidate(key);
        }
    }

    /// Drops `key` and fails every read of it in flight.
    pub(crate) fn invalidate(&self, key: &str) {
        self.stripes[self.stripe(key)].fetch_add(1, SeqCst);
        self.entries.invalidate(key);
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
    pub(crate) fn flush(&self) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Meta};

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
        near.invalidate("k");
        near.offer("k", &fresh(1), ticket, 1);
        assert!(near.get("k").is_none());
    }

    #[test]
    fn a_copy_stored_after_its_invalidation_is_never_served() {
        let near = up();
        let ticket = near.ticket("k").expect("up");
        // The invalidation lands between the reply and the insert: the
        // copy that goes in afterwards must not be served even for the
        // moment before the reader's own check removes it.
        near.invalidate("k");
        near.entries.insert(
            "k".to_owned(),
            NearEntry(Arc::new(Held {
                bytes: fresh(1),
                state: ticket.state,
                stripe: ticket.stripe,
                count: ticket.count,
                life: DEFAULT_NEAR_TTL,
                decoded: OnceLock::new(),
            })),
        );
        assert!(near.get("k").is_none());
    }

    #[test]
    fn a_flush_racing_a_link_going_down_leaves_it_down() {
        let near = up();
        near.down();
        near.flush();
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
        near.offer("k", &Bytes::from_static(b"hostile"), ticket, 1);
        assert!(near.get("k").is_none());
    }
}
