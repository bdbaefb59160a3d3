//! Hot keys: which keys a namespace's caches read most, kept in Redis at
//! `{namespace}:hot` (outside the version), so that after a version bump
//! the new version can be warmed from the old one's traffic
//! ([`Cache::hot_keys`], and `Repository::warm` in `cachefw-cassandra`).
//!
//! - The read path samples: one read in [`SAMPLE`] (64; one in 16 cost the
//!   in-memory hit 2.5 %, see BENCHMARKS.md), drawn by a thread-local
//!   xorshift (no shared cache line, no clock), is counted in a map of this
//!   process, with weight [`SAMPLE`]. A sampled read costs a lock and a hash
//!   lookup; the others a few instructions.
//! - Every [`FLUSH_EVERY`] a task sends the map to Redis in one script:
//!   forward decay (Cormode et al., ICDE 2009) adds `weight · 2^((now −
//!   landmark) / HALF_LIFE)` to each key's score, so older reads count less
//!   without touching old scores; when the exponent passes [`RESCALE_AT`]
//!   the script rescales every score once and moves the landmark (about
//!   every ten hours). The landmark is a member of the set itself, with a
//!   negative score (so the set stays one key, on one cluster slot), and
//!   the time is Redis's (`TIME`), never compared across processes' clocks.
//!   The set keeps the [`CAPACITY`] hottest keys (`ZREMRANGEBYRANK`).
//! - The in-memory backend keeps the same scores in the process.

pub(crate) mod sample;

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::cache::Cache;
use crate::error::Error;
use crate::follow::upgrade;

#[cfg(test)]
use self::sample::{Hot, Local, sampled};

/// One read in this many is counted (a power of two).
pub(crate) const SAMPLE: u32 = 64;
/// How often a process sends its counts to Redis.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Scores halve in this many seconds.
pub(crate) const HALF_LIFE_SECS: f64 = 600.0;
/// The exponent past which scores are rescaled.
pub(crate) const RESCALE_AT: f64 = 64.0;
/// Keys the set holds.
pub(crate) const CAPACITY: usize = 10_000;
/// Distinct keys one process counts between two flushes; sampled reads of
/// other keys are dropped meanwhile (they are not among the hottest).
pub(crate) const PENDING_KEYS: usize = 8_192;
/// Keys per script call.
const FLUSH_CHUNK: usize = 1_000;
/// The member holding the landmark: no rendered key starts with NUL.
const LANDMARK: &str = "\u{0}landmark";

/// `ARGV`: half life (s), rescale exponent, capacity, then key and weight
/// pairs. Adds the decayed weights; rescales and trims as needed.
#[cfg(feature = "redis")]
static FLUSH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local half, rescale_at, capacity = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local mark = ARGV[4]
local landmark = redis.call('ZSCORE', KEYS[1], mark)
if landmark then landmark = -tonumber(landmark) else landmark = now end
local exponent = math.max(0, (now - landmark) / half)
if exponent > rescale_at then
  local factor = 2 ^ (-exponent)
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    if all[i] ~= mark then redis.call('ZADD', KEYS[1], tonumber(all[i + 1]) * factor, all[i]) end
  end
  landmark, exponent = now, 0
end
redis.call('ZADD', KEYS[1], -landmark, mark)
local scale = 2 ^ exponent
for i = 5, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], tonumber(ARGV[i + 1]) * scale, ARGV[i])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 1, -(capacity + 1))
return 1
",
    )
});

/// `{namespace}:hot`.
fn set_key(cache: &Cache) -> String {
    format!("{}:hot", cache.namespace())
}

/// Starts the flusher of a cache just built: it sends the counts every
/// [`FLUSH_EVERY`] until the cache shuts down or its last handle goes,
/// and once more at shutdown. It holds no handle between two flushes.
pub(crate) fn start(cache: &Cache) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let me = Arc::downgrade(cache.handle());
    let mut closing = cache.closing();
    runtime.spawn(async move {
        loop {
            let closed = tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => false,
                changed = closing.changed() => changed.is_err() || *closing.borrow(),
            };
            let Some(cache) = upgrade(&me) else {
                return;
            };
            // A failure is counted and logged by the backend's path; the
            // counts of that round are lost, which only blurs the ranking.
            let _ = flush(&cache).await;
            if closed {
                return;
            }
        }
    });
}

