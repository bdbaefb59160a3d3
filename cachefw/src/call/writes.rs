//! The writes of one call of a function under `#[cache_put]` and
//! `#[cache_evict]` attributes, however many stack on it (Spring's
//! `@Caching`): one expansion builds one [`Writes`], a step per attribute in
//! the order they are written, and runs the body once inside it.
//!
//! - Evictions with `before = true` run before the body, in order (and
//!   again after it, whatever it returned).
//! - Once the body has returned, each step decides at once, without
//!   waiting, what it writes: its `unless`, the shape of the return, its
//!   `<result…>` key. Then the writes run one after the other, in order.
//! - A put stores over any lease of its key, so no load that began before
//!   it can fill afterwards; a `None` evicts the key (a key named by the
//!   result has no entry to evict); an `Err` writes nothing.
//! - A caller cancelled while the writes run: the write under way is kept
//!   by the cache's journal (replayed until Redis confirms it), and each
//!   write not yet begun becomes an eviction run in the background, so no
//!   entry is left older than what the body wrote.

use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;

use super::{Call, Scope};
use crate::cache::Cache;
use crate::keep::{Keep, TtlFrom};
use crate::options::{Options, Policy};
use crate::shape::{Returned, Returns, Value};

/// The writes stacked on one function whose return has the shape `S`: `L`
/// holds the steps, `V` the type that puts store (`()` while there is none).
pub struct Writes<S, L, V> {
    steps: L,
    types: PhantomData<fn() -> (S, V)>,
}

impl<S: Returns> Writes<S, (), ()> {
    /// No writes yet, for a function of shape `S`.
    pub fn new(_: S) -> Self {
        Self {
            steps: (),
            types: PhantomData,
        }
    }
}

