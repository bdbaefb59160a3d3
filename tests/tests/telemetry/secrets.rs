//! Secrets (URL passwords, the `credentials` password, TLS private keys)
//! never appear in `Debug`, `Display`, errors or logs: every path that
//! formats a setting or a failure is driven here, and the captured log
//! output (at every level) is searched for them.
//!
//! Its subscriber is thread-local, and the calls it logs run on this
//! thread (a current-thread runtime), so other tests of the binary neither
//! add to its log nor take from it (`main.rs`).

use cachefw_tests::fixtures as common;

use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::{RedisCluster, RedisServer, TestPki};
use common::{MINUTE, SourceDown, user};

const PASSWORD: &str = "Pa55-Very-Secret-42";
const WRONG_URL_PASSWORD: &str = "WrongUrl-Secret-77";
const WRONG_PASSWORD: &str = "WrongCred-Secret-99";

/// Fails when `text` holds a password or a line of a private key.
fn assert_clean(what: &str, text: &str, pki: &TestPki) {
    for secret in [PASSWORD, WRONG_URL_PASSWORD, WRONG_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a password:\n{text}");
    }
    let keys = [
        pki.client_key_pem.as_str(),
        pki.server_key_pem.as_str(),
        pki.other_client.1.as_str(),
    ];
    for line in keys.iter().flat_map(|pem| pem.lines()) {
        if line.starts_with("-----") {
            continue;
        }
        assert!(!text.contains(line), "{what} shows a private key:\n{text}");
    }
    assert!(
        !text.contains("PRIVATE KEY"),
        "{what} shows a private key:\n{text}"
    );
}

/// A load through `cache`, whatever the cache does.
async fn call(cache: &Cache) {
    let got = cache
        .get_or_load("user:1", MINUTE, || async { Ok::<_, SourceDown>(user(1)) })
        .await;
    assert_eq!(got, Ok(user(1)));
    let _ = cache.get::<u32>("k").await;
    let _ = cache.set("k", &1u32, MINUTE).await;
    let _ = cache.delete("k").await;
    let _ = cache.evict_prefix("p:").await;
}

