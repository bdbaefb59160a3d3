//! Cache-aside: the read, and on a miss single-flight in the process, the
//! lease across processes, the load, and the fill that holds only while the
//! lease does. Entries past their TTL are served or used as a fallback as
//! the policy's windows say (stale-while-revalidate, stale-if-error, load
//! timeouts), and entries near their expiry are recomputed ahead of it
//! (XFetch). A reload of a present entry takes a claim on it instead of the
//! lease, so that everyone keeps reading it meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::clock::{millis, now_ms};
use crate::codec::extended;
use crate::codec::{Codec, Decoded, Entry, Meta};
use crate::flight::{Join, Leader, Outcome};
use crate::inner::Inner;
use crate::keep::Keep;
use crate::lease::{self, LeaseGuard, ReloadLease, Taken};
use crate::options::Policy;
use crate::shape::{Returns, Shape};
use crate::telemetry::meters::LoadOutcome;
use crate::telemetry::meters::WriteOp;
use tokio::sync::oneshot;
use tracing::Instrument as _;

/// A load as a call hands it over: the loader, and the `unless` that says
/// which of its values are not stored.
pub(crate) trait Load<S: Shape>: Sized {
    /// The load's future, made by calling the loader.
    type Fut: Future<Output = S::Output>;
    /// The `unless` predicate.
    type Unless: Keep<S::Value>;

    /// Calls the loader (its future runs when awaited).
    fn start(self) -> (Self::Fut, Self::Unless);

    /// The same load as one the cache can finish on its own, in the
    /// background; `Err(self)` for a loader that borrows from its caller.
    fn detach(self) -> Result<Spawn<S>, Self>;
}

/// Starts a detached load as the cache's background work, filling through
/// the holder given, and sends its output to the sender, if any.
pub(crate) type Spawn<S> = Box<
    dyn FnOnce(
            &Arc<Inner>,
            String,
            Policy,
            Holder,
            Option<oneshot::Sender<Loaded<<S as Returns>::Output>>>,
        ) + Send,
>;

/// What a load returned, and whether its fill was voided: refused because
/// the key was evicted or written while the load ran (not because its lease
/// or claim lapsed). The followers of a voided load load again, once (see
/// `flight.rs`); its own caller takes the value, its request having
/// overlapped the write.
pub(crate) struct Loaded<O> {
    pub(crate) output: O,
    pub(crate) voided: bool,
}

/// A loader that may borrow from its caller (`get_or_load`): it runs only
/// within the call.
pub(crate) struct Borrowed<F, U>(pub(crate) F, pub(crate) U);

impl<S, F, Fut, U> Load<S> for Borrowed<F, U>
where
    S: Shape,
    F: FnOnce() -> Fut,
    Fut: Future<Output = S::Output>,
    U: Keep<S::Value>,
{
    type Fut = Fut;
    type Unless = U;

    fn start(self) -> (Fut, U) {
        ((self.0)(), self.1)
    }

    fn detach(self) -> Result<Spawn<S>, Self> {
        Err(self)
    }
}

/// A loader that owns what it needs (`get_or_load_owned`, the macros'
/// owned copies): the cache may finish it in the background.
pub(crate) struct Owned<F, U>(pub(crate) F, pub(crate) U);

impl<S, F, Fut, U> Load<S> for Owned<F, U>
where
    S: Shape,
    S::Output: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = S::Output> + Send + 'static,
    U: Keep<S::Value> + Send + 'static,
{
    type Fut = Fut;
    type Unless = U;

    fn start(self) -> (Fut, U) {
        ((self.0)(), self.1)
    }

    fn detach(self) -> Result<Spawn<S>, Self> {
        let Self(load, unless) = self;
        Ok(Box::new(move |inner, full, policy, holder, done| {
            let owner = inner.clone();
            inner.background().spawn(async move {
                let loaded = Aside::new(&owner)
                    .load_and_fill::<S>(&full, &policy, load(), unless, holder)
                    .await;
                if let Some(done) = done {
                    // The caller may have stopped waiting: that is fine.
                    let _ = done.send(loaded);
                }
            });
        }))
    }
}

