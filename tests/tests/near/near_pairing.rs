//! The near tier's tracking link and the data connection talk to one
//! server: after a DNS or virtual IP switch where the old server still
//! answers as a primary, a data connection that reached the new server
//! stops the tier until the link follows it, so no copy read from the old
//! server is served, and writes on the new server reach the tier.

use cachefw_tests::fixtures as common;

use std::time::{Duration, Instant};

use cachefw::Cache;
use cachefw_tests::{DelayProxy, RedisServer};
use common::{MINUTE, SourceDown};

async fn cache_at(url: String, near: bool) -> Cache {
    let builder = Cache::builder().redis(url).namespace("vip");
    let builder = if near {
        builder.near_cache(8 * 1024 * 1024)
    } else {
        builder
    };
    builder.build().await.expect("builds")
}

async fn read(cache: &Cache, key: &str, source: u32) -> u32 {
    cache
        .get_or_load(key, MINUTE, || async move { Ok::<_, SourceDown>(source) })
        .await
        .expect("the loader cannot fail")
}

/// Kills every connection on `redis` but the tracking links: the data
/// connection breaks and connects again, the link stays where it is.
fn kill_data_connections(redis: &RedisServer) {
    let clients: String = redis.cmd("CLIENT", &[b"LIST"]);
    for line in clients.lines() {
        if line.contains("name=cachefw-near") {
            continue;
        }
        let Some(id) = line.split(' ').find_map(|field| field.strip_prefix("id=")) else {
            continue;
        };
        // Our own connection goes too; the kit makes another.
        let mut kill = redis::cmd("CLIENT");
        kill.arg("KILL").arg("ID").arg(id);
        let _ = redis.try_cmd::<()>(&kill);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_follows_the_data_connection_to_another_primary() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let vip = DelayProxy::start(old.port());
    let cache = cache_at(vip.url(), true).await;
    assert_eq!(read(&cache, "k", 1).await, 1);
    assert_eq!(read(&cache, "k", 9).await, 1, "held");
    // The new primary holds another value of the key.
    let writer = cache_at(new.url(), false).await;
    writer.set("k", &2u32, MINUTE).await.expect("set");

    vip.set_upstream(new.port());
    kill_data_connections(&old);
    // The next command through the data connection reaches the new server;
    // from then on the old server's copy must not be served.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = read(&cache, "other", 0).await;
        if read(&cache, "k", 9).await == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the near tier kept serving the old server's copy: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the link listens to the new server: its writes reach the tier.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.stats().near_hits == 0 || read(&cache, "k", 9).await != 2 {
        assert!(Instant::now() < deadline, "the tier never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.set("k", &3u32, MINUTE).await.expect("set");
    let deadline = Instant::now() + Duration::from_secs(2);
    while read(&cache, "k", 9).await != 3 {
        assert!(
            Instant::now() < deadline,
            "a write on the new server did not reach the near tier"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
