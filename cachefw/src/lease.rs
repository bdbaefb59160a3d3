//! The lease that stops stampedes across processes and stale fills (the
//! leases of Nishtala et al., "Scaling Memcache at Facebook", NSDI 2013,
//! §3.2.1), kept in the entry's own key.
//!
//! On a miss, the in-process leader tries to write a lease marker (a token
//! of its own) into the empty key. If it wins, it loads and fills the key,
//! but only while the key still holds its marker: a `delete`, `set`,
//! eviction or put of the key in the meantime replaces or removes the
//! marker, so a load that read the source before a write cannot store its
//! old value after it. If another caller holds the lease, the leader polls
//! the key until the value arrives, and loads itself only after the lease
//! time. Every script touches one key, so it runs unchanged on Redis
//! Cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Error;
use crate::backend::Backend;
use crate::codec::{is_lease, lease_marker};

/// The Lua scripts of the Redis backend. Each touches only `KEYS[1]`.
pub(crate) mod scripts {
    /// `ARGV`: marker, lease ms, and optionally bytes to replace. Returns
    /// what the key holds, or nil after writing the marker into the key:
    /// when it was empty, held exactly the bytes to replace (an entry the
    /// caller cannot use), or held a key of another Redis type.
    pub(crate) const ACQUIRE: &str = r"
local held = redis.pcall('GET', KEYS[1])
if type(held) == 'table' and held.err then
  redis.call('DEL', KEYS[1])
  held = false
end
if held and held ~= ARGV[3] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

    /// `ARGV`: marker, value, ttl ms. Stores the value only over our own
    /// marker; returns 1 if it did.
    pub(crate) const FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

    /// `ARGV`: marker. Removes the key only while it holds our marker.
    pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";
}

/// Polling a leased key starts at this pause and doubles up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(50);

/// A fresh lease marker: a token unique to this process and call.
pub(crate) fn new_marker() -> Bytes {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut token = [0u8; 20];
    token[..4].copy_from_slice(&std::process::id().to_be_bytes());
    token[4..12].copy_from_slice(&SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    token[12..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    Bytes::from(lease_marker(&token))
}

/// What a miss may do with the key.
pub(crate) enum Claim {
    /// We hold the lease: load, then fill with our marker.
    Owned,
    /// Someone else filled the key while we waited: these bytes.
    Found(Bytes),
    /// The lease could not be settled (the backend failed, or its holder
    /// outlasted the lease time): load without storing.
    Unguarded,
}

/// Takes the lease on `full` (also over exactly the bytes `over`, an entry
/// the caller cannot use), or waits for the holder's value up to
/// `lease_time`. Backend failures go to `failed` and end in `Unguarded`.
pub(crate) async fn claim(
    backend: &Backend,
    full: &str,
    marker: &Bytes,
    over: Option<&Bytes>,
    lease_time: Duration,
    failed: impl Fn(Error),
) -> Claim {
    let lease_ms = u64::try_from(lease_time.as_millis()).unwrap_or(u64::MAX);
    let deadline = Instant::now() + lease_time;
    let mut pause = FIRST_POLL;
    loop {
        match backend.acquire(full, marker, lease_ms, over).await {
            Ok(None) => return Claim::Owned,
            Ok(Some(held)) if !is_lease(&held) => return Claim::Found(held),
            Ok(Some(_)) => {}
            Err(error) => {
                failed(error);
                return Claim::Unguarded;
            }
        }
        // Another caller loads: wait for its value.
        loop {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(key = full, "cachefw: lease holder outlasted the lease time");
                return Claim::Unguarded;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            match backend.get(full).await {
                Ok(Some(held)) if is_lease(&held) => {}
                Ok(Some(held)) => return Claim::Found(held),
                // Released or evicted: try to take it ourselves.
                Ok(None) => break,
                Err(error) => {
                    failed(error);
                    return Claim::Unguarded;
                }
            }
        }
    }
}
