//! Read your writes across processes through a batch load (review of
//! issue 24): a single-key call that joins a key a batch of this process
//! is loading must not get the row from before a write that another
//! process acknowledged before the call, as it must not when it joins a
//! single-key load (`read_your_writes.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachefw::Cache;
use cachefw_tests::RedisServer;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_joining_a_batch_load_gets_the_new_row() {
    const ROUNDS: u64 = 3;
    let redis = RedisServer::start();
    let build = || async {
        Cache::builder()
            .redis(redis.url())
            .namespace("late-batch")
            .build()
            .await
            .expect("cache builds")
    };
    let a = build().await;
    let b = build().await;
    let row = Arc::new(AtomicU64::new(1));
    let mut late_old = 0;
    for round in 0..ROUNDS {
        let key = format!("row:{round}");
        let before = row.load(Ordering::SeqCst);
        let (read_tx, read_rx) = tokio::sync::oneshot::channel();
        // Process B loads the key in a batch: its loader reads the row,
        // then takes 300 ms.
        let early = {
            let (b, row, key) = (b.clone(), row.clone(), key.clone());
            tokio::spawn(async move {
                b.get_or_load_many(&[key.as_str()], MINUTE, move |keys| async move {
                    let seen = row.load(Ordering::SeqCst);
                    let _ = read_tx.send(());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(
                        keys.into_iter()
                            .map(|key| (key, seen))
                            .collect::<HashMap<_, _>>(),
                    )
                })
                .await
                .expect("the loader does not fail")
            })
        };
        tokio::time::timeout(Duration::from_secs(5), read_rx)
            .await
            .expect("the batch load started")
            .expect("the batch loader read the row");
        // Process A writes the row, then evicts the key: acknowledged.
        row.store(before + 1, Ordering::SeqCst);
        a.delete(&key).await.expect("Redis is up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A new request on B joins the batch's load of the key.
        let late = {
            let (b, row, key) = (b.clone(), row.clone(), key.clone());
            tokio::spawn(async move {
                b.get_or_load(&key, MINUTE, move || async move {
                    Ok::<_, std::io::Error>(row.load(Ordering::SeqCst))
                })
                .await
                .expect("the loader does not fail")
            })
        };
        let got = tokio::time::timeout(Duration::from_secs(10), late)
            .await
            .expect("the late reader finished")
            .expect("the late reader");
        if got != before + 1 {
            late_old += 1;
            eprintln!("round {round}: the late reader got the row from before the write");
        }
        tokio::time::timeout(Duration::from_secs(10), early)
            .await
            .expect("the batch finished")
            .expect("the batch");
        assert_eq!(
            b.get::<u64>(&key).await.expect("Redis is up"),
            Some(before + 1),
            "round {round}: the entry afterwards is the new row"
        );
    }
    assert_eq!(
        late_old, 0,
        "late readers joining a batch load got the row from before the write"
    );
}
