//! Reads of the hash layout: `find` reads the whole hash in one script
//! (sizes first), or takes a lease and fills it from Cassandra;
//! `find_fields` reads only the asked fields with one `HMGET`.

use std::time::{Duration, Instant};

use cachefw::__adapter::command;
use cachefw::__adapter::hashed::{self, HashKeys};
use cachefw::__adapter::redis::{self, Value};
use cachefw::Cache;
use futures_util::{StreamExt, TryStreamExt};

use super::fields::{Decoder, Encoder};
use super::scripts::SCRIPTS;
use super::{int, millis};
use crate::entity::Entity;
use crate::error::Error;
use crate::life;
use crate::table::Table;

/// The marker of a whole row in the entry (see `scripts.rs`).
const ROW: &[u8] = b"\xffr";

/// The first wait for another reader's lease; doubled up to
/// [`LONGEST_WAIT`] until the lease time has passed.
const FIRST_WAIT: Duration = Duration::from_millis(2);
const LONGEST_WAIT: Duration = Duration::from_millis(50);

/// How many keys `find_many` reads at once.
const FIND_MANY_CONCURRENCY: usize = 32;

/// The reads of one call of a repository of a hash entity.
pub(crate) struct HashReads<'a, T: Entity> {
    pub(crate) table: &'a Table<T>,
    pub(crate) cache: &'a Cache,
}

/// What the read script answered.
enum Found {
    /// The values, and the entry's PTTL.
    Row(Vec<Vec<u8>>, i64),
    Leased,
    Busy,
    Uncached,
}

