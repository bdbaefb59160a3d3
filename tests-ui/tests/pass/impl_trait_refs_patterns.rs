use cachefw::{Cache, cache_put, cacheable};

#[derive(Clone, Copy)]
struct Order {
    id: u64,
    lines: (u32, u32),
}

// `impl Trait`, references and patterns, in parameters not in the key.
#[cacheable(key = "order:<order.id>:<tenant>:<order.lines.0>", ttl = "1h", cache = cache)]
async fn price(
    cache: &Cache,
    order: &Order,
    tenant: &str,
    log: impl Fn(&str),
    (a, b): (u64, u64),
    scale: &mut u64,
    _: u8,
) -> u64 {
    log(tenant);
    *scale += 1;
    order.id * (a + b) * *scale
}

#[cache_put(key = "pair:<first>", cache = cache)]
async fn pair(cache: &Cache, first: &str, [x, y]: [u32; 2]) -> (u32, u32) {
    let _ = first;
    (x, y)
}

#[tokio::test(flavor = "current_thread")]
async fn runs() {
    let cache = Cache::builder().build().await.expect("cache");
    let order = Order {
        id: 2,
        lines: (3, 4),
    };
    let mut scale = 1;
    assert_eq!(
        price(&cache, &order, "t", |_| {}, (1, 2), &mut scale, 0).await,
        12
    );
    assert_eq!(
        cache.get::<u64>("order:2:t:3").await.expect("get"),
        Some(12)
    );
    assert_eq!(pair(&cache, "p", [1, 2]).await, (1, 2));
    assert_eq!(
        cache.get::<(u32, u32)>("pair:p").await.expect("get"),
        Some((1, 2))
    );
}
