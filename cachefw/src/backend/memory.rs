//! The in-process backend: moka with a TTL per entry, bounded by bytes.
//!
//! Each entry keeps its bytes, as Redis would, and beside them the entry
//! decoded by the first reader whose type clones (see [`Found`]): a hit
//! then clones that copy instead of decoding the bytes again. The bytes
//! are never changed in place (a rewrite is a new entry), so the copy
//! always matches them. The capacity counts an entry's bytes twice: once
//! for the bytes, once as the estimate of its decoded copy.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache as Moka;

use crate::backend::versioned_key::VersionedKey;
use crate::clock::{millis, now_ms};
use crate::codec::{claim_of, meta_of, with_claim};

#[derive(Clone)]
struct Kept {
    bytes: Bytes,
    ttl: Duration,
    expires_at: Instant,
    decoded: Decoded,
}

/// The entry decoded by its first reader that keeps a copy (of that
/// reader's type: a reader of another type finds no match by `TypeId`).
type Decoded = Arc<OnceLock<Box<dyn Any + Send + Sync>>>;

/// What a read found: the bytes, and the decoded copy kept beside them.
pub(crate) struct Found {
    pub(crate) bytes: Bytes,
    decoded: Decoded,
}

impl Found {
    /// The decoded copy, if one of type `D` was kept.
    pub(crate) fn decoded<D: Any>(&self) -> Option<&D> {
        self.decoded.get()?.downcast_ref::<D>()
    }

    /// Keeps `decoded` beside the bytes, unless a copy is kept already.
    pub(crate) fn keep<D: Any + Send + Sync>(&self, decoded: D) {
        let _ = self.decoded.set(Box::new(decoded));
    }
}

impl Kept {
    fn new(bytes: Bytes, ttl: Duration) -> Self {
        Self {
            bytes,
            ttl,
            expires_at: Instant::now() + ttl,
            decoded: Decoded::default(),
        }
    }

    /// New bytes for the time this entry has left.
    fn rewritten(&self, bytes: Bytes) -> Self {
        Self::new(
            bytes,
            self.expires_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
    }
}

struct PerEntryTtl;

impl Expiry<String, Kept> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Kept, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Kept,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub(crate) struct MemoryBackend {
    entries: Moka<String, Kept>,
    /// Held across the two keys of a versioned write (see
    /// [`store_versioned`](Self::store_versioned)); plain writes stay per
    /// key, as moka orders them.
    versioned: std::sync::Mutex<()>,
}

impl MemoryBackend {
    /// `max_bytes` bounds the keys and encoded values held; the least
    /// recently used entries go first.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Kept| {
                u32::try_from(key.len() + 2 * entry.bytes.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self {
            entries,
            versioned: std::sync::Mutex::new(()),
        }
    }

