//! One call of an annotated function, as the macros' generated code makes
//! it: the cache it uses, its rendered key, and the runtime entry that wraps
//! its body: [`Call::cacheable`] for `#[cacheable]`, [`Writes`] for the
//! `#[cache_put]` and `#[cache_evict]` attributes stacked on a function.

mod writes;

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::aside::{Borrowed, Owned};
use crate::cache::Cache;
use crate::keep::TtlFrom;
use crate::options::{Options, Policy};
use crate::shape::Shape;
use crate::telemetry::report;

pub use self::writes::Writes;

/// The attribute a [`Call`] comes from, for the warning of
/// [`installed_or_warn`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attribute {
    /// `#[cacheable]`: a read.
    Cacheable,
    /// `#[cache_put]`: a write.
    Put,
    /// `#[cache_evict]`: an eviction.
    Evict,
}

impl Attribute {
    fn name(self) -> &'static str {
        match self {
            Self::Cacheable => "#[cacheable]",
            Self::Put => "#[cache_put]",
            Self::Evict => "#[cache_evict]",
        }
    }

    /// What a call of the attribute did not do without a cache.
    fn missed(self) -> &'static str {
        match self {
            Self::Cacheable => {
                "read nothing from a cache and stored nothing: the body ran uncached"
            }
            Self::Put => "stored nothing: wherever its key is cached, the old value stays",
            Self::Evict => {
                "evicted nothing: wherever its key is cached (such as in the `cache = …` of \
                 the reads beside it), the old value keeps being served"
            }
        }
    }
}

/// The cache installed with [`crate::install`], for an attribute that names
/// no `cache = …`. When there is none, that attribute does nothing, which is
/// most harmful for an eviction beside reads that name their cache (they
/// keep serving what it was meant to remove): the first such call of each
/// attribute logs a warning naming the function (`site`,
/// `module_path!()::name`), where the attribute is (`at`, `file:line`: two
/// methods of one name in a module are told apart), and what did not happen.
/// `warned` is the attribute's own flag (a `static` the macro emits beside
/// it), so a call after the warning costs one atomic load.
pub fn installed_or_warn(
    site: &'static str,
    at: &'static str,
    attribute: Attribute,
    warned: &'static AtomicBool,
) -> Option<Cache> {
    let cache = crate::install::installed();
    if cache.is_none() && !warned.load(Ordering::Relaxed) && !warned.swap(true, Ordering::Relaxed) {
        report::uninstalled(site, at, attribute.name(), attribute.missed());
    }
    cache
}

/// What `cache = <expr>` may name: a [`Cache`], an `Option<Cache>`, or
/// anything that dereferences to one (`Arc<Cache>`, `&Cache`, a `LazyLock`).
pub trait CacheRef {
    /// The cache to use, if any.
    fn __cachefw_cache(&self) -> Option<Cache>;
}

impl CacheRef for Cache {
    fn __cachefw_cache(&self) -> Option<Cache> {
        Some(self.clone())
    }
}

impl CacheRef for Option<Cache> {
    fn __cachefw_cache(&self) -> Option<Cache> {
        self.clone()
    }
}

/// A key template rendered alone: the `{key}` part, without namespace
/// and version (what an annotated function's `<name>_key` returns).
pub fn render_key(capacity: usize, render: impl FnOnce(&mut KeyWriter<'_>)) -> String {
    let mut key = String::with_capacity(capacity);
    render(&mut KeyWriter {
        buf: &mut key,
        holes: &mut Vec::new(),
    });
    key
}

/// Renders a key template into the key buffer, before the body runs.
pub struct KeyWriter<'a> {
    buf: &'a mut String,
    holes: &'a mut Vec<usize>,
}

impl KeyWriter<'_> {
    /// Literal text of the template.
    pub fn text(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    /// A placeholder, rendered with `Display`, `%` and `:` escaped.
    pub fn display<D: Display + ?Sized>(&mut self, value: &D) {
        crate::key::push_part(self.buf, value);
    }

    /// A `<result…>` placeholder: its value is rendered here once the body
    /// has returned (by a [`ResultWriter`]).
    pub fn result(&mut self) {
        self.holes.push(self.buf.len());
    }
}

#[derive(Clone)]
enum Scope {
    Key(String),
    Prefix(String),
}

