//! `build()` checks every setting before it opens any connection: a bad
//! setting fails at once, with the typed error naming it, even when the
//! Redis named does not answer (before, the options checked after the
//! start-up ping waited for it to time out first).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cachefw::{Cache, CacheBuilder, Error};

/// How long the silent Redis keeps a ping waiting.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis URL whose server accepts connections and never answers: a ping
/// there takes the whole [`TIMEOUT`]. Lives as long as the listener.
fn silent_redis() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}", listener.local_addr().expect("address"));
    (listener, url)
}

#[tokio::test]
async fn a_bad_setting_fails_before_redis_is_asked() {
    let (_listener, url) = silent_redis();
    let redis = || Cache::builder().redis(&url).timeout(TIMEOUT);
    let cases: [(CacheBuilder, &str); 6] = [
        (
            redis().eviction_journal_capacity(0),
            "eviction_journal_capacity",
        ),
        (redis().refresh_ahead(-1.0), "refresh_ahead"),
        (redis().load_timeout(Duration::ZERO), "load_timeout"),
        (redis().near_ttl(Duration::from_secs(1)), "near_ttl"),
        (
            redis().near_cache(1 << 20).near_ttl(Duration::ZERO),
            "near_ttl",
        ),
        (redis().near_cache(0), "near_cache"),
    ];
    for (builder, setting) in cases {
        let started = Instant::now();
        let built = tokio::time::timeout(2 * TIMEOUT, builder.build())
            .await
            .expect("build() returns");
        let elapsed = started.elapsed();
        match built {
            Err(Error::Config { setting: named, .. }) => assert_eq!(named, setting),
            Err(other) => panic!("{setting}: not a setting error: {other}"),
            Ok(_) => panic!("{setting}: accepted"),
        }
        // A ping would have waited the whole timeout; half of it is slack
        // for a loaded machine.
        assert!(
            elapsed < TIMEOUT / 2,
            "{setting}: refused after {elapsed:?}, as if Redis was pinged first"
        );
    }
}

#[tokio::test]
async fn a_bad_setting_with_a_refused_url_is_the_setting_error() {
    // Nothing listens on the port: the setting is still what is refused,
    // and not "Redis is unreachable" (which never fails `build()`).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let err = Cache::builder()
        .redis(format!("redis://127.0.0.1:{port}"))
        .eviction_journal_capacity(0)
        .build()
        .await
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            Error::Config {
                setting: "eviction_journal_capacity",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("eviction_journal_capacity"),
        "{err}"
    );
}
