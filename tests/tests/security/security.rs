//! TLS, ACL users, and limits on what a cache reads and writes, over real
//! `redis-server` processes: `rediss://` with a private CA, mutual TLS, the
//! failures `build()` names (an unknown CA, a wrong host name, a missing
//! client certificate, a bad PEM, a wrong password), a Redis Cluster over
//! TLS, the core behaviours as an ACL user with exactly the README's
//! permissions, oversize values and overlong keys.

use cachefw_tests::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cachefw::{Cache, CacheBuilder, Error};
use cachefw_tests::{RedisCluster, RedisServer, TestPki};
use common::{MINUTE, SourceDown, User, user};

fn tls_builder(redis: &RedisServer, pki: &TestPki) -> CacheBuilder {
    Cache::builder()
        .redis(redis.url())
        .namespace("sec")
        .tls_root_cert(&pki.ca_pem)
}

/// A miss that loads, then a hit, over `cache`.
async fn miss_then_hit(cache: &Cache, id: u64) {
    let loads = AtomicU32::new(0);
    for _ in 0..2 {
        let got = cache
            .get_or_load(&format!("user:{id}"), MINUTE, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, SourceDown>(user(id))
            })
            .await;
        assert_eq!(got, Ok(user(id)));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "{:?}", cache.stats());
}

