//! How `find`, `find_many` and `find_partition` read through the cache:
//! a row is cached for the entity's TTL, or until it expires if that comes
//! sooner; the reads themselves are [`Table`]'s.

use std::time::Instant;

use cachefw::Cache;
use futures_util::{StreamExt, TryStreamExt};

use crate::entity::Entity;
use crate::error::Error;
use crate::life;
use crate::table::Table;
use crate::through::{self, Read};

/// How many keys [`Reads::find_many`] reads at once.
const FIND_MANY_CONCURRENCY: usize = 32;

/// The reads of one call of a repository.
pub(crate) struct Reads<'a, T: Entity> {
    pub(crate) table: &'a Table<T>,
    pub(crate) cache: &'a Cache,
}

impl<T: Entity> Reads<'_, T> {
    /// The row with `key`, through the cache (see `Repository::find`).
    pub(crate) async fn find(&self, key: &T::Key) -> Result<Option<T>, Error> {
        through::read_through(self.cache, &T::cache_key(key), T::TTL, || {
            self.table.select_row(key)
        })
        .await
    }

    /// The rows with `keys`, aligned with them, through the cache in one
    /// call (see `Repository::find_many`).
    pub(crate) async fn find_many(&self, keys: &[T::Key]) -> Result<Vec<Option<T>>, Error> {
        Ok(self.find_many_counted(keys).await?.0)
    }

    /// [`find_many`](Self::find_many), and how many rows this call read
    /// from Cassandra (for `warm`).
    pub(crate) async fn find_many_counted(
        &self,
        keys: &[T::Key],
    ) -> Result<(Vec<Option<T>>, u64), Error> {
        let cache_keys: Vec<String> = keys.iter().map(T::cache_key).collect();
        let refs: Vec<&str> = cache_keys.iter().map(String::as_str).collect();
        let by_cache_key: std::collections::HashMap<&str, &T::Key> =
            refs.iter().copied().zip(keys).collect();
        // What the loader was asked, and the rows it read that expire too
        // soon to cache (returned all the same).
        let mut asked = std::collections::HashSet::new();
        let mut shorter = std::collections::HashMap::new();
        let mut loaded = 0u64;
        let found = self
            .cache
            .get_or_load_many(&refs, T::TTL, |missing: Vec<String>| async {
                let mut reads = Vec::with_capacity(missing.len());
                for cache_key in &missing {
                    if let Some(key) = by_cache_key.get(cache_key.as_str()) {
                        reads.push(
                            async move { (cache_key.clone(), self.table.select_row(key).await) },
                        );
                    }
                }
                let rows: Vec<(String, Result<Read<T>, Error>)> = futures_util::stream::iter(reads)
                    .buffered(FIND_MANY_CONCURRENCY)
                    .collect()
                    .await;
                let now = Instant::now();
                let mut cached = std::collections::HashMap::with_capacity(rows.len());
                for (cache_key, read) in rows {
                    let read = read?;
                    let Some(value) = read.value else { continue };
                    match life::remaining(read.expiry, now) {
                        Some(life) if life < T::TTL => {
                            shorter.insert(cache_key, value);
                        }
                        _ => {
                            cached.insert(cache_key, value);
                        }
                    }
                }
                asked.extend(missing);
                loaded += (cached.len() + shorter.len()) as u64;
                Ok::<_, Error>(cached)
            })
            .await?;
        let mut rows = Vec::with_capacity(keys.len());
        let mut again = Vec::new();
        for (at, (cache_key, value)) in cache_keys.iter().zip(found).enumerate() {
            rows.push(match value {
                Some(value) => Some(value),
                None => match shorter.get(cache_key) {
                    Some(value) => Some(value.clone()),
                    None => {
                        if !asked.contains(cache_key) {
                            again.push(at);
                        }
                        None
                    }
                },
            });
        }
        // Waited for, and the other load gave nothing: read as `find` does.
        // A loop, not a closure over `find`: a closure's future would not
        // be `Send` for every lifetime of the key it borrows.
        let mut reads = Vec::with_capacity(again.len());
        for at in &again {
            if let Some(key) = keys.get(*at) {
                reads.push(self.find(key));
            }
        }
        let reread: Vec<Option<T>> = futures_util::stream::iter(reads)
            .buffered(FIND_MANY_CONCURRENCY)
            .try_collect()
            .await?;
        loaded += again.len() as u64;
        for (at, value) in again.into_iter().zip(reread) {
            if let Some(row) = rows.get_mut(at) {
                *row = value;
            }
        }
        Ok((rows, loaded))
    }

    /// Every row of `partition`, cached as a whole with `cache_partitions`
    /// (see `Repository::find_partition`).
    pub(crate) async fn find_partition(&self, partition: &T::Partition) -> Result<Vec<T>, Error> {
        if !T::CACHE_PARTITIONS {
            // Not cached: the rows' TTLs are not needed.
            let read = self.table.select_partition_untimed(partition).await?;
            return Ok(read.value.unwrap_or_default());
        }
        let key = T::partition_cache_key(partition);
        let rows = through::read_through(self.cache, &key, T::TTL, || {
            self.table.select_partition(partition)
        })
        .await?;
        Ok(rows.unwrap_or_default())
    }
}