    // Every write goes through `and_compute_with`, which moka serialises per
    // key: a fill's compare-and-set then cannot interleave with a delete.

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).map(|entry| entry.bytes)
    }

    /// The entry at `key` with its decoded copy, if one was kept.
    pub(crate) fn read(&self, key: &str) -> Option<Found> {
        self.entries.get(key).map(|entry| Found {
            bytes: entry.bytes,
            decoded: entry.decoded,
        })
    }

    pub(crate) fn set(&self, key: &str, bytes: Bytes, ttl: Duration) {
        let entry = Kept::new(bytes, ttl);
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|_| Op::Put(entry));
    }

    pub(crate) fn delete(&self, key: &str) -> bool {
        remove(&self.entries, key)
    }

    /// Removes every key starting with `prefix`. Walking the whole cache is
    /// blocking work: it runs on the blocking pool, so it never stalls the
    /// runtime's workers, and it finishes even if its caller is cancelled.
    pub(crate) async fn evict_prefix(&self, prefix: &str) -> u64 {
        let (entries, prefix) = (self.entries.clone(), prefix.to_owned());
        let walk = move || {
            let doomed: Vec<_> = entries
                .iter()
                .filter(|(key, _)| key.starts_with(&prefix))
                .map(|(key, _)| key)
                .collect();
            doomed.iter().filter(|key| remove(&entries, key)).count() as u64
        };
        match tokio::task::spawn_blocking(walk).await {
            Ok(removed) => removed,
            // Only a panic inside moka, or a runtime shutting down.
            Err(error) => {
                tracing::error!(%error, "cachefw: in-memory prefix eviction did not finish");
                0
            }
        }
    }

    /// Writes `marker` into the key if it is empty or holds exactly `over`;
    /// otherwise returns what it holds.
    pub(crate) fn acquire(
        &self,
        key: &str,
        marker: &Bytes,
        lease: Duration,
        over: Option<&Bytes>,
    ) -> Option<Bytes> {
        let result = self
            .entries
            .entry_by_ref(key)
            .and_compute_with(|existing| match existing {
                Some(held) if Some(&held.value().bytes) != over => Op::Nop,
                _ => Op::Put(Kept::new(marker.clone(), lease)),
            });
        match result {
            CompResult::Unchanged(existing) => Some(existing.into_value().bytes),
            _ => None,
        }
    }

    /// Stores `bytes` only over `marker`.
    pub(crate) fn fill(&self, key: &str, marker: &Bytes, bytes: Bytes, ttl: Duration) -> bool {
        let result = self
            .entries
            .entry_by_ref(key)
            .and_compute_with(|existing| match existing {
                Some(held) if held.value().bytes == *marker => Op::Put(Kept::new(bytes, ttl)),
                _ => Op::Nop,
            });
        matches!(result, CompResult::ReplacedWith(_))
    }

    /// Claims the entry at `key` for a reload (see `codec::with_claim`):
    /// `true` if it is a value or absent entry that no unexpired claim
    /// holds, now claimed by `nonce` for `claim`.
    pub(crate) fn take_reload_lease(
        &self,
        key: &str,
        nonce: &[u8; 8],
        claim: Duration,
        expires_ms: u64,
    ) -> bool {
        let now = now_ms();
        let result = self.entries.entry_by_ref(key).and_compute_with(|existing| {
            let Some(held) = existing.map(moka::Entry::into_value) else {
                return Op::Nop;
            };
            // Only the entry the caller read: a reload that landed
            // meanwhile is not reloaded again.
            let read = meta_of(&held.bytes).is_some_and(|meta| meta.expires_ms == expires_ms);
            match claim_of(&held.bytes) {
                Some((until, _)) if until <= now && read => {
                    match with_claim(&held.bytes, now.saturating_add(millis(claim)), nonce) {
                        Some(claimed) => Op::Put(held.rewritten(Bytes::from(claimed))),
                        None => Op::Nop,
                    }
                }
                _ => Op::Nop,
            }
        });
        matches!(result, CompResult::ReplacedWith(_))
    }

    /// Stores `bytes` only while the entry carries the claim of `nonce`.
    pub(crate) fn fill_claimed(
        &self,
        key: &str,
        nonce: &[u8; 8],
        bytes: Bytes,
        ttl: Duration,
    ) -> bool {
        let result = self
            .entries
            .entry_by_ref(key)
            .and_compute_with(|existing| match existing {
                Some(held) if claim_of(&held.value().bytes).is_some_and(|(_, n)| &n == nonce) => {
                    Op::Put(Kept::new(bytes, ttl))
                }
                _ => Op::Nop,
            });
        matches!(result, CompResult::ReplacedWith(_))
    }

    /// Gives the claim of `nonce` up, if the entry still carries it.
    pub(crate) fn release_reload_lease(&self, key: &str, nonce: &[u8; 8]) {
        self.entries.entry_by_ref(key).and_compute_with(|existing| {
            let Some(held) = existing.map(moka::Entry::into_value) else {
                return Op::Nop;
            };
            match claim_of(&held.bytes) {
                Some((_, n)) if &n == nonce => match with_claim(&held.bytes, 0, &[0; 8]) {
                    Some(free) => Op::Put(held.rewritten(Bytes::from(free))),
                    None => Op::Nop,
                },
                _ => Op::Nop,
            }
        });
    }

    /// Removes the key only while it holds `marker`.
    pub(crate) fn release(&self, key: &str, marker: &Bytes) {
        self.entries
            .entry_by_ref(key)
            .and_compute_with(|existing| match existing {
                Some(held) if held.value().bytes == *marker => Op::Remove,
                _ => Op::Nop,
            });
    }
}

/// How long an entry "without expiry" lives in memory: moka needs a TTL.
const NO_EXPIRY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The TTL of a versioned write's milliseconds (0: none).
fn life(ms: u64) -> Duration {
    if ms == 0 {
        NO_EXPIRY
    } else {
        Duration::from_millis(ms)
    }
}

/// A version record: the version, and a digest of its write's bytes (none
/// after an eviction). Digests are compared within this process only.
fn record(version: u64, bytes: Option<&[u8]>) -> Bytes {
    let mut out = version.to_be_bytes().to_vec();
    if let Some(bytes) = bytes {
        out.extend_from_slice(&digest(bytes).to_be_bytes());
    }
    Bytes::from(out)
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The version of a record, and whether `entry` is the bytes of its write.
fn read_record(record: Option<Bytes>, entry: Option<&Bytes>) -> (Option<u64>, bool) {
    let Some(record) = record else {
        return (None, false);
    };
    let version = record
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes);
    let held = record
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes);
    let holds = matches!((held, entry), (Some(held), Some(entry)) if digest(entry) == held);
    (version, holds)
}