impl<S: Returns, L, V> Writes<S, L, V> {
    /// `#[cache_put]`: stores the value inside a success unless `unless`
    /// holds it back, at the key of `call` completed by `key` (which renders
    /// its `<result…>` placeholders, if any).
    pub fn put<U, T, K>(
        self,
        call: Call,
        options: &Options,
        unless: U,
        ttl: T,
        key: K,
    ) -> WithPut<S, L, U, T, K>
    where
        S::Inner: Value,
        U: FnOnce(&S::Inner) -> bool,
        T: FnOnce(&S::Inner) -> Option<Duration>,
        K: FnOnce(&mut ResultWriter<'_>, &S::Inner),
    {
        let put = Put {
            call,
            options: *options,
            unless: TtlFrom(unless, ttl),
            key,
        };
        Writes {
            steps: (self.steps, put),
            types: PhantomData,
        }
    }

    /// `#[cache_evict]`: evicts after a success (`Ok`, or any value of a
    /// shape without errors), at the key or prefix of `call` completed by
    /// `key`; with `before`, before the body and again after it, whatever
    /// it returns, so a reader that filled the key in between does not win.
    pub fn evict<K>(self, call: Call, before: bool, key: K) -> Writes<S, (L, Evict<K>), V>
    where
        K: FnOnce(&mut ResultWriter<'_>, &S::Inner),
    {
        let evict = Evict { call, before, key };
        Writes {
            steps: (self.steps, evict),
            types: PhantomData,
        }
    }

    /// Runs the body once between the writes, and returns what it returned.
    pub async fn run(self, body: impl Future<Output = S::Output>) -> S::Output
    where
        L: Step<S, V>,
        V: Serialize,
    {
        let mut before = Plan::default();
        self.steps.before(&mut before);
        before.run().await;
        let output = body.await;
        let mut after = Plan::default();
        self.steps.after(&output, &mut after);
        after.run().await;
        output
    }
}

/// One attribute of the stack, or several in a row.
pub trait Step<S: Returns, V> {
    /// Adds what it evicts before the body runs.
    fn before(&self, plan: &mut Plan<'_, V>);

    /// Adds what it writes now that the body returned `output`.
    fn after<'a>(self, output: &'a S::Output, plan: &mut Plan<'a, V>);
}

impl<S: Returns, V> Step<S, V> for () {
    fn before(&self, _: &mut Plan<'_, V>) {}

    fn after<'a>(self, _: &'a S::Output, _: &mut Plan<'a, V>) {}
}

impl<S: Returns, V, A: Step<S, V>, B: Step<S, V>> Step<S, V> for (A, B) {
    fn before(&self, plan: &mut Plan<'_, V>) {
        self.0.before(plan);
        self.1.before(plan);
    }

    fn after<'a>(self, output: &'a S::Output, plan: &mut Plan<'a, V>) {
        self.0.after(output, plan);
        self.1.after(output, plan);
    }
}

/// [`Writes`] with one more `#[cache_put]`, whose TTL may come from the
/// value.
pub type WithPut<S, L, U, T, K> = Writes<S, (L, Put<TtlFrom<U, T>, K>), <S as Returns>::Inner>;

/// A `#[cache_put]`.
pub struct Put<U, K> {
    call: Call,
    options: Options,
    unless: U,
    key: K,
}

impl<S, U, K> Step<S, S::Inner> for Put<U, K>
where
    S: Returns,
    S::Inner: Value,
    U: Keep<S::Inner>,
    K: FnOnce(&mut ResultWriter<'_>, &S::Inner),
{
    fn before(&self, _: &mut Plan<'_, S::Inner>) {}

    fn after<'a>(self, output: &'a S::Output, plan: &mut Plan<'a, S::Inner>) {
        let Self {
            call:
                Call {
                    cache,
                    target,
                    holes,
                    tags,
                    ..
                },
            options,
            unless,
            key,
        } = self;
        let Some(cache) = cache else { return };
        match S::returned(output) {
            Returned::Value(value) => {
                let Some(ttl) = unless.keep(value) else {
                    return;
                };
                let Scope::Key(full) = complete(target, &holes, |writer| key(writer, value)) else {
                    return;
                };
                let full = cache.inner().keys().shorten(full);
                let policy = Policy::resolve(&options, cache.inner().defaults());
                let ttl = policy.jittered(ttl.unwrap_or(policy.ttl));
                plan.push(Write::Put {
                    cache,
                    full,
                    value,
                    ttl,
                    tags,
                });
            }
            // The source has no value any more, so neither has the cache. A
            // key named by the result has no entry to remove.
            Returned::Absent => {
                if holes.is_empty() {
                    plan.push(Write::Evict { cache, target });
                }
            }
            Returned::Failed => {}
        }
    }
}

/// A `#[cache_evict]`.
pub struct Evict<K> {
    call: Call,
    before: bool,
    key: K,
}

impl<S, V, K> Step<S, V> for Evict<K>
where
    S: Returns,
    K: FnOnce(&mut ResultWriter<'_>, &S::Inner),
{
    fn before(&self, plan: &mut Plan<'_, V>) {
        if let (true, Some(cache)) = (self.before, &self.call.cache) {
            if !self.call.keyless {
                plan.push(Write::Evict {
                    cache: cache.clone(),
                    target: self.call.target.clone(),
                });
            }
            for tag in &self.call.tags {
                plan.push(Write::EvictTag {
                    cache: cache.clone(),
                    tag: tag.clone(),
                });
            }
        }
    }

    fn after<'a>(self, output: &'a S::Output, plan: &mut Plan<'a, V>) {
        let Self {
            call:
                Call {
                    cache,
                    target,
                    holes,
                    tags,
                    keyless,
                },
            before,
            key,
        } = self;
        let Some(cache) = cache else { return };
        if !(before || S::succeeded(output)) {
            return;
        }
        let target = if holes.is_empty() {
            Some(target)
        } else {
            // A success without a value (`None`) names no key.
            match S::returned(output) {
                Returned::Value(value) => Some(
                    match complete(target, &holes, |writer| key(writer, value)) {
                        Scope::Key(full) => Scope::Key(cache.inner().keys().shorten(full)),
                        prefix => prefix,
                    },
                ),
                _ => None,
            }
        };
        if let (Some(target), false) = (target, keyless) {
            plan.push(Write::Evict {
                cache: cache.clone(),
                target,
            });
        }
        for tag in tags {
            plan.push(Write::EvictTag {
                cache: cache.clone(),
                tag,
            });
        }
    }
}

/// Renders the `<result…>` placeholders of a key or prefix into the places
/// its [`KeyWriter`](super::KeyWriter) left for them, once the body returned.
pub struct ResultWriter<'a> {
    template: &'a str,
    holes: &'a [usize],
    out: String,
    /// How much of `template` is in `out` already.
    copied: usize,
    /// The hole the next value goes to.
    next: usize,
}

impl ResultWriter<'_> {
    /// The next `<result…>` placeholder, rendered with `Display`, `%` and
    /// `:` escaped.
    pub fn display<D: Display + ?Sized>(&mut self, value: &D) {
        // The expansion renders one value per hole; one more would go last.
        let at = self
            .holes
            .get(self.next)
            .copied()
            .unwrap_or(self.template.len());
        self.copy_to(at);
        crate::key::push_part(&mut self.out, value);
        self.next += 1;
    }

    fn copy_to(&mut self, at: usize) {
        if let Some(text) = self.template.get(self.copied..at) {
            self.out.push_str(text);
            self.copied = at;
        }
    }

    fn finish(mut self) -> String {
        self.copy_to(self.template.len());
        self.out
    }
}

/// `target` with the values `render` gives in its holes.
fn complete(target: Scope, holes: &[usize], render: impl FnOnce(&mut ResultWriter<'_>)) -> Scope {
    if holes.is_empty() {
        return target;
    }
    let fill = |template: &str| {
        let mut writer = ResultWriter {
            template,
            holes,
            out: String::with_capacity(template.len() + 16 * holes.len()),
            copied: 0,
            next: 0,
        };
        render(&mut writer);
        writer.finish()
    };
    match target {
        Scope::Key(full) => Scope::Key(fill(&full)),
        Scope::Prefix(prefix) => Scope::Prefix(fill(&prefix)),
    }
}

/// The writes of one phase of a call (before or after the body), run in
/// order. Dropped before they all ran (the caller was cancelled), it evicts
/// the rest in the background.
pub struct Plan<'a, V> {
    writes: VecDeque<Write<'a, V>>,
}

enum Write<'a, V> {
    /// Stores `value` at the full key `full` for `ttl`, over any lease,
    /// carrying `tags`.
    Put {
        cache: Cache,
        full: String,
        value: &'a V,
        ttl: Duration,
        tags: Vec<String>,
    },
    /// Evicts one key, or every key under a prefix.
    Evict { cache: Cache, target: Scope },
    /// Evicts every entry carrying a tag.
    EvictTag { cache: Cache, tag: String },
}

/// A write left undone by a cancelled call, evicted instead.
enum Undone {
    Scope(Cache, Scope),
    Tag(Cache, String),
}

impl<V> Default for Plan<'_, V> {
    fn default() -> Self {
        Self {
            writes: VecDeque::new(),
        }
    }
}

