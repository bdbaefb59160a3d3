//! Metrics through the `metrics` facade (names and labels as the contract
//! fixes them). Labels are the namespace and the call site (an annotated
//! function's `module_path!()::name`, or `"-"` for calls through `Cache`
//! methods): never a key or a value, so their number stays bounded.
//!
//! Handles are registered once per call site and kept, so a hit costs one
//! lookup and one counter increment: with no recorder installed that
//! increment does nothing. Install the recorder before building caches, as
//! exporters ask: handles registered before it stay no-ops.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, Histogram, Label, SharedString};

use crate::telemetry::advice::{Advice, Window};

/// The call-site label of calls through `Cache` methods.
pub(crate) const NO_SITE: &str = "-";

/// Where a hit was answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Redis,
    Memory,
}

impl Tier {
    /// The tier of the backend named `backend` (`Backend::name`).
    pub(crate) fn of(backend: &str) -> Self {
        if backend == "redis" {
            Self::Redis
        } else {
            Self::Memory
        }
    }
}

/// How a load ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoadOutcome {
    Ok,
    Err,
    Timeout,
}

/// The handles of one call site.
struct Site {
    /// The call site's name, to find these handles again from another copy
    /// of the same string.
    name: &'static str,
    hit: Counter,
    near_hit: Counter,
    miss: Counter,
    load_ok: Counter,
    load_err: Counter,
    load_timeout: Counter,
    load_seconds: Histogram,
    stale_served: Counter,
    stored: Counter,
    evicted: Counter,
    /// Hits and reads of the current window, for the hit-ratio advice.
    window: Window,
}

/// A write to the cache, for `cachefw_writes_total{op}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOp {
    /// A value stored (a fill, a `set`, a `#[cache_put]`).
    Store,
    /// An entry (or a prefix) evicted.
    Evict,
}

pub(crate) struct Meters {
    namespace: SharedString,
    tier: Tier,
    /// Keyed by the site string's address and length: cheap to hash, and
    /// never two sites under one key (one site may have several addresses,
    /// which share its handles).
    sites: ArcSwap<Sites>,
    errors: [Counter; 4],
    breaker_open: Gauge,
    advice: Advice,
    /// Every write counted by [`write`](Self::write), for `Stats::writes`.
    writes: std::sync::atomic::AtomicU64,
}

/// The error kinds of `cachefw_errors_total`.
const ERROR_KINDS: [&str; 4] = ["timeout", "unavailable", "redis", "decode"];

