//! One call of an annotated function, as the macros' generated code makes
//! it: the cache it uses, its rendered key, and the runtime entry that wraps
//! its body.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::Cache;
use crate::codec::Entry;
use crate::policy::{Options, Policy};
use crate::shape::{Fallible, Optional, Plain, Shape, Value};

/// The cache installed with [`crate::install`]; warns once per process when
/// there is none, since every annotated call then runs uncached.
pub fn installed() -> Option<Cache> {
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

    async fn through<S: Shape>(
        self,
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
            .through::<S, _, _>(&key, &policy, unless, || body)
            .await
    }

    /// `#[cacheable]` on a fn returning `Result<T, E>`.
    pub async fn cacheable_result<T: Value, E>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.through::<Fallible<T, E>>(options, unless, body).await
    }

    /// `#[cacheable]` on a fn returning `Option<T>`.
    pub async fn cacheable_option<T: Value>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = Option<T>>,
    ) -> Option<T> {
        self.through::<Optional<T>>(options, unless, body).await
    }

    /// `#[cacheable]` on a fn returning any other `T`.
    pub async fn cacheable_value<T: Value>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = T>,
    ) -> T {
        self.through::<Plain<T>>(options, unless, body).await
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

    /// `#[cache_evict]` on a fn returning `Result`: evicts after it returns
    /// `Ok`; with `before`, before the body and again after it, whatever it
    /// returns, so a reader that filled the key in between does not win.
    pub async fn evict_result<T, E>(
        self,
        before: bool,
        body: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if before {
            self.evict_now().await;
        }
        let output = body.await;
        if before || output.is_ok() {
            self.evict_now().await;
        }
        output
    }

    /// `#[cache_evict]` on a fn returning anything else: evicts after it
    /// returns; with `before`, before the body too.
    pub async fn evict<R>(self, before: bool, body: impl Future<Output = R>) -> R {
        if before {
            self.evict_now().await;
        }
        let output = body.await;
        self.evict_now().await;
        output
    }

    async fn put<S: Shape>(
        self,
        options: &Options,
        unless: impl FnOnce(&S::Value) -> bool,
        body: impl Future<Output = S::Output>,
    ) -> S::Output {
        let output = body.await;
        if let (Some(cache), Target::Key(key)) = (&self.cache, &self.target)
            && let Some(Entry::Value(value)) = S::to_entry(&output)
            && !unless(&value)
        {
            let policy = Policy::resolve(options, cache.inner().defaults());
            let ttl = policy.jittered(policy.ttl);
            cache.inner().put_full(key, &value, ttl).await;
        }
        output
    }

    /// `#[cache_put]` on a fn returning `Result`: stores `Ok`.
    pub async fn put_result<T: Value, E>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.put::<Fallible<T, E>>(options, unless, body).await
    }

    /// `#[cache_put]` on a fn returning `Option`: stores `Some`.
    pub async fn put_option<T: Value>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = Option<T>>,
    ) -> Option<T> {
        self.put::<Optional<T>>(options, unless, body).await
    }

    /// `#[cache_put]` on a fn returning any other `T`: stores it.
    pub async fn put_value<T: Value>(
        self,
        options: &Options,
        unless: impl FnOnce(&T) -> bool,
        body: impl Future<Output = T>,
    ) -> T {
        self.put::<Plain<T>>(options, unless, body).await
    }
}