impl<'a, V> Plan<'a, V> {
    fn push(&mut self, write: Write<'a, V>) {
        self.writes.push_back(write);
    }

    async fn run(mut self)
    where
        V: Serialize,
    {
        // Each write leaves the queue as it begins: from then on the
        // cache's journal answers for it.
        while let Some(write) = self.writes.pop_front() {
            match write {
                Write::Put {
                    cache,
                    full,
                    value,
                    ttl,
                    tags,
                } => {
                    if tags.is_empty() {
                        cache.inner().put_full(&full, value, ttl).await;
                    } else {
                        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                        // Failures are the cache's to count and log.
                        let _ = crate::tags::set(cache.inner(), &full, value, ttl, &tags).await;
                    }
                    cache.inner().telemetry().meters().write(
                        crate::telemetry::meters::NO_SITE,
                        crate::telemetry::meters::WriteOp::Store,
                        1,
                    );
                }
                Write::Evict { cache, target } => evict(&cache, &target).await,
                Write::EvictTag { cache, tag } => {
                    let _ = cache.evict_tag(&tag).await;
                }
            }
        }
    }
}

impl<V> Drop for Plan<'_, V> {
    fn drop(&mut self) {
        if self.writes.is_empty() {
            return;
        }
        // Evicting is right whatever the write was: the body may have
        // changed the source, and the next reader loads afresh.
        let left: Vec<Undone> = self
            .writes
            .drain(..)
            .map(|write| match write {
                Write::Put { cache, full, .. } => Undone::Scope(cache, Scope::Key(full)),
                Write::Evict { cache, target } => Undone::Scope(cache, target),
                Write::EvictTag { cache, tag } => Undone::Tag(cache, tag),
            })
            .collect();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            drop(runtime.spawn(async move {
                for undone in &left {
                    match undone {
                        Undone::Scope(cache, target) => evict(cache, target).await,
                        Undone::Tag(cache, tag) => {
                            let _ = cache.evict_tag(tag).await;
                        }
                    }
                }
            }));
        }
    }
}

