//! What a `tracing` subscriber sees of cached calls: a `cachefw.get` span
//! per call with its outcome (hit, miss, bypass) and tier, the load in a
//! child `cachefw.load`, a batch as one `cachefw.get_many`, nothing at
//! `info` on the hit path, and a caller's own span left as it was. Its
//! subscribers are thread-local, on a current-thread runtime (`main.rs`).

use cachefw_tests::fixtures as common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;
use common::{Log, MINUTE, SourceDown};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as the subscriber saw it: its name, parent and fields.
#[derive(Clone, Debug)]
struct Seen {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

/// Every span opened, in order, with what was recorded on it.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl Spans {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().expect("spans lock"))
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.id().into_u64());
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().expect("spans lock").push(Seen {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().expect("spans lock");
        // Ids are reused once a span closes: the newest holder is this one.
        if let Some(seen) = spans.iter_mut().rev().find(|seen| seen.id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

fn named<'a>(spans: &'a [Seen], name: &str) -> Vec<&'a Seen> {
    spans.iter().filter(|seen| seen.name == name).collect()
}

fn field<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.fields.get(name).map(String::as_str)
}

async fn load(cache: &Cache, key: &str) -> Result<u64, SourceDown> {
    cache.get_or_load(key, MINUTE, || async { Ok(7) }).await
}

#[tokio::test(flavor = "current_thread")]
async fn spans_of_cached_calls() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let guard = tracing::subscriber::set_default(subscriber);

    // A miss, its load, then a hit, over Redis.
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "spans").await;
    spans.take();
    assert_eq!(load(&cache, "k").await, Ok(7));
    let seen = spans.take();
    let gets = named(&seen, "cachefw.get");
    assert_eq!(gets.len(), 1, "{seen:#?}");
    assert_eq!(field(gets[0], "outcome"), Some("miss"), "{seen:#?}");
    assert_eq!(field(gets[0], "tier"), Some("redis"), "{seen:#?}");
    assert_eq!(field(gets[0], "namespace"), Some("spans"), "{seen:#?}");
    assert_eq!(field(gets[0], "key"), Some("spans:v1:k"), "keys at debug");
    let loads = named(&seen, "cachefw.load");
    assert_eq!(loads.len(), 1, "{seen:#?}");
    assert_eq!(
        loads[0].parent,
        Some(gets[0].id),
        "the load is the call's child"
    );

    assert_eq!(load(&cache, "k").await, Ok(7));
    let seen = spans.take();
    let gets = named(&seen, "cachefw.get");
    assert_eq!(field(gets[0], "outcome"), Some("hit"), "{seen:#?}");
    assert!(named(&seen, "cachefw.load").is_empty(), "{seen:#?}");
    // A value never appears in a span.
    assert!(
        seen.iter()
            .all(|seen| !seen.fields.values().any(|v| v == "7")),
        "{seen:#?}"
    );

    // A caller's own span with a field of the same name is left alone.
    let handler = tracing::debug_span!("handler", outcome = tracing::field::Empty);
    let got = cache.get::<u64>("k").instrument(handler).await;
    assert_eq!(got.ok().flatten(), Some(7));
    let seen = spans.take();
    let handler = named(&seen, "handler");
    assert_eq!(field(handler[0], "outcome"), None, "{seen:#?}");
    let gets = named(&seen, "cachefw.get");
    assert_eq!(gets.len(), 1, "Cache::get has its span: {seen:#?}");
    assert_eq!(field(gets[0], "outcome"), Some("hit"), "{seen:#?}");
    assert_eq!(gets[0].parent, Some(handler[0].id));

    // A batch: one span, with its hits and misses.
    let found = cache
        .get_or_load_many(&["k", "j", "i"], MINUTE, |missing| async move {
            Ok::<_, SourceDown>(
                missing
                    .into_iter()
                    .map(|key| (key, 1u64))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await;
    assert_eq!(found, Ok(vec![Some(7), Some(1), Some(1)]));
    let seen = spans.take();
    let batches = named(&seen, "cachefw.get_many");
    assert_eq!(batches.len(), 1, "{seen:#?}");
    assert_eq!(field(batches[0], "keys"), Some("3"), "{seen:#?}");
    assert_eq!(field(batches[0], "hits"), Some("1"), "{seen:#?}");
    assert_eq!(field(batches[0], "misses"), Some("2"), "{seen:#?}");
    let loads = named(&seen, "cachefw.load");
    assert_eq!(loads.len(), 1, "{seen:#?}");
    assert_eq!(loads[0].parent, Some(batches[0].id));

    // Redis out: the load bypasses the cache.
    let down = RedisServer::reserved();
    let cache = Cache::builder()
        .redis(down.url())
        .namespace("spans")
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("builds");
    spans.take();
    assert_eq!(load(&cache, "k").await, Ok(7));
    let seen = spans.take();
    let gets = named(&seen, "cachefw.get");
    assert_eq!(field(gets[0], "outcome"), Some("bypass"), "{seen:#?}");
    drop(guard);

    // At `info`, a hit and a miss in memory log nothing.
    let (log, info) = {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    };
    let memory = common::memory_cache("spans").await;
    assert_eq!(load(&memory, "k").await, Ok(7));
    assert_eq!(load(&memory, "k").await, Ok(7));
    assert_eq!(memory.stats().hits, 1);
    drop(info);
    assert_eq!(log.text(), "", "nothing at info on the hit path");
}