impl Meters {
    pub(crate) fn new(namespace: &str, advice: Advice, tier: Tier) -> Self {
        let namespace = SharedString::from_owned(namespace.to_owned());
        let errors = ERROR_KINDS.map(|kind| {
            metrics::counter!(
                "cachefw_errors_total",
                labels(&namespace, NO_SITE, &[("kind", kind)])
            )
        });
        let breaker_open = metrics::gauge!(
            "cachefw_breaker_open",
            vec![Label::new("namespace", namespace.clone())]
        );
        Self {
            namespace,
            tier,
            sites: ArcSwap::from_pointee(HashMap::default()),
            errors,
            breaker_open,
            advice,
            writes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs `use_site` with the handles of `site`, registered on first use.
    fn with_site(&self, site: &'static str, use_site: impl FnOnce(&Site)) {
        let key = (site.as_ptr() as usize, site.len());
        if let Some(found) = self.sites.load().get(&key) {
            return use_site(found);
        }
        // The compiler may keep several copies of one site's string (one
        // per codegen unit it was inlined into): a new address of a known
        // name shares its handles, so a site is registered once.
        let known = self
            .sites
            .load()
            .values()
            .find(|found| found.name == site)
            .cloned();
        let made = known.unwrap_or_else(|| Arc::new(self.register(site)));
        self.sites.rcu(|sites| {
            let mut sites = HashMap::clone(sites);
            sites.entry(key).or_insert_with(|| made.clone());
            sites
        });
        use_site(&made);
    }

    fn register(&self, site: &'static str) -> Site {
        let ns = &self.namespace;
        let tier = match self.tier {
            Tier::Redis => "redis",
            Tier::Memory => "memory",
        };
        let load = |outcome| {
            metrics::counter!(
                "cachefw_loads_total",
                labels(ns, site, &[("outcome", outcome)])
            )
        };
        Site {
            name: site,
            hit: metrics::counter!("cachefw_hits_total", labels(ns, site, &[("tier", tier)])),
            near_hit: metrics::counter!(
                "cachefw_hits_total",
                labels(ns, site, &[("tier", "near")])
            ),
            miss: metrics::counter!("cachefw_misses_total", labels(ns, site, &[])),
            load_ok: load("ok"),
            load_err: load("err"),
            load_timeout: load("timeout"),
            load_seconds: metrics::histogram!("cachefw_load_seconds", labels(ns, site, &[])),
            stale_served: metrics::counter!("cachefw_stale_served_total", labels(ns, site, &[])),
            stored: metrics::counter!("cachefw_writes_total", labels(ns, site, &[("op", "store")])),
            evicted: metrics::counter!(
                "cachefw_writes_total",
                labels(ns, site, &[("op", "evict")])
            ),
            window: Window::new(),
        }
    }

    pub(crate) fn hit(&self, site: &'static str) {
        self.with_site(site, |site| {
            site.hit.increment(1);
            self.judge(site, true);
        });
    }

    pub(crate) fn near_hit(&self, site: &'static str) {
        self.with_site(site, |site| {
            site.near_hit.increment(1);
            self.judge(site, true);
        });
    }

    /// A read, for the hit-ratio advice.
    fn judge(&self, site: &Site, hit: bool) {
        site.window
            .read(hit, &self.advice, &self.namespace, site.name);
    }

    /// `count` writes of `op` to the cache.
    pub(crate) fn write(&self, site: &'static str, op: WriteOp, count: u64) {
        self.writes
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        self.with_site(site, |site| match op {
            WriteOp::Store => site.stored.increment(count),
            WriteOp::Evict => site.evicted.increment(count),
        });
    }

    /// A stale value answered: a hit, and stale.
    pub(crate) fn stale_hit(&self, site: &'static str) {
        self.with_site(site, |site| {
            site.hit.increment(1);
            site.stale_served.increment(1);
            self.judge(site, true);
        });
    }

    pub(crate) fn miss(&self, site: &'static str) {
        self.with_site(site, |site| {
            site.miss.increment(1);
            self.judge(site, false);
        });
    }

    pub(crate) fn load(&self, site: &'static str, outcome: LoadOutcome, took: Duration) {
        self.with_site(site, |site| {
            match outcome {
                LoadOutcome::Ok => site.load_ok.increment(1),
                LoadOutcome::Err => site.load_err.increment(1),
                LoadOutcome::Timeout => site.load_timeout.increment(1),
            }
            site.load_seconds.record(took.as_secs_f64());
        });
    }

    /// A backend failure of `kind` (`Error::kind`); usage and encode errors
    /// are not backend failures and have no series.
    pub(crate) fn error(&self, kind: &str) {
        if let Some(at) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[at].increment(1);
        }
    }

    /// How many writes [`write`](Self::write) counted.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn breaker(&self, open: bool) {
        self.breaker_open.set(if open { 1.0 } else { 0.0 });
    }
}

/// Each call site's handles, by the site string's address and length.
type Sites = HashMap<(usize, usize), Arc<Site>, BuildHasherDefault<SiteHasher>>;

/// Hashes a call site's `(address, length)`: already unique, so one
/// multiply spreads them (the default SipHash would cost more than the
/// lookup it serves, on every hit).
#[derive(Default)]
struct SiteHasher(u64);

impl Hasher for SiteHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.0 = (self.0 ^ value as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn labels(
    namespace: &SharedString,
    site: &'static str,
    more: &[(&'static str, &'static str)],
) -> Vec<Label> {
    let mut labels = vec![
        Label::new("namespace", namespace.clone()),
        Label::new("function", site),
    ];
    labels.extend(more.iter().map(|(key, value)| Label::new(*key, *value)));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_copies_of_a_site_share_its_handles() {
        let meters = Meters::new("ns", Advice::default(), Tier::Memory);
        let first: &'static str = Box::leak(String::from("app::get").into_boxed_str());
        let second: &'static str = Box::leak(String::from("app::get").into_boxed_str());
        assert_ne!(first.as_ptr(), second.as_ptr());
        let mut seen = Vec::new();
        meters.with_site(first, |site| seen.push(site as *const Site));
        meters.with_site(second, |site| seen.push(site as *const Site));
        meters.with_site(second, |site| seen.push(site as *const Site));
        assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
        let other: &'static str = Box::leak(String::from("app::put").into_boxed_str());
        meters.with_site(other, |site| seen.push(site as *const Site));
        assert_ne!(seen[0], seen[3]);
    }
}