/// Evicts `target`. A failure is the cache's to count, log and replay; it
/// never reaches the caller.
async fn evict(cache: &Cache, target: &Scope) {
    let evicted = match target {
        Scope::Key(full) => cache.inner().delete_full(full).await.map(|_| ()),
        // Counted by `evict_prefix`.
        Scope::Prefix(prefix) => return drop(cache.evict_prefix(prefix).await),
    };
    if evicted.is_ok() {
        let meters = cache.inner().telemetry().meters();
        meters.write(
            crate::telemetry::meters::NO_SITE,
            crate::telemetry::meters::WriteOp::Evict,
            1,
        );
    }
}

#[cfg(test)]
// The borrows clippy finds needless are the shape dispatch, as generated.
#[allow(clippy::needless_borrow)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::shape::{Dispatch as _, Tag};

    const MINUTE: Duration = Duration::from_secs(60);

    async fn cache() -> Cache {
        Cache::builder().build().await.expect("an in-memory cache")
    }

    fn key(cache: &Cache, text: &str) -> Call {
        Call::key(Some(cache.clone()), text.len(), |writer| writer.text(text))
    }

    /// `key` with a `<result>` placeholder after `text`.
    fn result_key(cache: &Cache, text: &str) -> Call {
        Call::key(Some(cache.clone()), text.len(), |writer| {
            writer.text(text);
            writer.result();
        })
    }

    async fn stored(cache: &Cache, key: &str) -> Option<u32> {
        cache.get::<u32>(key).await.expect("get")
    }

    fn never(_: &u32) -> bool {
        false
    }

    fn no_result<T: ?Sized>(_: &mut ResultWriter<'_>, _: &T) {}

    fn call_ttl(_: &u32) -> Option<Duration> {
        None
    }

    #[test]
    fn result_values_go_in_their_holes_escaped() {
        let holes = [2, 4];
        let target = complete(Scope::Prefix("a:b:c".into()), &holes, |writer| {
            writer.display("x:y");
            writer.display(&7);
        });
        assert!(matches!(target, Scope::Prefix(p) if p == "a:x%3Ayb:7c"));
        let one_more = complete(Scope::Key("k:".into()), &[2], |writer| {
            writer.display(&1);
            writer.display(&2);
        });
        assert!(
            matches!(one_more, Scope::Key(k) if k == "k:12"),
            "never a panic"
        );
    }

    #[tokio::test]
    async fn writes_run_after_the_body_in_declaration_order() {
        let cache = cache().await;
        cache.set("k", &1u32, MINUTE).await.expect("set");
        let ran = AtomicBool::new(false);
        let body = async {
            assert_eq!(
                stored(&cache, "k").await,
                Some(1),
                "nothing before the body"
            );
            ran.store(true, Ordering::SeqCst);
            5u32
        };
        let output = Writes::new((&&&Tag::of(&body)).shape())
            .put(
                key(&cache, "k"),
                &Options::default(),
                never,
                call_ttl,
                no_result,
            )
            .evict(key(&cache, "k"), false, no_result)
            .put(
                result_key(&cache, "by-value:"),
                &Options::default(),
                never,
                call_ttl,
                |w, v| w.display(v),
            )
            .run(body)
            .await;
        assert_eq!(output, 5);
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(
            stored(&cache, "k").await,
            None,
            "the evict came after the put"
        );
        assert_eq!(stored(&cache, "by-value:5").await, Some(5));

        let body = async { 6u32 };
        Writes::new((&&&Tag::of(&body)).shape())
            .evict(key(&cache, "k"), false, no_result)
            .put(
                key(&cache, "k"),
                &Options::default(),
                never,
                call_ttl,
                no_result,
            )
            .run(body)
            .await;
        assert_eq!(
            stored(&cache, "k").await,
            Some(6),
            "the put came after the evict"
        );
    }

    #[tokio::test]
    async fn before_evictions_run_before_the_body_and_again_after() {
        let cache = cache().await;
        cache.set("b", &1u32, MINUTE).await.expect("set");
        let body = async {
            assert_eq!(stored(&cache, "b").await, None, "evicted before the body");
            cache.set("b", &2u32, MINUTE).await.expect("set");
            Err::<u32, ()>(())
        };
        let output = Writes::new((&&&Tag::of(&body)).shape())
            .evict(key(&cache, "b"), true, no_result)
            .run(body)
            .await;
        assert_eq!(output, Err(()));
        assert_eq!(
            stored(&cache, "b").await,
            None,
            "and again after, even after Err"
        );
    }

    #[tokio::test]
    async fn each_put_obeys_its_unless_and_the_shape() {
        let cache = cache().await;
        let puts = |id: u32, value: Option<u32>| {
            let body = async move { value };
            Writes::new((&&&Tag::of(&body)).shape())
                .put(
                    key(&cache, &format!("id:{id}")),
                    &Options::default(),
                    |v| *v == 0,
                    call_ttl,
                    no_result,
                )
                .put(
                    result_key(&cache, "v:"),
                    &Options::default(),
                    never,
                    call_ttl,
                    |w, v| w.display(v),
                )
                .run(body)
        };
        puts(1, Some(0)).await;
        assert_eq!(
            stored(&cache, "id:1").await,
            None,
            "held back by its unless"
        );
        assert_eq!(stored(&cache, "v:0").await, Some(0), "the other put stored");

        cache.set("id:2", &9u32, MINUTE).await.expect("set");
        assert_eq!(puts(2, None).await, None);
        assert_eq!(stored(&cache, "id:2").await, None, "None evicts the key");
        assert_eq!(
            stored(&cache, "v:0").await,
            Some(0),
            "a key from the result: nothing"
        );

        let body = async { Err::<u32, ()>(()) };
        let failed = Writes::new((&&&Tag::of(&body)).shape())
            .put(
                key(&cache, "v:0"),
                &Options::default(),
                never,
                call_ttl,
                no_result,
            )
            .evict(result_key(&cache, "v:"), false, |w, v| w.display(v))
            .run(body)
            .await;
        assert_eq!(failed, Err(()));
        assert_eq!(stored(&cache, "v:0").await, Some(0), "Err writes nothing");
    }

    #[tokio::test]
    async fn writes_left_by_a_cancelled_caller_become_evictions() {
        let cache = cache().await;
        for key in ["a", "b"] {
            cache.set(key, &1u32, MINUTE).await.expect("set");
        }
        let value = 2u32;
        let mut plan = Plan::default();
        plan.push(Write::Put {
            cache: cache.clone(),
            full: cache.inner().keys().render(1, |k| k.push('a')),
            value: &value,
            ttl: MINUTE,
            tags: Vec::new(),
        });
        plan.push(Write::Evict {
            cache: cache.clone(),
            target: Scope::Prefix("b".into()),
        });
        drop(plan);
        let evicted = async {
            while stored(&cache, "a").await.is_some() || stored(&cache, "b").await.is_some() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), evicted)
            .await
            .expect("both evicted in the background");
    }
}
