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
//! the key until the value arrives. When a lease ends without a value (its
//! holder failed, or it expired), one waiter takes it over at once and the
//! others wait on the new holder, so the waiters never all load together.
//! The scripts that do this on Redis are in `backend/scripts.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{is_lease, lease_marker};
use crate::error::Error;
use crate::inner::Inner;

/// Polling a leased key starts at this pause and doubles up to `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(50);
/// How many holders in a row a waiter waits on before it loads itself: a
/// chain of holders that each fail or die must not hold a caller forever.
const MAX_HOLDERS: u32 = 3;

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
pub(crate) enum Taken {
    /// We hold the lease: load, then fill through the guard.
    Owned(LeaseGuard),
    /// Someone else filled the key while we waited: these bytes.
    Found(Bytes),
    /// The lease could not be settled (the backend failed, or its holders
    /// outlasted the lease time): load without storing.
    Unguarded,
}

/// What one attempt at the lease on a key found.
pub(crate) enum Attempt {
    /// The lease is ours: load, then fill through the guard.
    Owned(LeaseGuard),
    /// Another caller holds it: its marker.
    Leased(Bytes),
    /// The key holds a value: these bytes.
    Found(Bytes),
    /// The backend failed (counted and logged): go on without the lease.
    Failed,
}

/// One try at the lease on `full` (also over exactly the bytes `over`, an
/// entry the caller cannot use). The single-key claim and the batch both
/// take leases through this.
pub(crate) async fn attempt(inner: &Arc<Inner>, full: &str, over: Option<&Bytes>) -> Attempt {
    // Armed before the ACQUIRE is sent: a caller cancelled while it is in
    // flight may hold the lease without knowing it, and dropping the guard
    // then releases it (RELEASE removes the key only if it holds our
    // marker, so a lease we did not get is left alone).
    let mut guard = LeaseGuard::armed(inner, full, new_marker());
    // Validated by the builder with the same rounding: never `PX 0`.
    let lease_ms = crate::ttl::px(inner.lease_time()).unwrap_or(1);
    match inner
        .backend()
        .acquire(full, &guard.marker, lease_ms, over)
        .await
    {
        Ok(None) => Attempt::Owned(guard),
        Ok(Some(held)) => {
            guard.armed = false;
            if is_lease(&held) {
                Attempt::Leased(held)
            } else {
                Attempt::Found(held)
            }
        }
        // The ACQUIRE may have run without our hearing back: the armed
        // guard, dropped here, releases whatever it took; unless the
        // breaker refused it, and nothing was sent.
        Err(error) => {
            if matches!(error, Error::Unavailable { .. }) {
                guard.armed = false;
            }
            inner.failure(&error);
            Attempt::Failed
        }
    }
}

/// Waiting on the holders of one key's lease: each new holder gets its own
/// lease time, up to [`MAX_HOLDERS`] in a row, and the key is polled with a
/// growing pause. The same rules for a single key and for a batch.
pub(crate) struct Watch {
    holder: Option<Bytes>,
    holders: u32,
    deadline: Instant,
    lease_time: Duration,
    pause: Duration,
}

/// What a poll of a leased key means for its watch.
pub(crate) enum Polled {
    /// The same holder still loads: wait on.
    Waiting,
    /// Released, evicted, or taken over by another caller: try for the
    /// lease again.
    Retry,
    /// A value: these bytes.
    Found(Bytes),
}

impl Watch {
    pub(crate) fn new(lease_time: Duration) -> Self {
        Self {
            holder: None,
            holders: 0,
            deadline: Instant::now() + lease_time,
            lease_time,
            pause: FIRST_POLL,
        }
    }

    /// `marker` holds the lease now. `false` when too many holders in a
    /// row came and went: a chain of holders that each fail or die must
    /// not hold a caller forever.
    pub(crate) fn held_by(&mut self, marker: Bytes) -> bool {
        if self.holder.as_ref() != Some(&marker) {
            self.holders += 1;
            if self.holders > MAX_HOLDERS {
                return false;
            }
            self.deadline = Instant::now() + self.lease_time;
            self.holder = Some(marker);
        }
        true
    }

    /// Gives up on the key: its wait is over.
    pub(crate) fn lapse(&mut self) {
        self.deadline = Instant::now();
    }

