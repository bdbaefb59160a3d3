//! One call of an annotated function, as the macros' generated code makes
//! it: the cache it uses, its rendered key, and the runtime entry that wraps
//! its body.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::aside::{Borrowed, Owned};
use crate::cache::Cache;
use crate::codec::Entry;
use crate::policy::{Options, Policy};
use crate::shape::{Returns, Shape};

/// The cache installed with [`crate::install`]; warns once per process when
/// there is none, since every annotated call then runs uncached.
pub fn installed_or_warn() -> Option<Cache> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let cache = crate::install::installed();
    if cache.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "cachefw: no cache installed and no `cache = …` given: annotated functions run \
             uncached; call cachefw::install(cache) at start-up"
        );
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

/// Renders a key template into the key buffer.
pub struct KeyWriter<'a>(&'a mut String);

impl KeyWriter<'_> {
    /// Literal text of the template.
    pub fn text(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// A placeholder, rendered with `Display`, `%` and `:` escaped.
    pub fn display<D: Display + ?Sized>(&mut self, value: &D) {
        crate::key::push_part(self.0, value);
    }
}

enum Target {
    Key(String),
    Prefix(String),
}

/// One call of an annotated function: the cache it uses and its rendered
/// key, made before the body takes ownership of the parameters.
pub struct Call {
    cache: Option<Cache>,
    target: Target,
}

impl Call {
    /// A call on the full key of `cache`, rendered once into one buffer.
    pub fn key(
        cache: Option<Cache>,
        capacity: usize,
        render: impl FnOnce(&mut KeyWriter<'_>),
    ) -> Self {
        let key = match &cache {
            Some(cache) => cache.render_key(capacity, |buf| render(&mut KeyWriter(buf))),
            None => String::new(),
        };
        Self {
            cache,
            target: Target::Key(key),
        }
    }

    /// A call on every key of `cache` that starts with the rendered prefix.
    pub fn prefix(
        cache: Option<Cache>,
        capacity: usize,
        render: impl FnOnce(&mut KeyWriter<'_>),
    ) -> Self {
        let mut prefix = String::new();
        if cache.is_some() {
            prefix.reserve(capacity);
            render(&mut KeyWriter(&mut prefix));
        }
        Self {
            cache,
            target: Target::Prefix(prefix),
        }
    }

    /// A call that bypasses the cache (its `condition` was false).
    pub fn bypass() -> Self {
        Self {
            cache: None,
            target: Target::Key(String::new()),
        }
    }

    /// `#[cacheable]`: the stored answer, or the body's, stored as the
    /// shape `S` says (`unless` holding back a value).
    pub async fn cacheable<S: Shape>(
        self,
        _: S,
        options: &Options,
        unless: impl FnOnce(&S::Value) -> bool,
        body: impl Future<Output = S::Output>,
    ) -> S::Output {
        let (Some(cache), Target::Key(key)) = (self.cache, self.target) else {
            return body.await;
        };
        let inner = cache.inner();
        let policy = Policy::resolve(options, inner.defaults());
        inner
            .through::<S, _>(&key, &policy, Borrowed(|| body, unless))
            .await
    }

    /// `#[cacheable]` with background options: as [`cacheable`](Self::cacheable),
    /// with a loader made of owned copies of the arguments, which the cache
    /// may finish in the background (a refresh ahead of expiry, a
    /// revalidation, a load past its timeout).
    pub async fn cacheable_owned<S, F, Fut, U>(
        self,
        _: S,
        options: &Options,
        unless: U,
        loader: F,
    ) -> S::Output
    where
        S: Shape,
        S::Output: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = S::Output> + Send + 'static,
        U: FnOnce(&S::Value) -> bool + Send + 'static,
    {
        let (Some(cache), Target::Key(key)) = (self.cache, self.target) else {
            return loader().await;
        };
        let inner = cache.inner();
        let policy = Policy::resolve(options, inner.defaults());
        inner
            .through::<S, _>(&key, &policy, Owned(loader, unless))
            .await
    }

    async fn evict_now(&self) {
        let Some(cache) = &self.cache else { return };
        // Failures are counted and logged by the cache; they never reach
        // the caller.
        let _ = match &self.target {
            Target::Key(key) => cache.inner().delete_full(key).await.map(|_| ()),
            Target::Prefix(prefix) => cache.evict_prefix(prefix).await.map(|_| ()),
        };
    }

    /// `#[cache_evict]`: evicts after the body succeeds (`Ok` of a
    /// `Result`, any value of a shape without errors); with `before`,
    /// before the body and again after it, whatever it returns, so a reader
    /// that filled the key in between does not win.
    pub async fn evict<S: Returns>(
        self,
        _: S,
        before: bool,
        body: impl Future<Output = S::Output>,
    ) -> S::Output {
        if before {
            self.evict_now().await;
        }
        let output = body.await;
        if before || S::succeeded(&output) {
            self.evict_now().await;
        }
        output
    }

    /// `#[cache_put]`: stores the body's value (`Ok`, `Some`, or a plain
    /// value) unless `unless` holds it back; a `None` (`Ok(None)`) evicts
    /// the key instead, since the source no longer has a value; an `Err`
    /// changes nothing.
    pub async fn put<S: Shape>(
        self,
        _: S,
        options: &Options,
        unless: impl FnOnce(&S::Value) -> bool,
        body: impl Future<Output = S::Output>,
    ) -> S::Output {
        let output = body.await;
        let (Some(cache), Target::Key(key)) = (&self.cache, &self.target) else {
            return output;
        };
        match S::to_entry(&output) {
            Some(Entry::Value(value)) if !unless(&value) => {
                let policy = Policy::resolve(options, cache.inner().defaults());
                let ttl = policy.jittered(policy.ttl);
                cache.inner().put_full(key, &value, ttl).await;
            }
            Some(Entry::Absent) => self.evict_now().await,
            Some(Entry::Value(_) | Entry::Leased) | None => {}
        }
        output
    }
}