/// How an entry read for a call stands.
enum Found<O> {
    /// Within its TTL.
    Fresh(O, Meta),
    /// Past its TTL, within stale-while-revalidate: served now, reloaded.
    /// With its expiry, which identifies the entry read.
    Revalidate(O, u64),
    /// Past its TTL, within stale-if-error: a fallback if the load fails
    /// or outlasts the load timeout.
    Fallback(O, u64),
    /// Nothing this call can answer with.
    Miss,
}

/// The cache-aside flow of one cache: reads, single-flight, leases,
/// loads and fills, over the cache's shared state.
pub(crate) struct Aside<'a> {
    inner: &'a Arc<Inner>,
}

impl<'a> Aside<'a> {
    pub(crate) fn new(inner: &'a Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Cache-aside for a function of shape `S`: the stored answer, or the
    /// loader's, loaded once per key however many callers miss together, in
    /// this process or any other on the same Redis.
    pub(crate) async fn through<S: Shape, L: Load<S>>(
        &self,
        full: &str,
        policy: &Policy,
        load: L,
    ) -> S::Output {
        // Debug level: nothing reaches an `info` subscriber on the hit path;
        // the key appears only from `debug` on, values never.
        let span = tracing::debug_span!(
            crate::telemetry::GET_SPAN,
            namespace = self.inner.namespace(),
            function = policy.site,
            key = full,
            outcome = tracing::field::Empty,
            tier = self.inner.backend().name(),
        );
        self.through_in::<S, L>(full, policy, load)
            .instrument(span)
            .await
    }

    async fn through_in<S: Shape, L: Load<S>>(
        &self,
        full: &str,
        policy: &Policy,
        load: L,
    ) -> S::Output {
        let now = now_ms();
        // A failed read was counted and logged; it is served like a miss.
        // When Redis is out, without the lease: the commands that take it
        // would fail alike and cost the caller another timeout.
        let (lease, found, near) = match self.inner.read_value::<S::Value>(full).await {
            Ok(Some((decoded, near))) => (true, classify::<S>(decoded, now, policy), near),
            Ok(None) => (true, Found::Miss, false),
            Err(error) => (!error.is_outage(), Found::Miss, false),
        };
        let fallback = match found {
            Found::Fresh(output, meta) => {
                self.inner.telemetry().hit(policy.site, near);
                if policy.refresh_due(now, meta.expires_ms, meta.delta_ms) {
                    return self
                        .reload_present::<S, L>(full, policy, load, output, meta.expires_ms)
                        .await;
                }
                return output;
            }
            Found::Revalidate(stale, expires) => {
                self.inner.telemetry().stale_hit(policy.site);
                return self
                    .reload_present::<S, L>(full, policy, load, stale, expires)
                    .await;
            }
            Found::Fallback(stale, expires) => {
                // A source that failed a moment ago is spared.
                if self.inner.background().throttled(full) {
                    self.inner.telemetry().stale_hit(policy.site);
                    return stale;
                }
                Some((stale, expires))
            }
            Found::Miss => None,
        };
        let mut failed_loads = 0;
        // Whether this caller joined a voided load and loads again.
        let mut reloading = false;
        loop {
            let follower = match self.inner.flights().join(full) {
                Join::Leader(leader) => {
                    if reloading {
                        self.inner.telemetry().stats().reload();
                    }
                    return self
                        .lead::<S, L>(Some(leader), full, lease, fallback, policy, load)
                        .await;
                }
                Join::Follower(follower) => follower,
            };
            self.inner.telemetry().stats().coalesced();
            let waited = match (&fallback, policy.load_timeout) {
                (Some(_), Some(timeout)) => {
                    tokio::time::timeout(timeout, follower.wait()).await.ok()
                }
                _ => Some(follower.wait().await),
            };
            match waited {
                // The load we joined was voided by an eviction or a write of
                // its key, which another process may have acknowledged
                // before we asked: load again, once, single-flight again.
                Some(Outcome::Voided(_)) if !reloading => reloading = true,
                Some(Outcome::Value(shared) | Outcome::Voided(shared)) => {
                    if let Some(output) = shared
                        .downcast_ref::<Entry<S::Value>>()
                        .and_then(|entry| S::from_entry(entry.clone()))
                    {
                        self.inner.telemetry().miss(policy.site);
                        return output;
                    }
                    // Loaded as another type, or an absent entry this shape
                    // cannot answer with: load our own.
                    break;
                }
                // The leader's error went to its own caller.
                Some(Outcome::Failed) => {
                    if let Some((stale, _)) = fallback {
                        self.inner.telemetry().stale_hit(policy.site);
                        return stale;
                    }
                    // Join again, once: one of the followers takes over at
                    // once and the others wait for it, rather than all of
                    // them calling the source together. If that load fails
                    // too, each loads for itself without waiting in line
                    // behind the others (nor behind a lease), so no caller
                    // waits more than two loads.
                    failed_loads += 1;
                    if failed_loads > 1 {
                        return self
                            .lead::<S, L>(None, full, false, None, policy, load)
                            .await;
                    }
                }
                Some(Outcome::Abandoned) => {}
                // Past the load timeout, with a stale value at hand.
                None => {
                    if let Some((stale, _)) = fallback {
                        self.inner.telemetry().stale_hit(policy.site);
                        return stale;
                    }
                }
            }
        }
        self.lead::<S, L>(None, full, lease, fallback, policy, load)
            .await
    }

    /// Reloads a present entry under a claim while everyone keeps reading
    /// it (a refresh ahead of expiry, a revalidation), and returns what the
    /// call answers with: `current` when the cache finishes the load in the
    /// background or someone else reloads; the new value when this caller
    /// must run a borrowing loader itself (or `current` if that fails).
    async fn reload_present<S: Shape, L: Load<S>>(
        &self,
        full: &str,
        policy: &Policy,
        load: L,
        current: S::Output,
        expires_ms: u64,
    ) -> S::Output {
        if self.inner.bypasses(full) {
            return current;
        }
        let Some(claim) = ReloadLease::take(self.inner, full, expires_ms).await else {
            return current;
        };
        self.inner.telemetry().stats().refresh();
        match load.detach() {
            Ok(spawn) => {
                spawn(
                    self.inner,
                    full.to_owned(),
                    policy.clone(),
                    Holder::Reload(claim),
                    None,
                );
                current
            }
            Err(load) => {
                let (load, unless) = load.start();
                let output = self
                    .load_and_fill::<S>(full, policy, load, unless, Holder::Reload(claim))
                    .await
                    .output;
                match S::to_entry(&output) {
                    Some(_) => output,
                    None => current,
                }
            }
        }
    }

    /// Loads `full` for a caller that found nothing fresh, and shares the
    /// outcome with the flight's followers.
    async fn lead<S: Shape, L: Load<S>>(
        &self,
        leader: Option<Leader<'_>>,
        full: &str,
        lease: bool,
        fallback: Option<(S::Output, u64)>,
        policy: &Policy,
        load: L,
    ) -> S::Output {
        match fallback {
            Some(stale) => {
                self.lead_stale::<S, L>(leader, full, lease, stale, policy, load)
                    .await
            }
            None => {
                self.lead_miss::<S, L>(leader, full, lease, policy, load)
                    .await
            }
        }
    }

    /// Loads a missing key under the lease, or takes the value another
    /// process loaded meanwhile.
    async fn lead_miss<S: Shape, L: Load<S>>(
        &self,
        leader: Option<Leader<'_>>,
        full: &str,
        lease: bool,
        policy: &Policy,
        load: L,
    ) -> S::Output {
        let holder = if lease {
            match self.lease_for::<S>(full, leader.as_ref()).await {
                Ok(Some(guard)) => Holder::Lease(guard),
                Ok(None) => Holder::None,
                Err(output) => {
                    self.inner.telemetry().miss(policy.site);
                    return output;
                }
            }
        } else {
            Holder::None
        };
        // Without the lease (Redis out) or with an eviction of the key
        // pending, the load bypasses the cache.
        if lease && !self.inner.bypasses(full) {
            self.inner.telemetry().miss(policy.site);
        } else {
            self.inner.telemetry().bypass(policy.site);
        }
        let (load, unless) = load.start();
        let Loaded { output, voided } = self
            .load_and_fill::<S>(full, policy, load, unless, holder)
            .await;
        if let Some(leader) = leader {
            match S::to_entry(&output) {
                Some(entry) if voided => leader.publish_voided(Arc::new(entry)),
                Some(entry) => leader.publish(Arc::new(entry)),
                None => leader.fail(),
            }
        }
        output
    }

    /// Reloads an entry past its TTL under a claim, keeping it readable:
    /// the stale value answers if the load fails (and the source is then
    /// spared for a moment) or outlasts the load timeout.
    async fn lead_stale<S: Shape, L: Load<S>>(
        &self,
        leader: Option<Leader<'_>>,
        full: &str,
        lease: bool,
        (stale, expires_ms): (S::Output, u64),
        policy: &Policy,
        load: L,
    ) -> S::Output {
        let holder = match lease {
            true => ReloadLease::take(self.inner, full, expires_ms)
                .await
                .map_or(Holder::None, Holder::Reload),
            false => Holder::None,
        };
        let loaded = match policy.load_timeout {
            Some(timeout) => {
                self.load_within::<S, L>(full, policy, load, holder, timeout)
                    .await
            }
            None => {
                let (load, unless) = load.start();
                Some(
                    self.load_and_fill::<S>(full, policy, load, unless, holder)
                        .await,
                )
            }
        };
        let voided = loaded.as_ref().is_some_and(|loaded| loaded.voided);
        let loaded = loaded.map(|loaded| loaded.output);
        let entry = loaded.as_ref().and_then(S::to_entry);
        match (loaded, entry) {
            (Some(output), Some(entry)) => {
                match leader {
                    Some(leader) if voided => leader.publish_voided(Arc::new(entry)),
                    Some(leader) => leader.publish(Arc::new(entry)),
                    None => {}
                }
                self.inner.telemetry().miss(policy.site);
                output
            }
            (loaded, _) => {
                // The followers keep their own fallbacks.
                if let Some(leader) = leader {
                    leader.fail();
                }
                if loaded.is_some() {
                    // Fail-safe: the source failed; spare it a moment.
                    self.inner
                        .background()
                        .throttle(full, policy.fail_safe_throttle);
                }
                self.inner.telemetry().stale_hit(policy.site);
                stale
            }
        }
    }

    /// Runs the load for at most `timeout`. An owned load goes on in the
    /// background past it, to fill the cache; a borrowing one is cut off
    /// (its claim given up). `None` past the timeout.
    async fn load_within<S: Shape, L: Load<S>>(
        &self,
        full: &str,
        policy: &Policy,
        load: L,
        holder: Holder,
        timeout: Duration,
    ) -> Option<Loaded<S::Output>> {
        match load.detach() {
            Ok(spawn) => {
                let (sender, receiver) = oneshot::channel();
                spawn(
                    self.inner,
                    full.to_owned(),
                    policy.clone(),
                    holder,
                    Some(sender),
                );
                tokio::time::timeout(timeout, receiver).await.ok()?.ok()
            }
            Err(load) => {
                let (load, unless) = load.start();
                let started = Instant::now();
                let loaded = tokio::time::timeout(
                    timeout,
                    self.load_and_fill::<S>(full, policy, load, unless, holder),
                )
                .await
                .ok();
                if loaded.is_none() {
                    // Cut off: the load never ends, so it is counted here.
                    self.inner.telemetry().meters().load(
                        policy.site,
                        LoadOutcome::Timeout,
                        started.elapsed(),
                    );
                }
                loaded
            }
        }
    }

    /// Takes the lease for a load of `full`: `Ok(Some(guard))` to load and
    /// fill, `Ok(None)` to load without storing, or `Err(output)` with the
    /// value another caller stored meanwhile.
    async fn lease_for<S: Shape>(
        &self,
        full: &str,
        leader: Option<&Leader<'_>>,
    ) -> Result<Option<LeaseGuard>, S::Output> {
        let mut over = None;
        loop {
            match lease::take(self.inner, full, over.as_ref()).await {
                Taken::Found(bytes) => {
                    if let Ok(decoded) = self
                        .inner
                        .codec()
                        .decode::<S::Value>(&bytes, self.inner.max_value_size())
                        && decoded.meta.expires_ms > now_ms()
                        && self.inner.tags_hold(&bytes).await.unwrap_or(false)
                        && let Some(output) = S::from_entry(decoded.entry.clone())
                    {
                        if let Some(leader) = leader {
                            leader.publish(Arc::new(decoded.entry));
                        }
                        return Err(output);
                    }
                    // An entry we cannot use (garbage, another type's, a
                    // cached `None` for a `Result`, one past its TTL): take
                    // the lease over it, once, so that the load replaces it.
                    if over.is_some() {
                        return Ok(None);
                    }
                    over = Some(bytes);
                }
                Taken::Owned(guard) => return Ok(Some(guard)),
                Taken::Unguarded => return Ok(None),
            }
        }
    }

    /// Runs a load and stores what it returns, as `policy` and `unless`
    /// say, through what `holder` holds (a lease, a claim, or nothing: no
    /// fill). Returns the load's output, and whether the fill was voided by
    /// an eviction or a write. A failure is the cache's, never the
    /// caller's.
    pub(crate) async fn load_and_fill<S: Shape>(
        &self,
        full: &str,
        policy: &Policy,
        load: impl Future<Output = S::Output>,
        unless: impl Keep<S::Value>,
        holder: Holder,
    ) -> Loaded<S::Output> {
        self.inner.telemetry().stats().load();
        let started = Instant::now();
        let output = load
            .instrument(tracing::debug_span!("cachefw.load", key = full))
            .await;
        let took = started.elapsed();
        let delta_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let entry = S::to_entry(&output);
        let outcome = match entry {
            Some(_) => LoadOutcome::Ok,
            None => LoadOutcome::Err,
        };
        self.inner
            .telemetry()
            .meters()
            .load(policy.site, outcome, took);
        let stored = match (&entry, &holder) {
            (_, Holder::None) | (None, _) => None,
            (Some(entry), _) => self.stored(full, entry, policy, unless, delta_ms),
        };
        let Some((bytes, ttl_ms)) = stored else {
            // Nothing to store: give the lease or claim up at once, so
            // waiting callers load without waiting it out.
            holder.release().await;
            return Loaded {
                output,
                voided: false,
            };
        };
        let filled = match &holder {
            Holder::Lease(guard) => {
                self.inner
                    .backend()
                    .fill(full, guard.marker(), bytes, ttl_ms)
                    .await
            }
            Holder::Reload(claim) => {
                self.inner
                    .backend()
                    .fill_claimed(full, claim.nonce(), bytes, ttl_ms)
                    .await
            }
            Holder::None => Ok(false),
        };
        let answered = Instant::now();
        // A refresh replaced the value the near tier may hold.
        self.inner.near_written(full);
        let voided = match self.inner.observe(filled) {
            Ok(true) => {
                holder.filled();
                self.inner
                    .telemetry()
                    .meters()
                    .write(policy.site, WriteOp::Store, 1);
                false
            }
            Ok(false) => {
                // Refused while the lease or claim still ran: the key was
                // evicted or written meanwhile. Refused later, it lapsed
                // (and may have been taken over): nobody's write is missed.
                let voided = holder.live_at(answered);
                holder.filled();
                tracing::debug!(
                    key = full,
                    voided,
                    "cachefw: fill dropped: the key was written or evicted while it loaded, \
                     or its lease lapsed"
                );
                voided
            }
            // The marker may still be there: dropping the armed holder
            // releases it once Redis answers, so waiters need not wait out
            // the lease time.
            Err(_) => {
                drop(holder);
                false
            }
        };
        Loaded { output, voided }
    }

    /// The bytes to store for a loaded entry and their backend TTL (the
    /// entry's TTL plus the longest stale window), or `None` when nothing
    /// is to be stored (`unless`, an uncached `None`, a failure: counted).
    fn stored<V: Serialize>(
        &self,
        full: &str,
        entry: &Entry<V>,
        policy: &Policy,
        unless: impl Keep<V>,
        delta_ms: u32,
    ) -> Option<(Bytes, u64)> {
        let (ttl, value) = match (entry, policy.none_ttl) {
            (Entry::Value(value), _) => match unless.keep(value) {
                Some(ttl) => (ttl.unwrap_or(policy.ttl), Some(value)),
                None => return None,
            },
            (Entry::Absent, Some(none_ttl)) => (none_ttl, None),
            _ => return None,
        };
        let ttl = policy.jittered(ttl);
        let backend_ttl = ttl.saturating_add(policy.stale_window());
        let Some(ttl_ms) = crate::ttl::px(backend_ttl) else {
            self.inner.failure(&crate::error::Error::InvalidTtl {
                key: full.to_owned(),
                ttl: backend_ttl,
            });
            return None;
        };
        let meta = Meta {
            expires_ms: now_ms().saturating_add(millis(ttl)),
            delta_ms,
        };
        let bytes = match value {
            Some(value) => match self.inner.encode(full, value, meta, policy.tags.as_deref()) {
                Ok(bytes) => bytes,
                Err(error) => {
                    // Nobody sees this error but the log: count it like the
                    // others.
                    self.inner.failure(&error);
                    return None;
                }
            },
            None => extended::build(Codec::encode_absent(meta), policy.tags.as_deref(), 0),
        };
        // Larger than the limit: not stored (counted and logged there).
        self.inner.check_size(full, &bytes).ok()?;
        Some((Bytes::from(bytes), ttl_ms))
    }
}

/// What a load holds on its key: the lease (the key was empty), a claim
/// (the key holds an entry that stays readable), or nothing (it may not
/// fill).
pub(crate) enum Holder {
    Lease(LeaseGuard),
    Reload(ReloadLease),
    None,
}

impl Holder {
    async fn release(self) {
        match self {
            Self::Lease(guard) => guard.release().await,
            // Dropped armed, the claim is given up in the background; an
            // entry that keeps a stale claim only delays the next reload
            // by the lease time.
            Self::Reload(lease) => drop(lease),
            Self::None => {}
        }
    }

    fn filled(self) {
        match self {
            Self::Lease(guard) => guard.filled(),
            Self::Reload(lease) => lease.filled(),
            Self::None => {}
        }
    }

    /// Whether what it holds was certainly still running at `at`.
    fn live_at(&self, at: Instant) -> bool {
        match self {
            Self::Lease(guard) => guard.live_at(at),
            Self::Reload(lease) => lease.live_at(at),
            Self::None => false,
        }
    }
}

/// How the entry read for a call stands under `policy`.
fn classify<S: Shape>(decoded: Decoded<S::Value>, now: u64, policy: &Policy) -> Found<S::Output> {
    let Decoded { entry, meta } = decoded;
    let Some(output) = S::from_entry(entry) else {
        return Found::Miss;
    };
    if now < meta.expires_ms {
        return Found::Fresh(output, meta);
    }
    let age = Duration::from_millis(now - meta.expires_ms);
    if policy
        .stale_while_revalidate
        .is_some_and(|window| age <= window)
    {
        Found::Revalidate(output, meta.expires_ms)
    } else if policy.stale_if_error.is_some_and(|window| age <= window) {
        Found::Fallback(output, meta.expires_ms)
    } else {
        Found::Miss
    }
}
