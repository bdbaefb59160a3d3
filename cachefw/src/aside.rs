//! Cache-aside on a miss: single-flight in the process, the lease across
//! processes, the load, and the fill that holds only while the lease does.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::codec::{Codec, Entry};
use crate::flight::{Join, Leader, Outcome};
use crate::inner::Inner;
use crate::lease::{self, Claim, LeaseGuard};
use crate::policy::Policy;
use crate::shape::Shape;

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
        // A key too long to cache (counted and logged): the loader's answer,
        // stored nowhere.
        if self.check_key(full).is_err() {
            self.stats().miss();
            self.stats().load();
            return loader().await;
        }
        // A failed read was counted and logged; it is served like a miss.
        // When Redis is out, without the lease: the commands that take it
        // would fail alike and cost the caller another timeout.
        let lease = match self.read::<S::Value>(full).await {
            Ok(Some(entry)) => match S::from_entry(entry) {
                Some(output) => {
                    self.stats().hit();
                    return output;
                }
                None => true,
            },
            Ok(None) => true,
            Err(error) => !error.is_outage(),
        };
        self.stats().miss();
        let mut failed_loads = 0;
        loop {
            let follower = match self.flights().join(full) {
                Join::Leader(leader) => {
                    return self
                        .lead::<S, _, _>(Some(leader), full, lease, policy, unless, loader)
                        .await;
                }
                Join::Follower(follower) => follower,
            };
            self.stats().coalesced();
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
                // The leader's error went to its own caller. Join again,
                // once: one of the followers takes over at once and the
                // others wait for it, rather than all of them calling the
                // source together. If that load fails too, each loads for
                // itself without waiting in line behind the others (nor
                // behind a lease), so no caller waits more than two loads.
                Outcome::Failed => {
                    failed_loads += 1;
                    if failed_loads > 1 {
                        return self
                            .lead::<S, _, _>(None, full, false, policy, unless, loader)
                            .await;
                    }
                }
                Outcome::Abandoned => {}
            }
        }
        self.lead::<S, _, _>(None, full, lease, policy, unless, loader)
            .await
    }

    /// Loads `full` under the lease, or takes the value another process
    /// loaded meanwhile; shares the outcome with the flight's followers.
    async fn lead<S, F, Fut>(
        self: &Arc<Self>,
        leader: Option<Leader<'_>>,
        full: &str,
        lease: bool,
        policy: &Policy,
        unless: impl FnOnce(&S::Value) -> bool,
        loader: F,
    ) -> S::Output
    where
        S: Shape,
        F: FnOnce() -> Fut,
        Fut: Future<Output = S::Output>,
    {
        let guard = if lease {
            self.lease_for::<S>(full, leader.as_ref()).await
        } else {
            Ok(None)
        };
        let guard = match guard {
            Ok(guard) => guard,
            Err(output) => return output,
        };
        self.stats().load();
        let output = loader().await;
        let Some(entry) = S::to_entry(&output) else {
            // Release first, then tell the followers: the one that loads
            // next must find the lease free, not wait it out.
            if let Some(guard) = guard {
                guard.release().await;
            }
            if let Some(leader) = leader {
                leader.fail();
            }
            return output;
        };
        if let Some(leader) = &leader {
            leader.publish(Arc::new(entry.clone()));
        }
        // Without the lease, storing could overwrite a newer value: only the
        // lease holder fills. The guard stays armed until the fill settles,
        // so a caller cancelled mid-fill still releases the lease.
        if let Some(guard) = guard {
            self.fill(full, guard, &entry, policy, unless).await;
        }
        output
    }

    /// Takes the lease for a load of `full`: `Ok(Some(guard))` to load and
    /// fill, `Ok(None)` to load without storing, or `Err(output)` with the
    /// value another caller stored meanwhile.
    async fn lease_for<S: Shape>(
        self: &Arc<Self>,
        full: &str,
        leader: Option<&Leader<'_>>,
    ) -> Result<Option<LeaseGuard>, S::Output> {
        let mut over = None;
        loop {
            match lease::claim(self, full, over.as_ref()).await {
                Claim::Found(bytes) => {
                    if let Ok(entry) = self.codec().decode::<S::Value>(&bytes)
                        && let Some(output) = S::from_entry(entry.clone())
                    {
                        if let Some(leader) = leader {
                            leader.publish(Arc::new(entry));
                        }
                        return Err(output);
                    }
                    // An entry we cannot use (garbage, another type's, a
                    // cached `None` for a `Result`): take the lease over it,
                    // once, so that the load replaces it.
                    if over.is_some() {
                        return Ok(None);
                    }
                    over = Some(bytes);
                }
                Claim::Owned(guard) => return Ok(Some(guard)),
                Claim::Unguarded => return Ok(None),
            }
        }
    }

    /// Stores a loaded entry over our lease, as `policy` and `unless` say,
    /// or releases the lease when there is nothing to store. A failure is
    /// the cache's, never the caller's.
    async fn fill<V: Serialize>(
        &self,
        full: &str,
        guard: LeaseGuard,
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
            _ => return guard.release().await,
        };
        let ready = encoded.and_then(|(bytes, ttl)| {
            if bytes.len() as u64 > self.max_value_size() {
                return Err(crate::error::Error::ValueTooLarge {
                    key: full.to_owned(),
                    size: Some(bytes.len() as u64),
                    max: self.max_value_size(),
                });
            }
            let ttl = policy.jittered(ttl);
            crate::ttl::millis(ttl)
                .map(|ms| (bytes, ms))
                .ok_or_else(|| crate::error::Error::InvalidTtl {
                    key: full.to_owned(),
                    ttl,
                })
        });
        let (bytes, ttl_ms) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                // Nobody sees this error but the log: count it like the others.
                self.failure(&error);
                return guard.release().await;
            }
        };
        let stored = self
            .backend()
            .fill(full, guard.marker(), Bytes::from(bytes), ttl_ms)
            .await;
        match self.observe(stored) {
            Ok(true) => guard.filled(),
            Ok(false) => {
                guard.filled();
                tracing::debug!(
                    key = full,
                    "cachefw: fill dropped: the key was written or evicted while it loaded"
                );
            }
            // The marker may still be there: dropping the armed guard
            // releases it once Redis answers, so waiters need not wait out
            // the lease time.
            Err(_) => drop(guard),
        }
    }
}