/// Versioned entries, as `backend/scripts.rs` does them on Redis.
impl MemoryBackend {
    fn lock_versioned(&self) -> std::sync::MutexGuard<'_, ()> {
        self.versioned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn store_versioned(
        &self,
        at: &VersionedKey,
        value: Bytes,
        ttl_ms: u64,
        version: u64,
        record_ttl_ms: u64,
        expect: Option<u64>,
    ) -> u8 {
        let _held = self.lock_versioned();
        let entry = self.get(&at.entry);
        let (current, holds) = read_record(self.get(&at.record), entry.as_ref());
        if expect.is_some() && current != expect {
            return 2;
        }
        if current.is_some_and(|current| current >= version) {
            if !holds {
                self.delete(&at.entry);
            }
            return 0;
        }
        let stamp = record(version, Some(&value));
        self.set(&at.entry, value, life(ttl_ms));
        self.set(&at.record, stamp, life(record_ttl_ms));
        1
    }

    pub(crate) fn evict_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        record_ttl_ms: u64,
    ) -> bool {
        let _held = self.lock_versioned();
        let entry = self.get(&at.entry);
        let (current, holds) = read_record(self.get(&at.record), entry.as_ref());
        if current.is_some_and(|current| current > version) {
            if !holds {
                self.delete(&at.entry);
            }
            return false;
        }
        self.delete(&at.entry);
        self.set(&at.record, record(version, None), life(record_ttl_ms));
        true
    }

    pub(crate) fn settle_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        ttl_ms: u64,
        record_ttl_ms: u64,
    ) -> u8 {
        let _held = self.lock_versioned();
        let entry = self.get(&at.entry);
        let record_bytes = self.get(&at.record);
        let (current, holds) = read_record(record_bytes.clone(), entry.as_ref());
        if current.is_some_and(|current| current > version) {
            if !holds {
                self.delete(&at.entry);
            }
            return 0;
        }
        if ttl_ms != 0
            && current == Some(version)
            && holds
            && let (Some(entry), Some(_)) = (entry, &record_bytes)
        {
            // Fresh for its TTL in its own metadata too; the record's
            // digest follows the rewritten bytes.
            let mut bytes = entry.to_vec();
            let at_expiry = crate::codec::EXPIRES_AT..crate::codec::EXPIRES_AT + 8;
            if let Some(expiry) = bytes.get_mut(at_expiry) {
                expiry.copy_from_slice(&crate::codec::expires_at(ttl_ms));
            }
            self.set(
                &at.record,
                record(version, Some(&bytes)),
                life(record_ttl_ms),
            );
            self.set(&at.entry, Bytes::from(bytes), life(ttl_ms));
            return 1;
        }
        self.delete(&at.entry);
        match record_bytes {
            Some(record_bytes) if current == Some(version) => {
                self.set(&at.record, record_bytes, life(record_ttl_ms));
            }
            _ => self.set(&at.record, record(version, None), life(record_ttl_ms)),
        }
        2
    }

    pub(crate) fn peek_versioned(&self, at: &VersionedKey) -> (Option<Bytes>, Option<u64>) {
        let _held = self.lock_versioned();
        let entry = self.get(&at.entry);
        let (current, holds) = read_record(self.get(&at.record), entry.as_ref());
        (entry.filter(|_| holds), current)
    }
}

fn remove(entries: &Moka<String, Kept>, key: &str) -> bool {
    let result = entries
        .entry_by_ref(key)
        .and_compute_with(|existing| match existing {
            Some(_) => Op::Remove,
            None => Op::Nop,
        });
    matches!(result, CompResult::Removed(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_by_their_own_ttl() {
        let backend = MemoryBackend::new(1 << 20);
        backend.set("short", Bytes::from_static(b"a"), Duration::from_millis(30));
        backend.set("long", Bytes::from_static(b"b"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(backend.get("short"), None);
        assert_eq!(backend.get("long"), Some(Bytes::from_static(b"b")));
    }

    #[test]
    fn capacity_is_bounded_in_bytes() {
        let backend = MemoryBackend::new(10_000);
        for i in 0..1_000 {
            backend.set(
                &format!("k{i}"),
                Bytes::from(vec![0u8; 100]),
                Duration::from_secs(60),
            );
        }
        backend.entries.run_pending_tasks();
        assert!(backend.entries.weighted_size() <= 10_000);
    }

    #[tokio::test]
    async fn prefix_eviction_runs_off_the_runtime() {
        let backend = MemoryBackend::new(1 << 20);
        for key in ["a:1", "a:2", "ab", "b:1"] {
            backend.set(key, Bytes::from_static(b"x"), Duration::from_secs(60));
        }
        assert_eq!(backend.evict_prefix("a:").await, 2);
        assert_eq!(backend.get("ab"), Some(Bytes::from_static(b"x")));
        assert_eq!(backend.get("a:1"), None);
    }
}