    /// Whether the holder outlasted its lease time (or the watch lapsed).
    pub(crate) fn lapsed(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// The pause before the next poll (never past the deadline); the
    /// following one is longer.
    pub(crate) fn next_pause(&mut self, now: Instant) -> Duration {
        let pause = self.pause.min(self.deadline.saturating_duration_since(now));
        self.pause = (self.pause * 2).min(MAX_POLL);
        pause
    }

    /// What the bytes read at the key mean.
    pub(crate) fn polled(&self, found: Option<Bytes>) -> Polled {
        match found {
            Some(held) if is_lease(&held) => {
                if self.holder.as_ref() == Some(&held) {
                    Polled::Waiting
                } else {
                    Polled::Retry
                }
            }
            Some(bytes) => Polled::Found(bytes),
            None => Polled::Retry,
        }
    }
}

/// Takes the lease on `full` (also over exactly the bytes `over`, an entry
/// the caller cannot use), or waits for the holder's value, up to the lease
/// time per holder. Backend failures are counted and end in `Unguarded`.
pub(crate) async fn take(inner: &Arc<Inner>, full: &str, over: Option<&Bytes>) -> Taken {
    let mut watch = Watch::new(inner.lease_time());
    let backend = inner.backend();
    loop {
        // An eviction of the key that Redis has not confirmed: whatever it
        // holds, or a holder fills, may be the value evicted.
        if inner.bypasses(full) {
            return Taken::Unguarded;
        }
        match attempt(inner, full, over).await {
            Attempt::Owned(guard) => return Taken::Owned(guard),
            Attempt::Found(bytes) => return Taken::Found(bytes),
            Attempt::Failed => return Taken::Unguarded,
            Attempt::Leased(marker) => {
                if !watch.held_by(marker) {
                    return Taken::Unguarded;
                }
            }
        }
        // Another caller loads: wait for its value.
        loop {
            let now = Instant::now();
            if watch.lapsed(now) {
                tracing::debug!(key = full, "cachefw: lease holder outlasted the lease time");
                return Taken::Unguarded;
            }
            tokio::time::sleep(watch.next_pause(now)).await;
            let polled = backend.get(full).await;
            if inner.bypasses(full) {
                return Taken::Unguarded;
            }
            match polled {
                Ok(found) => match watch.polled(found) {
                    Polled::Waiting => {}
                    Polled::Found(bytes) => return Taken::Found(bytes),
                    // Released, evicted, or taken over by another waiter:
                    // try for it again, which also restarts the clock for
                    // a new holder.
                    Polled::Retry => break,
                },
                // Filled with a value too large to read: taking the lease
                // replaces it.
                Err(error @ Error::ValueTooLarge { .. }) => {
                    inner.failure(&error);
                    break;
                }
                Err(error) => {
                    inner.failure(&error);
                    return Taken::Unguarded;
                }
            }
        }
    }
}

/// Our lease on a key until it is filled or released. Dropped while armed
/// (the caller was cancelled, the loader panicked), it releases the lease
/// in the background, so others need not wait out the lease time.
pub(crate) struct LeaseGuard {
    inner: Arc<Inner>,
    full: String,
    marker: Bytes,
    armed: bool,
    /// When the command that took the lease was sent: its expiry runs from
    /// a later instant on the server.
    sent: Instant,
}

impl LeaseGuard {
    /// A guard over `marker` on `full`, armed before the ACQUIRE that may
    /// take the lease is sent (so a caller cancelled meanwhile releases
    /// whatever it took).
    fn armed(inner: &Arc<Inner>, full: &str, marker: Bytes) -> Self {
        Self {
            inner: inner.clone(),
            full: full.to_owned(),
            marker,
            armed: true,
            sent: Instant::now(),
        }
    }

    /// Whether the lease was certainly still running at `at`: a fill
    /// refused by then found its marker removed by an eviction or a write
    /// of the key, not lapsed (and so not taken over either: a lease is
    /// taken only over an empty key).
    pub(crate) fn live_at(&self, at: Instant) -> bool {
        at < self.sent + self.inner.lease_time()
    }

    pub(crate) fn marker(&self) -> &Bytes {
        &self.marker
    }

    /// Gives the lease up now.
    pub(crate) async fn release(mut self) {
        self.inner.release(&self.full, &self.marker).await;
        self.armed = false;
    }

    /// The lease ends by a fill that replaced the marker (or failed to).
    pub(crate) fn filled(mut self) {
        self.armed = false;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (inner, full, marker) = (
            self.inner.clone(),
            std::mem::take(&mut self.full),
            self.marker.clone(),
        );
        runtime.spawn(async move { inner.release(&full, &marker).await });
    }
}

/// Our claim on a present entry, to reload it while it stays readable (a
/// refresh ahead of expiry, a revalidation, a fail-safe reload): the
/// entry-level twin of the lease. Only the claimant fills, and only while
/// the entry still carries its claim, so a write or eviction in between
/// voids the fill. Dropped while armed (cancelled, or the load failed), it
/// gives the claim up in the background.
pub(crate) struct ReloadLease {
    inner: Arc<Inner>,
    full: String,
    nonce: [u8; 8],
    armed: bool,
    /// When the command that took the claim was sent.
    sent: Instant,
}

impl ReloadLease {
    /// Claims the entry at `full` that expires at `expires_ms` (the one the
    /// caller read); `None` when it was replaced meanwhile, someone else
    /// holds a claim, the entry is gone or a lease, or Redis failed
    /// (counted).
    pub(crate) async fn take(inner: &Arc<Inner>, full: &str, expires_ms: u64) -> Option<Self> {
        let mut guard = Self {
            inner: inner.clone(),
            full: full.to_owned(),
            nonce: fastrand::u64(1..).to_be_bytes(),
            armed: true,
            sent: Instant::now(),
        };
        let claim_ms = crate::ttl::px(inner.lease_time()).unwrap_or(1);
        match inner
            .backend()
            .take_reload_lease(full, &guard.nonce, claim_ms, expires_ms)
            .await
        {
            Ok(true) => Some(guard),
            Ok(false) => {
                guard.armed = false;
                None
            }
            // The claim may have landed unheard: the armed guard, dropped
            // here, gives it up (unless nothing was sent).
            Err(error) => {
                if matches!(error, Error::Unavailable { .. }) {
                    guard.armed = false;
                }
                inner.failure(&error);
                None
            }
        }
    }

    pub(crate) fn nonce(&self) -> &[u8; 8] {
        &self.nonce
    }

    /// As [`LeaseGuard::live_at`]: the claim lasts the lease time.
    pub(crate) fn live_at(&self, at: Instant) -> bool {
        at < self.sent + self.inner.lease_time()
    }

    /// The claim ended with a fill (that landed or was refused).
    pub(crate) fn filled(mut self) {
        self.armed = false;
    }
}

impl Drop for ReloadLease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (inner, full, nonce) = (
            self.inner.clone(),
            std::mem::take(&mut self.full),
            self.nonce,
        );
        runtime.spawn(async move {
            let result = inner.backend().release_reload_lease(&full, &nonce).await;
            let _ = inner.observe(result);
        });
    }
}
