//! Tags: evict every entry stored with a tag, whatever its key, in time
//! independent of how many carry it. How tags hold is in `tokens.rs`; this
//! module runs the calls: a tagged read, a tagged write, `evict_tag`.
//!
//! A tagged hit costs one round trip: the entry and its tags' tokens are
//! read together (on one Redis, on one connection; on a cluster, the tag
//! keys' nodes answer alongside the entry's). A miss reads the tokens
//! before the load starts, and its entry carries them: an `evict_tag` that
//! lands while it loads makes that entry a miss. Tagged entries never go
//! to the near tier (its copies are checked by no one), so an `evict_tag`
//! from any process empties every near tier of them at once.
//!
//! Tags against `evict_prefix`: a prefix eviction scans the keyspace
//! (`SCAN`, cost growing with the whole namespace) and removes the entries
//! it finds, so it fits keys that share a prefix by design and evictions
//! that are rare. A tag costs each tagged read a small key lookup and each
//! eviction one `DEL`, and groups entries whatever their keys.

pub(crate) mod tokens;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::aside::Load;
use crate::clock::now_ms;
use crate::codec::extended::{fits, is_tagged};
use crate::error::Error;
use crate::inner::Inner;
use crate::options::Policy;
use crate::shape::Shape;
use tokens::{carries, distinct, tag_key};

impl Inner {
    /// Whether the entry in `bytes` holds: untagged (one byte compare, all
    /// an untagged hit pays), or each of its tags unevicted since it was
    /// loaded (one round trip).
    pub(crate) async fn tags_hold(&self, bytes: &[u8]) -> Result<bool, Error> {
        if !is_tagged(bytes) {
            return Ok(true);
        }
        let pending = |full: &str| self.bypasses(full);
        let held = tokens::hold(self.backend(), self.keys(), pending, bytes).await;
        self.observe(held)
    }
}

/// Each distinct tag with the key of its token.
fn keyed<'a>(inner: &Inner, tags: &[&'a str]) -> Vec<(&'a str, String)> {
    distinct(tags)
        .into_iter()
        .map(|tag| (tag, tag_key(inner.keys(), tag)))
        .collect()
}

/// Cache-aside for an entry carrying `tags`: as [`Inner::through`], with
/// the entry stamped with its tags' tokens from before the load.
pub(crate) async fn through<S: Shape, L: Load<S>>(
    inner: &Arc<Inner>,
    full: &str,
    mut policy: Policy,
    tags: &[&str],
    load: L,
) -> S::Output {
    let tags = keyed(inner, tags);
    if tags.is_empty() {
        return crate::aside::Aside::new(inner)
            .through::<S, L>(full, &policy, load)
            .await;
    }
    if inner.bypasses(full) || tags.iter().any(|(_, key)| inner.bypasses(key)) {
        return bypass::<S, L>(inner, &policy, load).await;
    }
    #[cfg(feature = "redis")]
    let together =
        tokens::read_together(inner.backend(), full, &tags, inner.max_value_size()).await;
    #[cfg(not(feature = "redis"))]
    let together = None;
    let (found, stamp) = match together {
        Some(Ok((found, stamp))) => (Ok(found), Ok(stamp)),
        Some(Err(error)) => (Ok(None), Err(error)),
        None => {
            tokio::join!(
                inner.backend_get(full),
                tokens::tokens(inner.backend(), &tags)
            )
        }
    };
    let stamp = match inner.observe(stamp) {
        Ok(stamp) if fits(&stamp) => stamp,
        // Without its tags' tokens an entry could outlive an eviction of
        // one of them: the value is loaded, and not stored.
        _ => return bypass::<S, L>(inner, &policy, load).await,
    };
    let now = now_ms();
    if let Ok(Some(bytes)) = &found
        && carries(bytes, &stamp)
        && let Ok(decoded) = inner
            .codec()
            .decode::<S::Value>(bytes, inner.max_value_size())
        && now < decoded.meta.expires_ms
        && !policy.refresh_due(now, decoded.meta.expires_ms, decoded.meta.delta_ms)
        && let Some(output) = S::from_entry(decoded.entry)
    {
        inner.telemetry().hit(policy.site, false);
        return output;
    }
    policy.tags = Some(Arc::new(stamp));
    crate::aside::Aside::new(inner)
        .through::<S, L>(full, &policy, load)
        .await
}

/// The loader's answer, stored nowhere.
async fn bypass<S: Shape, L: Load<S>>(inner: &Inner, policy: &Policy, load: L) -> S::Output {
    inner.telemetry().bypass(policy.site);
    inner.telemetry().stats().load();
    load.start().0.await
}

/// Stores `value` at `full` carrying `tags`. When the tags' tokens cannot
/// be read, nothing is stored and the old entry is evicted (as `set` does
/// when its write fails).
pub(crate) async fn set<T: Serialize + ?Sized>(
    inner: &Inner,
    full: &str,
    value: &T,
    ttl: Duration,
    tags: &[&str],
) -> Result<(), Error> {
    let tags = keyed(inner, tags);
    let stamp = match inner.observe(tokens::tokens(inner.backend(), &tags).await) {
        Ok(stamp) if fits(&stamp) => stamp,
        Ok(_) => {
            let error = Error::Encode {
                key: full.to_owned(),
                codec: inner.codec(),
                reason: "more than 255 tags, a tag over 64 KiB, or a token over 255 bytes"
                    .to_owned(),
            };
            inner.failure(&error);
            let _ = inner.delete_full(full).await;
            return Err(error);
        }
        Err(error) => {
            let _ = inner.delete_full(full).await;
            return Err(error);
        }
    };
    inner.set_full(full, value, ttl, Some(&stamp)).await
}

/// Makes every entry stored with `tag` before now a miss, in every process:
/// one `DEL` of the tag's token, journaled like any eviction when Redis
/// does not confirm it (reads of entries carrying the tag bypass Redis
/// until it is replayed).
pub(crate) async fn evict(inner: &Inner, tag: &str) -> Result<(), Error> {
    let full = tag_key(inner.keys(), tag);
    // Loads in flight here may carry the tag: callers arriving from now on
    // must not join them (which keys carry it, only their entries say).
    inner.flights().detach_prefix(inner.keys().prefix());
    inner.delete_full(&full).await.map(|_| ())
}
