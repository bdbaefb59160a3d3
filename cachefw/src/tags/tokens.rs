//! Tag tokens: what makes a tagged entry hold, read without a scan.
//!
//! Each tag has one small key, `{namespace}:v{version}:%tag:{tag}`, holding
//! a random token. An entry stored with tags carries, in its extension (see
//! `codec/extended.rs`), the token each tag had *before* its value was
//! loaded or written; it holds while every one of its tags still has that
//! token. `evict_tag` deletes the tag's key: from then on no stored entry
//! carrying the tag holds, whichever process stored it, and the next load
//! gives the tag a new token. No clock is compared, and eviction costs one
//! `DEL` however many entries carry the tag.
//!
//! Why a token and not a counter: a tag key that disappears (evicted under
//! memory pressure, expired, flushed) makes every entry carrying it a
//! miss, never a stale hit, since a new token never equals an old one. A
//! load that began before an eviction carries the token from before it,
//! so its fill, landing after, is a miss too (no stale fill).

use bytes::Bytes;

use crate::backend::Backend;
use crate::codec::extended::{Stamp, tags_of};
use crate::error::Error;
use crate::key::Keys;

/// Between a tag key's marker and the tag: `%` cannot start an escaped
/// placeholder value, and internal keys of the cache use it the same way
/// (`%version:`).
const TAG_KEYS: &str = "%tag:";
/// How long a tag's token lives unless the tag is evicted first. Entries
/// carrying it are misses after that, so it outlives any sensible TTL.
const TOKEN_LIFE_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// The Redis key of `tag`'s token (a long tag is hashed as a long key is).
pub(crate) fn tag_key(keys: &Keys, tag: &str) -> String {
    keys.render(TAG_KEYS.len() + tag.len(), |key| {
        key.push_str(TAG_KEYS);
        key.push_str(tag);
    })
}

/// `tags` without repeats, in the order first given.
pub(crate) fn distinct<'a>(tags: &[&'a str]) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !seen.contains(tag) {
            seen.push(tag);
        }
    }
    seen
}

/// The current token of each tag (given with its key), a new one written
/// for a tag that has none. Read before a load starts, they are what its
/// entry will carry. The reads run concurrently: on one Redis they share
/// the connection's round trip, on a cluster each node's.
pub(crate) async fn tokens(backend: &Backend, tags: &[(&str, String)]) -> Result<Stamp, Error> {
    let reads = tags.iter().map(|(_, full)| async move {
        let fresh = Bytes::from(format!("{:016x}", fastrand::u64(..)));
        match backend.acquire(full, &fresh, TOKEN_LIFE_MS, None).await? {
            Some(held) => Ok(held),
            None => Ok(fresh),
        }
    });
    let tokens = futures_util::future::join_all(reads).await;
    let mut stamp = Vec::with_capacity(tags.len());
    for ((tag, _), token) in tags.iter().zip(tokens) {
        stamp.push(((*tag).to_owned(), token?));
    }
    Ok(Stamp(stamp))
}

/// `KEYS[1]` the entry, `KEYS[2..]` its tags' token keys; `ARGV`: the
/// largest value read, a new token, the token's life in ms. Returns the
/// entry (nil when missing, of another type or too large: sized with
/// `STRLEN`, never copied) and each tag's token, writing the new one for a
/// tag that has none.
#[cfg(feature = "redis")]
const READ_TOGETHER: &str = r"
local out = {}
local size = redis.pcall('STRLEN', KEYS[1])
if type(size) == 'number' and size > 0 and size <= tonumber(ARGV[1]) then
  out[1] = redis.call('GET', KEYS[1])
else
  out[1] = false
end
for i = 2, #KEYS do
  local token = redis.pcall('GET', KEYS[i])
  if type(token) ~= 'string' then
    if type(token) == 'table' then redis.call('DEL', KEYS[i]) end
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
    token = ARGV[2]
  end
  out[i] = token
end
return out
";

#[cfg(feature = "redis")]
static READ: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(READ_TOGETHER));

/// The entry at `full` and its tags' tokens in one script, one request,
/// when one server holds them all (one Redis, or a cluster slot shared by
/// design); `None` otherwise (the caller reads them side by side).
#[cfg(feature = "redis")]
pub(crate) async fn read_together(
    backend: &Backend,
    full: &str,
    tags: &[(&str, String)],
    max: u64,
) -> Option<Result<(Option<Bytes>, Stamp), Error>> {
    if !matches!(backend, Backend::Redis(_))
        || !tags.iter().all(|(_, key)| backend.same_slot(full, key))
    {
        return None;
    }
    let mut call = READ.key(full);
    for (_, key) in tags {
        call.key(key);
    }
    let fresh = format!("{:016x}", fastrand::u64(..));
    call.arg(max).arg(fresh.as_bytes()).arg(TOKEN_LIFE_MS);
    let reply = match backend.invoke("TAGGED_GET", full, &call).await {
        Ok(reply) => reply,
        Err(error) => return Some(Err(error)),
    };
    let malformed = || Error::Decode {
        key: full.to_owned(),
        reason: "a tagged read's reply of another shape".to_owned(),
    };
    let redis::Value::Array(items) = reply else {
        return Some(Err(malformed()));
    };
    if items.len() != tags.len() + 1 {
        return Some(Err(malformed()));
    }
    let mut items = items.into_iter();
    let entry = match items.next() {
        Some(redis::Value::BulkString(bytes)) => Some(Bytes::from(bytes)),
        _ => None,
    };
    let mut stamp = Vec::with_capacity(tags.len());
    for ((tag, _), item) in tags.iter().zip(items) {
        let redis::Value::BulkString(token) = item else {
            return Some(Err(malformed()));
        };
        stamp.push(((*tag).to_owned(), Bytes::from(token)));
    }
    Some(Ok((entry, Stamp(stamp))))
}

/// Whether the tagged entry in `bytes` still holds: each of its tags has
/// the token it carries, and none has an eviction waiting for Redis
/// (`pending`). One round trip (on a cluster, one per node of its tags).
pub(crate) async fn hold(
    backend: &Backend,
    keys: &Keys,
    pending: impl Fn(&str) -> bool,
    bytes: &[u8],
) -> Result<bool, Error> {
    let Some(tags) = tags_of(bytes) else {
        return Ok(false);
    };
    let fulls: Vec<String> = tags.iter().map(|(tag, _)| tag_key(keys, tag)).collect();
    if fulls.iter().any(|full| pending(full)) {
        return Ok(false);
    }
    let current = backend.get_many(&fulls).await;
    for ((_, carried), now) in tags.iter().zip(current) {
        if now?.as_deref() != Some(*carried) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether the tagged entry in `bytes` carries exactly `stamp`'s tags and
/// tokens: read together with fresh tokens, it holds without another look.
pub(crate) fn carries(bytes: &[u8], stamp: &Stamp) -> bool {
    tags_of(bytes).is_some_and(|tags| {
        tags.len() == stamp.0.len()
            && tags
                .iter()
                .zip(&stamp.0)
                .all(|((tag, token), (want, now))| tag == want && *token == &now[..])
    })
}