fn tls_error(result: Result<Cache, Error>) -> String {
    match result {
        Err(error @ Error::Tls { .. }) => error.to_string(),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, false);
    assert!(redis.url().starts_with("rediss://"));
    let cache = tls_builder(&redis, &pki).build().await.expect("builds");
    miss_then_hit(&cache, 1).await;
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    assert!(redis.raw_get("sec:v1:user:1").is_some());
    // A bundle with an unrelated CA first still finds ours.
    let bundle = format!("{}{}", pki.other_ca_pem, pki.ca_pem);
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("sec")
        .tls_root_cert(bundle)
        .build()
        .await
        .expect("builds with a CA bundle");
    assert_eq!(
        cache.get::<User>("user:1").await.expect("get"),
        Some(user(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_and_fails_clearly_without_the_client_certificate() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, true);
    let cache = tls_builder(&redis, &pki)
        .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
        .build()
        .await
        .expect("builds with the client certificate");
    miss_then_hit(&cache, 2).await;
    assert_eq!(cache.stats().errors, 0);

    let without = tls_error(tls_builder(&redis, &pki).build().await);
    println!("no client certificate: {without}");
    assert!(
        without.contains("requires a client certificate"),
        "{without}"
    );
    assert!(without.contains("tls_client_cert"), "{without}");

    let (cert, key) = &pki.other_client;
    let foreign = tls_error(
        tls_builder(&redis, &pki)
            .tls_client_cert(cert, key)
            .build()
            .await,
    );
    println!("a client certificate of another CA: {foreign}");
    assert!(
        foreign.contains("client certificate"),
        "names the client certificate: {foreign}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_fails_build_naming_it() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, false);

    let wrong_ca = Cache::builder()
        .redis(redis.url())
        .tls_root_cert(&pki.other_ca_pem)
        .build()
        .await;
    let wrong_ca = tls_error(wrong_ca);
    println!("wrong CA: {wrong_ca}");
    assert!(wrong_ca.contains("UnknownIssuer"), "{wrong_ca}");
    assert!(wrong_ca.contains("tls_root_cert"), "{wrong_ca}");

    // The system roots (the default) do not know the test CA either.
    let system = tls_error(Cache::builder().redis(redis.url()).build().await);
    assert!(system.contains("UnknownIssuer"), "{system}");

    // The certificate is for 127.0.0.1 only.
    let by_name = Cache::builder()
        .redis(format!("rediss://localhost:{}", redis.port()))
        .tls_root_cert(&pki.ca_pem)
        .build()
        .await;
    let by_name = tls_error(by_name);
    println!("wrong host name: {by_name}");
    assert!(by_name.contains("another host name"), "{by_name}");
    assert!(by_name.contains("localhost"), "{by_name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_never_falls_back_to_plain_text() {
    // A plain-text Redis waits for the end of a line that the TLS hello
    // never sends: the handshake times out, like a Redis that hangs. The
    // cache starts degraded, every call is served by the loader, and not a
    // byte of cache traffic goes in plain text.
    let plain = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", plain.port());
    let cache = Cache::builder()
        .redis(url)
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("a handshake that does not end is a Redis that hangs");
    for _ in 0..5 {
        assert_eq!(common::load_user(&cache, 1).await, user(1));
    }
    let stats = cache.stats();
    assert_eq!(stats.loads, 5, "{stats:?}");
    assert!(stats.errors >= 5, "{stats:?}");
    assert!(plain.keys().is_empty(), "{:?}", plain.keys());

    // Certificates with a plain URL are a mistake, not a downgrade.
    let pki = TestPki::generate();
    let error = Cache::builder()
        .redis(plain.url())
        .tls_root_cert(&pki.ca_pem)
        .build()
        .await
        .expect_err("certificates need rediss://");
    assert!(
        matches!(
            error,
            Error::Config {
                setting: "tls_root_cert",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("rediss://"), "{error}");

    let error = Cache::builder()
        .redis(format!("rediss://127.0.0.1:{}/#insecure", plain.port()))
        .build()
        .await
        .expect_err("#insecure is refused");
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pem_fails_build_naming_the_setting() {
    let pki = TestPki::generate();
    // No server at all: PEM is checked before any connection.
    let url = "rediss://127.0.0.1:1";
    let check = |result: Result<Cache, Error>, setting: &str, needle: &str| {
        let error = result.expect_err("a bad PEM fails build()");
        let text = error.to_string();
        assert!(
            matches!(&error, Error::Config { setting: s, .. } if *s == setting),
            "{text}"
        );
        assert!(text.contains(needle), "{text}");
        for line in pki.client_key_pem.lines().chain(pki.server_key_pem.lines()) {
            assert!(!text.contains(line), "key material in {text}");
        }
    };
    check(
        Cache::builder()
            .redis(url)
            .tls_root_cert("not a certificate")
            .build()
            .await,
        "tls_root_cert",
        "no certificate",
    );
    check(
        Cache::builder()
            .redis(url)
            .tls_root_cert("-----BEGIN CERTIFICATE-----\nAAAA!!!\n-----END CERTIFICATE-----\n")
            .build()
            .await,
        "tls_root_cert",
        "PEM",
    );
    check(
        Cache::builder()
            .redis(url)
            .tls_client_cert(&pki.client_cert_pem, "no key here")
            .build()
            .await,
        "tls_client_cert",
        "no private key",
    );
    check(
        Cache::builder()
            .redis(url)
            .tls_client_cert("garbage", &pki.client_key_pem)
            .build()
            .await,
        "tls_client_cert",
        "no certificate",
    );
    // The server's key does not belong to the client's certificate.
    check(
        Cache::builder()
            .redis(url)
            .tls_client_cert(&pki.client_cert_pem, &pki.server_key_pem)
            .build()
            .await,
        "tls_client_cert",
        "cannot be used together",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_down_at_start_degrades_and_recovers() {
    let pki = TestPki::generate();
    let mut redis = RedisServer::start_tls(&pki, true);
    redis.stop();
    let cache = tls_builder(&redis, &pki)
        .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("a TLS Redis that is down does not fail build()");
    common::load_user(&cache, 3).await;
    assert!(cache.stats().errors > 0);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.raw_get("sec:v1:user:3").is_none() {
        assert!(Instant::now() < deadline, "caching did not resume over TLS");
        common::load_user(&cache, 3).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Down at start with a CA that does not verify the server: `build()`
/// cannot know, so the failure shows later, as errors, the calls served by
/// the loader, nothing stored, and no plain-text fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_failure_after_start_counts_errors_and_loads() {
    let pki = TestPki::generate();
    let mut redis = RedisServer::start_tls(&pki, false);
    redis.stop();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("sec")
        .tls_root_cert(&pki.other_ca_pem)
        .build()
        .await
        .expect("down at start: not an error");
    redis.restart();
    let errors = cache.stats().errors;
    for _ in 0..20 {
        assert_eq!(common::load_user(&cache, 4).await, user(4));
    }
    let stats = cache.stats();
    assert!(stats.errors > errors, "{stats:?}");
    assert_eq!(stats.loads, 20, "{stats:?}");
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_build() {
    let redis = RedisServer::start();
    redis.acl_setuser("app", &["on", ">right-password", "~*", "+@all"]);

    let error = Cache::builder()
        .redis(redis.url())
        .credentials("app", "not-the-password")
        .build()
        .await
        .expect_err("a wrong password fails build()");
    println!("wrong password: {error}");
    assert!(matches!(error, Error::Auth { .. }), "{error}");
    assert!(error.to_string().contains("WRONGPASS"), "{error}");
    assert!(
        error.to_string().contains("\"app\""),
        "names the user: {error}"
    );
    assert!(!error.to_string().contains("not-the-password"), "{error}");

    let error = Cache::builder()
        .redis(format!(
            "redis://app:not-the-password@127.0.0.1:{}",
            redis.port()
        ))
        .build()
        .await
        .expect_err("a wrong password in the URL fails build()");
    assert!(matches!(error, Error::Auth { .. }), "{error}");
    assert!(!format!("{error} {error:?}").contains("not-the-password"));

    let cache = Cache::builder()
        .redis(redis.url())
        .credentials("app", "right-password")
        .build()
        .await
        .expect("the right password builds");
    miss_then_hit(&cache, 5).await;

    // A password in the URL and in credentials(): ambiguous.
    let error = Cache::builder()
        .redis(format!(
            "redis://app:right-password@127.0.0.1:{}",
            redis.port()
        ))
        .credentials("app", "right-password")
        .build()
        .await
        .expect_err("one password, one place");
    assert!(
        matches!(
            error,
            Error::Config {
                setting: "credentials",
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains("right-password"), "{error}");

    // A server that wants a password and is given none.
    let locked = RedisServer::start_with_password("s3cret-default");
    let error = Cache::builder()
        .redis(locked.url())
        .build()
        .await
        .expect_err("NOAUTH fails build()");
    println!("no password: {error}");
    assert!(matches!(error, Error::Auth { .. }), "{error}");
    assert!(error.to_string().contains("NOAUTH"), "{error}");
    let cache = Cache::builder()
        .redis(locked.url())
        .credentials("", "s3cret-default")
        .build()
        .await
        .expect("the default user's password builds");
    miss_then_hit(&cache, 6).await;
}

/// The `ACL SETUSER` line of the README, for namespace `ns` and `password`.
fn readme_acl_rules(ns: &str, password: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|line| line.starts_with("ACL SETUSER cachefw "))
        .expect("the README has an `ACL SETUSER cachefw …` line");
    line.split_whitespace()
        .skip(3)
        .map(|rule| {
            rule.replace(">CHANGE-ME", &format!(">{password}"))
                .replace("~shop:", &format!("~{ns}:"))
        })
        .collect()
}

async fn acl_cache(url: String, ns: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(ns)
        .credentials("cachefw", "acl-pass")
        .lease_time(Duration::from_secs(5))
        .build()
        .await
        .expect("builds as the ACL user")
}

/// Hit, miss, evict, prefix evict, lease across two caches, `clear`, `set`
/// and `ttl`, as a user with only the README's permissions; `errors` stays
/// 0, so no command met `NOPERM`.
async fn core_behaviours(caches: [Cache; 2], keys: impl Fn() -> Vec<String>) {
    let [a, b] = caches;
    miss_then_hit(&a, 1).await;
    assert_eq!(b.get::<User>("user:1").await.expect("get"), Some(user(1)));
    assert_eq!(a.get::<User>("user:404").await.expect("get"), None);

    assert!(a.delete("user:1").await.expect("delete"));
    assert_eq!(b.get::<User>("user:1").await.expect("get"), None);

    for id in 0..5 {
        a.set(&format!("page:{id}"), &id, MINUTE)
            .await
            .expect("set");
    }
    a.set("other", &1, MINUTE).await.expect("set");
    assert!(a.ttl("other").await.expect("ttl").is_some());
    assert_eq!(a.evict_prefix("page:").await.expect("evict_prefix"), 5);
    assert_eq!(b.get::<i32>("other").await.expect("get"), Some(1));

    // The lease: two caches (two processes), many callers, one load.
    let loads = Arc::new(AtomicU32::new(0));
    let mut callers = Vec::new();
    for cache in [&a, &b] {
        for _ in 0..10 {
            let (cache, loads) = (cache.clone(), loads.clone());
            callers.push(tokio::spawn(async move {
                cache
                    .get_or_load("cold", MINUTE, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, SourceDown>(42u32)
                    })
                    .await
            }));
        }
    }
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(42));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    assert!(a.clear().await.expect("clear") >= 2);
    assert!(keys().is_empty(), "{:?}", keys());
    for cache in [&a, &b] {
        assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    }
}

/// `near` answers from its near tier, and a write through `writer` reaches
/// it.
async fn near_tier_works(writer: &Cache, near: &Cache) {
    writer.set("n", &1u32, MINUTE).await.expect("set");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while near.stats().near_hits == 0 {
        assert_eq!(near.get::<u32>("n").await.expect("get"), Some(1));
        assert!(
            std::time::Instant::now() < deadline,
            "the near tier never served: {:?}",
            near.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.set("n", &2u32, MINUTE).await.expect("set");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(near.get::<u32>("n").await.expect("get"), Some(2));
    assert!(writer.delete("n").await.expect("delete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_listed_permissions_runs_the_core() {
    let pki = TestPki::generate();
    let redis = RedisServer::start_tls(&pki, false);
    let rules = readme_acl_rules("acl", "acl-pass");
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    redis.acl_setuser("cachefw", &rules);
    // Keys outside the namespace stay out of reach, and survive `clear`.
    redis.raw_set("elsewhere", b"x");

    let caches = [
        tls_builder(&redis, &pki)
            .namespace("acl")
            .credentials("cachefw", "acl-pass")
            .lease_time(Duration::from_secs(5))
            .build()
            .await
            .expect("builds as the ACL user over TLS"),
        // The second with a near tier: its tracking link runs as the ACL
        // user over TLS too.
        tls_builder(&redis, &pki)
            .namespace("acl")
            .credentials("cachefw", "acl-pass")
            .lease_time(Duration::from_secs(5))
            .near_cache(1 << 20)
            .build()
            .await
            .expect("builds"),
    ];
    near_tier_works(&caches[0], &caches[1]).await;
    core_behaviours(caches, || {
        redis
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("acl:"))
            .collect()
    })
    .await;
    assert_eq!(redis.raw_get("elsewhere").as_deref(), Some(&b"x"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_outside_its_key_pattern_is_refused() {
    let redis = RedisServer::start();
    let rules = readme_acl_rules("mine", "acl-pass");
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    redis.acl_setuser("cachefw", &rules);
    let cache = acl_cache(redis.url(), "theirs").await;
    let error = cache.get::<u32>("k").await.expect_err("NOPERM");
    assert!(
        matches!(&error, Error::Redis { source, .. } if source.code() == Some("NOPERM")),
        "{error}"
    );
    // get_or_load still answers, from the loader.
    assert_eq!(common::load_user(&cache, 7).await, user(7));
    assert!(redis.keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_as_an_acl_user() {
    let pki = TestPki::generate();
    let cluster = RedisCluster::start_tls(3, &pki);
    assert!(
        cluster
            .urls()
            .iter()
            .all(|url| url.starts_with("rediss://"))
    );
    let rules = readme_acl_rules("cl", "acl-pass");
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    for node in cluster.nodes() {
        node.acl_setuser("cachefw", &rules);
    }
    let build = || {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace("cl")
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .credentials("cachefw", "acl-pass")
            .lease_time(Duration::from_secs(5))
            .timeout(Duration::from_secs(1))
            .build()
    };
    let caches = [
        build().await.expect("builds"),
        build().await.expect("builds"),
    ];
    core_behaviours(caches, || {
        cluster
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("cl:"))
            .collect()
    })
    .await;

    // A wrong CA fails build() for the cluster too, naming the problem.
    let error = Cache::builder()
        .redis_cluster(cluster.urls())
        .tls_root_cert(&pki.other_ca_pem)
        .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
        .build()
        .await;
    let error = tls_error(error);
    assert!(error.contains("UnknownIssuer"), "{error}");
    let error = Cache::builder()
        .redis_cluster(cluster.urls())
        .tls_root_cert(&pki.ca_pem)
        .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
        .credentials("cachefw", "wrong")
        .build()
        .await
        .expect_err("a wrong password fails build()");
    assert!(matches!(error, Error::Auth { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_values_are_refused_and_counted() {
    let redis = RedisServer::start();
    let cache = Cache::builder()
        .redis(redis.url())
        .namespace("big")
        .max_value_size(64 * 1024)
        .build()
        .await
        .expect("builds");
    let big = "x".repeat(100 * 1024);

    cache.set("k", &"small", MINUTE).await.expect("set");
    let error = cache.set("k", &big, MINUTE).await.expect_err("too large");
    assert!(
        matches!(error, Error::ValueTooLarge { size: Some(size), max: 65_536, .. } if size > 100 * 1024),
        "{error}"
    );
    assert_eq!(cache.stats().errors, 1);
    // The old value is evicted: a reader never sees what the write replaced.
    assert_eq!(redis.raw_get("big:v1:k"), None);

    // A load too large is returned, not stored, counted once.
    let loaded = cache
        .get_or_load("loaded", MINUTE, || async {
            Ok::<_, SourceDown>(big.clone())
        })
        .await;
    assert_eq!(loaded.as_deref(), Ok(big.as_str()));
    assert_eq!(cache.stats().errors, 2, "{:?}", cache.stats());
    assert_eq!(
        redis.raw_get("big:v1:loaded"),
        None,
        "no value, no lease left"
    );

    // One written by someone else is a miss, counted, replaced by the load.
    redis.raw_set("big:v1:planted", &vec![0xAB; 200 * 1024]);
    assert_eq!(cache.get::<String>("planted").await.expect("a miss"), None);
    assert_eq!(cache.stats().errors, 3, "{:?}", cache.stats());
    let got = cache
        .get_or_load("planted", MINUTE, || async {
            Ok::<_, SourceDown>("fresh".to_owned())
        })
        .await;
    assert_eq!(got.as_deref(), Ok("fresh"));
    assert_eq!(
        cache
            .get::<String>("planted")
            .await
            .expect("get")
            .as_deref(),
        Some("fresh")
    );

    // In memory too.
    let memory = Cache::builder()
        .max_value_size(64 * 1024)
        .build()
        .await
        .expect("builds");
    assert!(matches!(
        memory.set("k", &big, MINUTE).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(memory.stats().errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_key_is_never_refused_and_the_redis_key_stays_short() {
    let redis = RedisServer::start();
    let cache = common::redis_cache(&redis, "long").await;
    // Hostile lengths: 1 MiB of key text.
    let key = "k".repeat(1024 * 1024);
    cache.set(&key, &1u32, MINUTE).await.expect("stored");
    assert_eq!(cache.get::<u32>(&key).await.expect("reads"), Some(1));
    assert!(cache.ttl(&key).await.expect("reads").is_some());
    let keys = redis.keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].len(),
        "long:v1:".len() + 256 + 1 + 64,
        "{}",
        keys[0]
    );
    assert!(cache.delete(&key).await.expect("deletes"));
    assert!(redis.keys().is_empty());
    // A prefix eviction of a prefix longer than a key's kept head finds
    // nothing, and is not an error.
    assert_eq!(cache.evict_prefix(&key).await.expect("evicts"), 0);
    let got = cache
        .get_or_load(&key, MINUTE, || async { Ok::<_, SourceDown>(9u32) })
        .await;
    assert_eq!(got, Ok(9));
    assert_eq!(redis.keys().len(), 1, "get_or_load caches it too");
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
    let error = Cache::builder()
        .max_key_len(0)
        .build()
        .await
        .expect_err("no key fits");
    assert!(
        matches!(
            error,
            Error::Config {
                setting: "max_key_len",
                ..
            }
        ),
        "{error}"
    );
}
