//! Cache-aside on a miss: single-flight in the process, the lease across
//! processes, the load, and the fill that holds only while the lease does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::cache::Inner;
use crate::codec::{Codec, Entry};
use crate::flight::{Join, Leader, Outcome};
use crate::lease::{self, Claim};
use crate::shape::Shape;

/// How long loaded entries are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// For a value.
    pub(crate) ttl: Duration,
    /// For the record that the source had no value; `None`: not stored.
    pub(crate) absent_ttl: Option<Duration>,
    /// Up to this fraction of a TTL is taken off at random, so entries
    /// loaded together do not expire together.
    pub(crate) jitter: f64,
}

impl Policy {
    fn jittered(&self, ttl: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return ttl;
        }
        ttl.mul_f64(1.0 - self.jitter * fastrand::f64())
            .max(Duration::from_millis(1))
    }
}

/// Our lease on a key until it is filled or released; dropped early (the
/// caller cancelled, the loader panicked) it releases the lease in the
/// background, so others need not wait out the lease time.
struct LeaseGuard {
    inner: Arc<Inner>,
    full: String,
    marker: Bytes,
    armed: bool,
}

impl LeaseGuard {
    async fn release(mut self) {
        self.armed = false;
        self.inner.release(&self.full, &self.marker).await;
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

impl Inner {
    /// Cache-aside for a function of shape `S`: the stored answer, or the
    /// loader's, loaded once per key however many callers miss together, in
    /// this process or any other on the same Redis.
    pub(crate) async fn through<S, F, Fut>(
        self: &Arc<Self>,
        full: &str,
        policy: &Policy,
        unless: impl FnOnce(&S::Value) -> bool,
        loader: F,
    ) -> S::Output
    where
        S: Shape,
        F: FnOnce() -> Fut,
        Fut: Future<Output = S::Output>,
    {
        // A failed read was counted and logged; it is served like a miss.
        if let Ok(Some(entry)) = self.read::<S::Value>(full).await
            && let Some(output) = S::from_entry(entry)
        {
            self.stats.hit();
            return output;
        }
        self.stats.miss();
        loop {
            let follower = match self.flights.join(full) {
                Join::Leader(leader) => {
                    return self
                        .lead::<S, _, _>(Some(leader), full, policy, unless, loader)
                        .await;
                }
                Join::Follower(follower) => follower,
            };
            self.stats.coalesced();
            match follower.wait().await {
                Outcome::Value(shared) => {
                    if let Some(output) = shared
                        .downcast_ref::<Entry<S::Value>>()
                        .and_then(|entry| S::from_entry(entry.clone()))
                    {
                        return output;
                    }
                    // Loaded as another type, or an absent entry this shape
                    // cannot answer with: load our own.
                    break;
                }
                Outcome::Failed => break,
                Outcome::Abandoned => continue,
            }
        }
        self.lead::<S, _, _>(None, full, policy, unless, loader)
            .await
    }

    /// Loads `full` under the lease, or takes the value another process
    /// loaded meanwhile; shares the outcome with the flight's followers.
    async fn lead<S, F, Fut>(
        self: &Arc<Self>,
        leader: Option<Leader<'_>>,
        full: &str,
        policy: &Policy,
        unless: impl FnOnce(&S::Value) -> bool,
        loader: F,
    ) -> S::Output
    where
        S: Shape,
        F: FnOnce() -> Fut,
        Fut: Future<Output = S::Output>,
    {
        let marker = lease::new_marker();
        let mut over = None;
        let guard = loop {
            let claim = lease::claim(
                &self.backend,
                full,
                &marker,
                over.as_ref(),
                self.lease_time,
                |e| self.failure(&e),
            )
            .await;
            match claim {
                Claim::Found(bytes) => {
                    if let Ok(entry) = self.codec.decode::<S::Value>(&bytes)
                        && let Some(output) = S::from_entry(entry.clone())
                    {
                        if let Some(leader) = &leader {
                            leader.publish(Arc::new(entry));
                        }
                        return output;
                    }
                    // An entry we cannot use (garbage, another type's, a
                    // cached `None` for a `Result`): take the lease over it,
                    // once, so that the load replaces it.
                    if over.is_some() {
                        break None;
                    }
                    over = Some(bytes);
                }
                Claim::Owned => {
                    break Some(LeaseGuard {
                        inner: self.clone(),
                        full: full.to_owned(),
                        marker,
                        armed: true,
                    });
                }
                Claim::Unguarded => break None,
            }
        };
        self.stats.load();
        let output = loader().await;
        let Some(entry) = S::to_entry(&output) else {
            if let Some(leader) = leader {
                leader.fail();
            }
            if let Some(guard) = guard {
                guard.release().await;
            }
            return output;
        };
        if let Some(leader) = &leader {
            leader.publish(Arc::new(entry.clone()));
        }
        // Without the lease, storing could overwrite a newer value: only the
        // lease holder fills.
        if let Some(mut guard) = guard {
            guard.armed = false;
            self.fill(full, &guard.marker, &entry, policy, unless).await;
        }
        output
    }

    /// Stores a loaded entry over our lease, as `policy` and `unless` say,
    /// or releases the lease when there is nothing to store. A failure is
    /// the cache's, never the caller's.
    async fn fill<V: Serialize>(
        &self,
        full: &str,
        marker: &Bytes,
        entry: &Entry<V>,
        policy: &Policy,
        unless: impl FnOnce(&V) -> bool,
    ) {
        let encoded = match (entry, policy.absent_ttl) {
            (Entry::Value(value), _) if !unless(value) => {
                self.encode(full, value).map(|bytes| (bytes, policy.ttl))
            }
            (Entry::Absent, Some(absent_ttl)) => Ok((Codec::encode_absent(), absent_ttl)),
            // Nothing to store: let the waiting callers load.
            _ => return self.release(full, marker).await,
        };
        let ready = encoded.and_then(|(bytes, ttl)| {
            crate::ttl::millis(full, policy.jittered(ttl)).map(|ms| (bytes, ms))
        });
        let (bytes, ttl_ms) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                // Nobody sees this error but the log: count it like the others.
                self.failure(&error);
                return self.release(full, marker).await;
            }
        };
        let stored = self
            .backend
            .fill(full, marker, Bytes::from(bytes), ttl_ms)
            .await;
        if let Ok(false) = self.observe(stored) {
            tracing::debug!(
                key = full,
                "cachefw: fill dropped: the key was written or evicted while it loaded"
            );
        }
    }

    /// Gives up our lease on `full`; a failure is counted and logged.
    async fn release(&self, full: &str, marker: &Bytes) {
        let result = self.backend.release(full, marker).await;
        let _ = self.observe(result);
    }
}