#[test]
fn secrets_never_reach_debug_errors_or_logs() {
    // Every level, so that debug lines (a cluster connection's failure)
    // are searched too.
    let log = common::Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let pki = TestPki::generate();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut errors = Vec::new();

        // The builder, with every secret set.
        let builder = Cache::builder()
            .redis(format!("rediss://app:{PASSWORD}@127.0.0.1:1"))
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .credentials("app", PASSWORD);
        assert_clean("the builder's Debug", &format!("{builder:?}"), &pki);
        let cluster_builder = Cache::builder()
            .redis_cluster([format!("redis://app:{PASSWORD}@127.0.0.1:1")])
            .credentials("app", PASSWORD);
        assert_clean("the builder's Debug", &format!("{cluster_builder:?}"), &pki);
        // A password in the URL and in credentials: the error names neither.
        errors.push(builder.build().await.expect_err("two passwords"));

        // Wrong passwords, in the URL and in credentials.
        let redis = RedisServer::start();
        redis.acl_setuser("app", &["on", &format!(">{PASSWORD}"), "~*", "+@all"]);
        let port = redis.port();
        errors.push(
            Cache::builder()
                .redis(format!("redis://app:{WRONG_URL_PASSWORD}@127.0.0.1:{port}"))
                .build()
                .await
                .expect_err("wrong URL password"),
        );
        errors.push(
            Cache::builder()
                .redis(redis.url())
                .credentials("app", WRONG_PASSWORD)
                .build()
                .await
                .expect_err("wrong password"),
        );
        // URLs that do not parse, with their passwords.
        for url in [
            format!("redis://app:{PASSWORD}@127.0.0.1:notaport"),
            format!("http://app:{PASSWORD}@127.0.0.1:{port}"),
            format!("redis://app:{PASSWORD}/x@127.0.0.1:{port}"),
            format!("rediss://app:{PASSWORD}@127.0.0.1:{port}/#insecure"),
        ] {
            errors.push(
                Cache::builder()
                    .redis(url)
                    .build()
                    .await
                    .expect_err("bad URL"),
            );
        }

        // The right password: the cache, its Debug, then its failures when
        // Redis goes away (logged as they happen).
        let mut redis = redis;
        let by_url = Cache::builder()
            .redis(format!("redis://app:{PASSWORD}@127.0.0.1:{port}"))
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        let by_credentials = Cache::builder()
            .redis(redis.url())
            .credentials("app", PASSWORD)
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        for cache in [&by_url, &by_credentials] {
            call(cache).await;
            assert_clean("a cache's Debug", &format!("{cache:?}"), &pki);
        }
        redis.stop();
        for cache in [&by_url, &by_credentials] {
            call(cache).await;
            errors.extend(cache.get::<u32>("k").await.err());
        }
        // Down at start: the warning names the URL, masked.
        let down = Cache::builder()
            .redis(format!("redis://app:{PASSWORD}@127.0.0.1:{port}"))
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("down at start is not an error");
        call(&down).await;
        assert!(log.text().contains("app:***@"), "{}", log.text());

        // TLS with a client key: refused certificates, and a server that
        // goes away after start.
        let mut tls = RedisServer::start_tls(&pki, true);
        errors.push(
            Cache::builder()
                .redis(tls.url())
                .tls_root_cert(&pki.other_ca_pem)
                .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
                .build()
                .await
                .expect_err("wrong CA"),
        );
        let (cert, key) = &pki.other_client;
        errors.push(
            Cache::builder()
                .redis(tls.url())
                .tls_root_cert(&pki.ca_pem)
                .tls_client_cert(cert, key)
                .build()
                .await
                .expect_err("a client certificate the server does not trust"),
        );
        errors.push(
            Cache::builder()
                .redis(tls.url())
                .tls_root_cert(&pki.ca_pem)
                .tls_client_cert(&pki.client_cert_pem, &pki.server_key_pem)
                .build()
                .await
                .expect_err("a key of another certificate"),
        );
        let over_tls = Cache::builder()
            .redis(tls.url())
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .credentials("", PASSWORD)
            .timeout(Duration::from_millis(100))
            .build()
            .await;
        // The default user has no password: AUTH with one is refused.
        errors.push(over_tls.expect_err("the default user has no password"));
        let over_tls = Cache::builder()
            .redis(tls.url())
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .timeout(Duration::from_millis(100))
            .build()
            .await
            .expect("builds");
        call(&over_tls).await;
        tls.stop();
        call(&over_tls).await;
        assert_clean("a TLS cache's Debug", &format!("{over_tls:?}"), &pki);

        // A cluster whose seeds carry passwords, down at start, then up
        // with the wrong one.
        let cluster = RedisCluster::start(3);
        let seeds: Vec<String> = cluster
            .nodes()
            .iter()
            .map(|node| format!("redis://app:{WRONG_URL_PASSWORD}@127.0.0.1:{}", node.port()))
            .collect();
        for node in cluster.nodes() {
            node.acl_setuser("app", &["on", &format!(">{PASSWORD}"), "~*", "+@all"]);
        }
        errors.push(
            Cache::builder()
                .redis_cluster(seeds)
                .build()
                .await
                .expect_err("wrong password on a cluster"),
        );
        let clustered = Cache::builder()
            .redis_cluster(cluster.urls())
            .credentials("app", PASSWORD)
            .build()
            .await
            .expect("builds");
        call(&clustered).await;
        drop(cluster);
        call(&clustered).await;

        for error in &errors {
            println!("{error}");
            assert_clean("an error", &format!("{error} / {error:?}"), &pki);
        }
        assert!(errors.len() >= 12, "{}", errors.len());
    });
    drop(runtime);
    let text = log.text();
    assert!(
        text.contains("cache operation failed"),
        "failures were logged: {text}"
    );
    assert_clean("the log", &text, &pki);
}