impl<T: Entity> HashReads<'_, T> {
    /// The row with `key`: from its hash entry, or from Cassandra, stored
    /// under the lease (see `Repository::find`).
    pub(crate) async fn find(&self, key: &T::Key) -> Result<Option<T>, Error> {
        let Ok(keys) = hashed::keys(self.cache, &T::cache_key(key)) else {
            return self.uncached(key).await;
        };
        if hashed::bypasses(self.cache, &keys.entry) {
            return self.uncached(key).await;
        }
        if let Some(values) = near_values(self.cache, &keys.entry, T::HASH_COLUMNS.len()) {
            let mut source = Decoder {
                cache: self.cache,
                entry: &keys.entry,
                columns: T::HASH_COLUMNS,
                values: &values,
            };
            if let Some(row) = T::read_fields(key, &mut source) {
                hashed::count(self.cache, true, true);
                return Ok(Some(row));
            }
        }
        let deadline = Instant::now() + hashed::lease_time(self.cache);
        let mut wait = FIRST_WAIT;
        loop {
            let nonce = format!("{:016x}", fastrand::u64(..));
            let near = hashed::near_read(self.cache, &keys.entry);
            match self.read(&keys, &nonce).await {
                Found::Row(values, pttl) => {
                    let mut source = Decoder {
                        cache: self.cache,
                        entry: &keys.entry,
                        columns: T::HASH_COLUMNS,
                        values: &values,
                    };
                    if let Some(row) = T::read_fields(key, &mut source) {
                        hashed::count(self.cache, true, false);
                        // No expiry (written behind): the tier's cap.
                        let life = u64::try_from(pttl).map_or(Duration::MAX, Duration::from_millis);
                        hashed::near_offer(self.cache, &keys.entry, near, pack(&values), life);
                        return Ok(Some(row));
                    }
                    // Bytes of another codec, format or type: a miss of the
                    // row, and the entry goes.
                    let _ = self.cache.delete(&T::cache_key(key)).await;
                    return self.uncached(key).await;
                }
                Found::Leased => {
                    hashed::count(self.cache, false, false);
                    let lease = Lease {
                        cache: self.cache.clone(),
                        keys: Some(keys.clone()),
                        nonce: nonce.clone(),
                    };
                    return self.fill(key, lease).await;
                }
                Found::Busy if Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(LONGEST_WAIT);
                }
                Found::Busy | Found::Uncached => return self.uncached(key).await,
            }
        }
    }

    /// The rows with `keys`, aligned with them, each read as by `find`
    /// (up to 32 at once).
    pub(crate) async fn find_many(&self, keys: &[T::Key]) -> Result<Vec<Option<T>>, Error> {
        // A loop, not a closure over `find`: a closure's future would not
        // be `Send` for every lifetime of the key it borrows.
        let mut reads = Vec::with_capacity(keys.len());
        for key in keys {
            reads.push(self.find(key));
        }
        futures_util::stream::iter(reads)
            .buffered(FIND_MANY_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The fields of the row with `key` (see `Repository::find_fields`):
    /// only they are read on a hit; a miss reads and caches the row.
    pub(crate) async fn find_fields(
        &self,
        key: &T::Key,
        fields: &[T::Field],
    ) -> Result<Option<T::Patch>, Error> {
        if let Some(patch) = self.near_fields(key, fields) {
            hashed::count(self.cache, true, true);
            return Ok(Some(patch));
        }
        if let Some(patch) = self.cached_fields(key, fields).await {
            hashed::count(self.cache, true, false);
            return Ok(Some(patch));
        }
        Ok(self.find(key).await?.map(|row| row.to_patch(fields)))
    }

    /// The fields from the near tier's copy of the row, if it holds one.
    fn near_fields(&self, key: &T::Key, fields: &[T::Field]) -> Option<T::Patch> {
        let keys = hashed::keys(self.cache, &T::cache_key(key)).ok()?;
        let values = near_values(self.cache, &keys.entry, T::HASH_COLUMNS.len())?;
        let mut source = Decoder {
            cache: self.cache,
            entry: &keys.entry,
            columns: T::HASH_COLUMNS,
            values: &values,
        };
        T::read_patch(fields, &mut source)
    }

    async fn cached_fields(&self, key: &T::Key, fields: &[T::Field]) -> Option<T::Patch> {
        let keys = hashed::keys(self.cache, &T::cache_key(key)).ok()?;
        if hashed::bypasses(self.cache, &keys.entry) {
            return None;
        }
        let columns: Vec<&str> = fields.iter().map(|f| T::field_column(*f)).collect();
        let mut command = redis::cmd("HMGET");
        command.arg(&keys.entry).arg(ROW).arg(&columns);
        let answer = command::run(self.cache, "HMGET", &keys.entry, &command).await;
        let Ok(Value::Array(mut values)) = answer else {
            return None;
        };
        if values.len() != columns.len() + 1 || bytes(values.remove(0)).is_none() {
            return None;
        }
        let values: Vec<Vec<u8>> = values.into_iter().map(bytes).collect::<Option<_>>()?;
        let mut source = Decoder {
            cache: self.cache,
            entry: &keys.entry,
            columns: &columns,
            values: &values,
        };
        T::read_patch(fields, &mut source)
    }

    /// One run of the read script.
    async fn read(&self, keys: &HashKeys, nonce: &str) -> Found {
        let lease_ms = millis(hashed::lease_time(self.cache));
        let mut invocation = SCRIPTS.read.key(&keys.entry);
        invocation
            .key(&keys.record)
            .arg(nonce)
            .arg(lease_ms)
            .arg(hashed::max_value_size(self.cache))
            .arg(T::HASH_COLUMNS);
        let answer = command::invoke(self.cache, "HASH_READ", &keys.entry, &invocation).await;
        let Ok(Value::Array(mut values)) = answer else {
            return Found::Uncached;
        };
        if values.is_empty() {
            return Found::Uncached;
        }
        match int(&values.remove(0)) {
            Some(1) if values.len() == T::HASH_COLUMNS.len() + 1 => {
                let pttl = int(&values.remove(0)).unwrap_or(0);
                values
                    .into_iter()
                    .map(bytes)
                    .collect::<Option<Vec<_>>>()
                    .map_or(Found::Uncached, |values| Found::Row(values, pttl))
            }
            Some(0) => Found::Leased,
            Some(2) => Found::Busy,
            _ => Found::Uncached,
        }
    }

    /// Cassandra read under our lease, then the row stored if the lease is
    /// still ours, for the entity's TTL or until the row expires.
    async fn fill(&self, key: &T::Key, mut lease: Lease) -> Result<Option<T>, Error> {
        let read = self.table.select_row(key).await?;
        let Some(row) = read.value else {
            lease.release().await;
            return Ok(None);
        };
        let ttl = match life::remaining(read.expiry, Instant::now()) {
            Some(life) if life < life::MIN_LIFE => {
                lease.release().await;
                return Ok(Some(row));
            }
            Some(life) => life.min(T::TTL),
            None => T::TTL,
        };
        let Some(keys) = lease.keys.clone() else {
            return Ok(Some(row));
        };
        let mut sink = Encoder::new(self.cache, &keys.entry);
        row.write_fields(&mut sink);
        let fields = match sink.finish() {
            Ok(fields) => fields,
            Err(_) => {
                lease.release().await;
                return Ok(Some(row));
            }
        };
        let size: usize = fields.iter().map(|(_, bytes)| bytes.len()).sum();
        if u64::try_from(size).unwrap_or(u64::MAX) > hashed::max_value_size(self.cache) {
            lease.release().await;
            return Ok(Some(row));
        }
        let mut invocation = SCRIPTS.fill.key(&keys.entry);
        invocation
            .key(&keys.record)
            .arg(&lease.nonce)
            .arg(millis(ttl));
        for (column, bytes) in &fields {
            invocation.arg(*column).arg(bytes);
        }
        if command::invoke(self.cache, "HASH_FILL", &keys.entry, &invocation)
            .await
            .is_ok()
        {
            // Filled or not, the lease is gone.
            lease.keys = None;
        }
        Ok(Some(row))
    }

    /// The row from Cassandra, not stored.
    async fn uncached(&self, key: &T::Key) -> Result<Option<T>, Error> {
        hashed::count(self.cache, false, false);
        Ok(self.table.select_row(key).await?.value)
    }
}

/// The first bytes of a row packed for the near tier.
const PACKED: &[u8] = b"\xffH";

/// A row's field values packed into one buffer for the near tier: each
/// value's length (4 bytes, big-endian) and bytes, after [`PACKED`].
fn pack(values: &[Vec<u8>]) -> Vec<u8> {
    let size = values.iter().map(|v| v.len() + 4).sum::<usize>() + PACKED.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(PACKED);
    for value in values {
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The `count` values packed by [`pack`], if `packed` holds exactly them.
fn unpack(packed: &[u8], count: usize) -> Option<Vec<Vec<u8>>> {
    let mut rest = packed.strip_prefix(PACKED)?;
    let mut values = Vec::with_capacity(count);
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let (value, tail) = tail.split_at_checked(len)?;
        values.push(value.to_vec());
        rest = tail;
    }
    (values.len() == count).then_some(values)
}

/// The values the near tier holds for the hash `entry`, if it holds a row
/// of `count` columns there (a blob's bytes, if ever, are not one).
fn near_values(cache: &Cache, entry: &str, count: usize) -> Option<Vec<Vec<u8>>> {
    unpack(&hashed::near_get(cache, entry)?, count)
}

/// The bytes of a bulk string.
fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

/// A reader's lease on an entry: given up when the read ends without
/// filling it (Cassandra failed, the row is missing, the caller was cut
/// off), so that other readers need not wait for it to expire.
struct Lease {
    cache: Cache,
    keys: Option<HashKeys>,
    nonce: String,
}

impl Lease {
    /// Gives the lease up now (cut off at the await, from a task).
    async fn release(&mut self) {
        if let Some(keys) = &self.keys {
            release(&self.cache, keys, &self.nonce).await;
            self.keys = None;
        }
    }
}

async fn release(cache: &Cache, keys: &HashKeys, nonce: &str) {
    let mut invocation = SCRIPTS.release.key(&keys.entry);
    invocation.key(&keys.record).arg(nonce);
    let _ = command::invoke(cache, "HASH_RELEASE", &keys.entry, &invocation).await;
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(keys) = self.keys.take() else {
            return;
        };
        let (cache, nonce) = (self.cache.clone(), std::mem::take(&mut self.nonce));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&cache, &keys, &nonce).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_read_back_and_nothing_else_does() {
        let values = vec![b"a".to_vec(), Vec::new(), vec![0xff; 300]];
        let packed = pack(&values);
        assert_eq!(unpack(&packed, 3), Some(values));
        assert_eq!(unpack(&packed, 2), None);
        assert_eq!(unpack(&packed[..packed.len() - 1], 3), None);
        assert_eq!(unpack(b"\xcf\x02V", 0), None);
    }
}
