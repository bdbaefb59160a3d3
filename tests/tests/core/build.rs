//! `build()` refuses what cannot work, with a message naming it, and only
//! that: a Redis that is down is not a reason to fail.

use std::time::Duration;

use cachefw::{Cache, Error};

async fn build_err(builder: cachefw::CacheBuilder) -> Error {
    builder.build().await.expect_err("setting refused")
}

#[tokio::test]
async fn malformed_redis_urls_are_refused() {
    for url in [
        "",
        "localhost:6379",
        "http://127.0.0.1:6379",
        "redis://host:port",
    ] {
        let err = build_err(Cache::builder().redis(url)).await;
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err}");
        assert!(err.to_string().contains("invalid Redis URL"), "{err}");
        assert!(
            err.to_string().contains("redis://"),
            "says what is valid: {err}"
        );
    }
}

#[tokio::test]
async fn passwords_never_reach_error_messages() {
    for url in [
        "redis://:hunter2@host:notaport",
        // Unescaped `/`, `?`, `#` and `@` in the password: the URL does not
        // parse, and the password must not leak either.
        "redis://:hun/ter2@host",
        "redis://app:hun?ter2#x@host:6379",
        "redis://:hu@nter2@host:notaport",
    ] {
        let builder = Cache::builder().redis(url);
        let debug = format!("{builder:?}");
        assert!(!debug.contains("ter2"), "{debug}");
        let err = build_err(builder).await;
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("ter2"), "{url}: {text}");
            assert!(text.contains("***"), "{text}");
        }
    }
    let cluster = Cache::builder().redis_cluster(["redis://:hunter2@h:1", "nope"]);
    assert!(!format!("{cluster:?}").contains("hunter2"));
    let err = build_err(cluster).await;
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err}");
}

#[tokio::test]
async fn impossible_settings_are_refused_by_name() {
    let cases = [
        (Cache::builder().namespace(""), "namespace"),
        (Cache::builder().timeout(Duration::ZERO), "timeout"),
        (Cache::builder().default_ttl(Duration::ZERO), "default_ttl"),
        (Cache::builder().memory_capacity(0), "memory_capacity"),
    ];
    for (builder, setting) in cases {
        let err = build_err(builder).await;
        assert!(
            matches!(&err, Error::Config { setting: s, .. } if *s == setting),
            "{err}"
        );
        assert!(err.to_string().contains(setting), "{err}");
    }
}

#[tokio::test]
async fn defaults_are_in_memory_cachefw_v1() {
    let cache = Cache::builder().build().await.expect("builds");
    assert_eq!(cache.backend_name(), "memory");
    assert_eq!(cache.namespace(), "cachefw");
    assert_eq!(cache.version(), 1);
    assert_eq!(cache.full_key("k"), "cachefw:v1:k");
    assert_eq!(cache.default_ttl(), cachefw::DEFAULT_TTL);
}

#[tokio::test]
async fn install_sets_and_replaces_the_process_default() {
    let first = Cache::builder()
        .namespace("first")
        .build()
        .await
        .expect("builds");
    let second = Cache::builder()
        .namespace("second")
        .build()
        .await
        .expect("builds");
    cachefw::install(first);
    assert_eq!(
        cachefw::installed()
            .map(|c| c.namespace().to_owned())
            .as_deref(),
        Some("first")
    );
    cachefw::install(second.clone());
    let installed = cachefw::installed().expect("installed");
    assert_eq!(installed.namespace(), "second");
    // The installed cache is the same cache, not a copy.
    installed
        .set("k", &1u8, Duration::from_secs(5))
        .await
        .expect("set");
    assert_eq!(second.get::<u8>("k").await.expect("get"), Some(1));
}

#[test]
fn cache_is_a_cheap_shareable_handle() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn boxable_error<T: std::error::Error + Send + Sync + 'static>() {}
    shareable::<Cache>();
    boxable_error::<Error>();
}

/// A URL without a scheme (the most common slip: `host:port`) is refused,
/// and the message says what a valid one looks like. (A unit test of
/// `error.rs` before: it built a `Cache`, so `error` imported `cache`.)
#[tokio::test]
async fn a_url_without_a_scheme_keeps_the_hint() {
    for url in ["127.0.0.1:6379", "localhost:6379", "cache.internal", ""] {
        let error = Cache::builder().redis(url).build().await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("expected redis://[user:password@]host[:port][/db]"),
            "{url}: {message}"
        );
    }
    let error = Cache::builder()
        .redis_cluster(["10.0.0.1:7000"])
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("expected redis://"), "{error}");
}