/// Sends the counts since the last flush.
async fn flush(cache: &Cache) -> Result<(), Error> {
    let inner = cache.inner();
    let counts = inner.hot.drain(inner.keys().prefix());
    if counts.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "redis")]
    if inner.backend().name() == "redis" {
        let key = set_key(cache);
        for chunk in counts.chunks(FLUSH_CHUNK) {
            let mut call = FLUSH.key(&key);
            call.arg(HALF_LIFE_SECS)
                .arg(RESCALE_AT)
                .arg(CAPACITY)
                .arg(LANDMARK);
            for (rendered, weight) in chunk {
                call.arg(rendered.as_str()).arg(*weight);
            }
            inner.observe(inner.backend().invoke("ZINCRBY", &key, &call).await)?;
        }
        return Ok(());
    }
    inner
        .hot
        .local
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(counts);
    Ok(())
}

impl Cache {
    /// The `n` most-read keys of this namespace, hottest first, as rendered
    /// keys (no namespace or version): what every `Cache` of the namespace
    /// read, in any process and any version, sampled, with older reads
    /// counting less (scores halve every ten minutes). A process's reads
    /// are visible here within about half a second, this cache's at once.
    ///
    /// After a version bump, these are the keys to load first (see
    /// `Repository::warm` in `cachefw-cassandra`, and the deploy recipe in
    /// the README). Kept in Redis at `{namespace}:hot`, bounded to the
    /// 10,000 hottest keys; the in-memory backend keeps them in the process.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cachefw::Error> {
    /// let cache = cachefw::Cache::builder().build().await?;
    /// cache.set("user:1", &1, Duration::from_secs(60)).await?;
    /// for _ in 0..1_000 {
    ///     cache.get::<i32>("user:1").await?;
    /// }
    /// assert_eq!(cache.hot_keys(10).await?, ["user:1"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Over Redis: [`Error::Unavailable`], [`Error::Timeout`] or
    /// [`Error::Redis`] when Redis fails.
    pub async fn hot_keys(&self, n: usize) -> Result<Vec<String>, Error> {
        let inner = self.inner();
        flush(self).await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        #[cfg(feature = "redis")]
        if inner.backend().name() == "redis" {
            let key = set_key(self);
            let mut range = redis::cmd("ZRANGE");
            // Real scores are positive; the landmark's is negative.
            range
                .arg(&key)
                .arg("+inf")
                .arg("(0")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(n);
            let reply = crate::command::run(self, "ZRANGE", &key, &range).await?;
            return match reply {
                redis::Value::Array(members) => Ok(members
                    .iter()
                    .filter_map(|member| match member {
                        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
                        _ => None,
                    })
                    .collect()),
                other => Err(Error::Decode {
                    key,
                    reason: format!("unexpected reply to ZRANGE: {other:?}"),
                }),
            };
        }
        Ok(inner
            .hot
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .top(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_read_in_sample_is_counted() {
        let hits = (0..640_000).filter(|_| sampled()).count();
        assert!((8_000..12_000).contains(&hits), "{hits}");
    }

    #[test]
    fn local_scores_rank_and_stay_bounded() {
        let mut local = Local::default();
        local.add(vec![("a".into(), 5), ("b".into(), 50), ("c".into(), 10)]);
        assert_eq!(local.top(2), ["b", "c"]);
        local.add((0..CAPACITY + 10).map(|i| (format!("k{i}"), 1)).collect());
        assert!(local.scores.len() <= CAPACITY);
        assert_eq!(local.top(1), ["b"]);
    }

    #[test]
    fn drain_keeps_this_cache_keys_only() {
        let hot = Hot::default();
        for _ in 0..SAMPLE * 64 {
            hot.note("ns:v1:user:1");
            hot.note("other:v1:user:2");
        }
        let counts = hot.drain("ns:v1:");
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].0, "user:1");
        assert!(hot.drain("ns:v1:").is_empty());
    }
}