/// One call of an annotated function: the cache it uses and its rendered
/// key, made before the body takes ownership of the parameters.
pub struct Call {
    cache: Option<Cache>,
    target: Scope,
    /// Where in the target the `<result…>` placeholders go, in order; none
    /// when the key is complete before the body runs.
    holes: Vec<usize>,
    /// The rendered `tags = [...]`: what a read's entry carries, what a put
    /// stores under, what an eviction evicts.
    tags: Vec<String>,
    /// A `#[cache_evict]` of tags alone: no key to evict.
    keyless: bool,
}

impl Call {
    /// A call on the full key of `cache`, rendered once into one buffer.
    pub fn key(
        cache: Option<Cache>,
        capacity: usize,
        render: impl FnOnce(&mut KeyWriter<'_>),
    ) -> Self {
        let mut holes = Vec::new();
        let key = match &cache {
            Some(cache) => {
                let keys = cache.inner().keys();
                let whole = keys.render_whole(capacity, |buf| {
                    render(&mut KeyWriter {
                        buf,
                        holes: &mut holes,
                    });
                });
                // A key with `<result>` parts gets its digest, if long,
                // once they are in (see `writes.rs`).
                if holes.is_empty() {
                    keys.shorten(whole)
                } else {
                    whole
                }
            }
            None => String::new(),
        };
        Self {
            cache,
            target: Scope::Key(key),
            holes,
            tags: Vec::new(),
            keyless: false,
        }
    }

    /// A call on every key of `cache` that starts with the rendered prefix.
    pub fn prefix(
        cache: Option<Cache>,
        capacity: usize,
        render: impl FnOnce(&mut KeyWriter<'_>),
    ) -> Self {
        let mut prefix = String::new();
        let mut holes = Vec::new();
        if cache.is_some() {
            prefix.reserve(capacity);
            render(&mut KeyWriter {
                buf: &mut prefix,
                holes: &mut holes,
            });
        }
        Self {
            cache,
            target: Scope::Prefix(prefix),
            holes,
            tags: Vec::new(),
            keyless: false,
        }
    }

    /// A call that bypasses the cache (its `condition` was false).
    pub fn bypass() -> Self {
        Self {
            cache: None,
            target: Scope::Key(String::new()),
            holes: Vec::new(),
            tags: Vec::new(),
            keyless: false,
        }
    }

    /// Adds a tag, its template rendered as a key's (placeholders escaped),
    /// without the namespace and version.
    pub fn tag(mut self, capacity: usize, render: impl FnOnce(&mut KeyWriter<'_>)) -> Self {
        if self.cache.is_some() {
            let mut tag = String::with_capacity(capacity);
            render(&mut KeyWriter {
                buf: &mut tag,
                holes: &mut Vec::new(),
            });
            self.tags.push(tag);
        }
        self
    }

    /// A `#[cache_evict]` of its tags only: no key is evicted.
    pub fn keyless(mut self) -> Self {
        self.keyless = true;
        self
    }

    /// `#[cacheable]`: the stored answer, or the body's, stored as the
    /// shape `S` says (`unless` holding back a value).
    pub async fn cacheable<S: Shape>(
        self,
        _: S,
        options: &Options,
        unless: impl FnOnce(&S::Value) -> bool,
        ttl: impl FnOnce(&S::Value) -> Option<Duration>,
        body: impl Future<Output = S::Output>,
    ) -> S::Output {
        let (Some(cache), Scope::Key(key)) = (self.cache, self.target) else {
            return body.await;
        };
        let inner = cache.inner();
        let policy = Policy::resolve(options, inner.defaults());
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let load = Borrowed(|| body, TtlFrom(unless, ttl));
        crate::tags::through::<S, _>(inner, &key, policy, &tags, load).await
    }

    /// `#[cacheable]` with background options: as [`cacheable`](Self::cacheable),
    /// with a loader made of owned copies of the arguments, which the cache
    /// may finish in the background (a refresh ahead of expiry, a
    /// revalidation, a load past its timeout).
    pub async fn cacheable_owned<S, F, Fut, U, T>(
        self,
        _: S,
        options: &Options,
        unless: U,
        ttl: T,
        loader: F,
    ) -> S::Output
    where
        S: Shape,
        S::Output: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = S::Output> + Send + 'static,
        U: FnOnce(&S::Value) -> bool + Send + 'static,
        T: FnOnce(&S::Value) -> Option<Duration> + Send + 'static,
    {
        let (Some(cache), Scope::Key(key)) = (self.cache, self.target) else {
            return loader().await;
        };
        let inner = cache.inner();
        let policy = Policy::resolve(options, inner.defaults());
        let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let load = Owned(loader, TtlFrom(unless, ttl));
        crate::tags::through::<S, _>(inner, &key, policy, &tags, load).await
    }
}
