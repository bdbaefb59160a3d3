//! [`Repository`]: an entity's table read through the cache; writes go to
//! Cassandra and the cache as the entity's [`WriteMode`] says.

use std::sync::Arc;
use std::time::Duration;

use cachefw::Cache;
use scylla::client::session::Session;

use crate::behind::policy::check_eviction_policy;
use crate::behind::stream::Stream;
use crate::behind::{self, Backlog, DEFAULT_DEAD_LETTER_AFTER};
use crate::entity::{Entity, Layout, WriteMode};
use crate::error::Error;
use crate::hash::{HashReads, HashWrites};
use crate::page::{self, Page, PageToken};
use crate::reads::Reads;
use crate::rows::RowLocks;
use crate::table::Table;
use crate::writes::{Writes, refuse_counters};

/// How long a write-behind record may stay unacknowledged by the flusher
/// that took it before another flusher takes it over (see
/// [`Repository::flusher_claim_idle`]).
///
/// ```
/// assert_eq!(cachefw_cassandra::DEFAULT_CLAIM_IDLE.as_secs(), 30);
/// ```
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(30);

/// How many rows [`Repository::save_all`] writes per batch by default.
///
/// Cassandra refuses a batch larger than `batch_size_fail_threshold`
/// (50 KiB by default) and logs a warning past 5 KiB; 32 rows keep rows of
/// up to about 1.5 KiB under the refusal. Tune it with
/// [`Repository::batch_rows`].
///
/// ```
/// // 1,000 rows are written as 31 batches of 32 and one of 8.
/// assert_eq!(1_000_usize.div_ceil(cachefw_cassandra::SAVE_ALL_CHUNK), 32);
/// ```
pub const SAVE_ALL_CHUNK: usize = 32;

/// The table of entity `T`, read through a [`Cache`].
///
/// Reads go through the cache under the entity's key
/// (`{table}:{pk…}:{ck…}`) for the entity's TTL, or for less when the row
/// expires sooner (its `TTL()` is read with it), so a cached row never
/// outlives the row. Writes follow the entity's [`WriteMode`]
/// (`#[entity(write = "…")]`):
///
/// - `"invalidate"` (the default): Cassandra first, then the cached entry
///   (and the partition's, when partitions are cached) is evicted: after a
///   success, and after a timeout or any failure that may hide an applied
///   write; only a write Cassandra refused leaves the entries alone.
/// - `"through"`: [`save`](Self::save) writes Cassandra, then stores the
///   row in the cache over any reader's lease (a reader that loaded the old
///   row cannot fill it afterwards), unless a newer save of the row is
///   stored already; both carry the call's timestamp.
/// - `"behind"`: [`save`](Self::save) and [`patch`](Self::patch) return once
///   Redis holds the cache entry and a record in the table's stream;
///   flushers ([`spawn_flusher`](Self::spawn_flusher)) write the records to
///   Cassandra later, each `USING TIMESTAMP` of its call. A write is then
///   as durable as the Redis that took it: with AOF `appendfsync
///   everysec`, a Redis crash loses up to about a second of acknowledged
///   writes; without persistence, a restart loses every write not flushed.
///   Once Redis holds it, no answer of Cassandra loses it: a refused record
///   is retried (backoff up to 30 s) until written, or until refused for
///   [`dead_letter_after`](Self::dead_letter_after), then kept as a dead
///   letter for [`replay_dead`](Self::replay_dead).
///
/// A cache failure never fails a call: a write-behind save that Redis
/// cannot take goes to Cassandra at once.
pub struct Repository<T: Entity> {
    table: Arc<Table<T>>,
    cache: Cache,
    stream: Stream,
    rows: RowLocks,
    batch_rows: usize,
    claim_idle: Duration,
    dead_after: Duration,
}

impl<T: Entity> Repository<T> {
    /// A repository over `session`, reading through `cache`. Prepares every
    /// statement now if the table exists; otherwise (before
    /// [`create_table`](Self::create_table)) on first use.
    ///
    /// # Errors
    ///
    /// [`Error::WriteBehindNeedsRedis`] for a write-behind entity over an
    /// in-memory cache; [`Error::EvictionPolicy`] for one over a Redis
    /// whose `maxmemory-policy` is `allkeys-*` (`noeviction` and
    /// `volatile-*` are accepted; where `CONFIG GET` is not allowed, one
    /// warning says that the policy could not be checked).
    pub async fn new(session: Arc<Session>, cache: Cache) -> Result<Self, Error> {
        if T::LAYOUT == Layout::Hash && cache.backend_name() != "redis" {
            return Err(Error::HashNeedsRedis {
                table: T::TABLE,
                backend: cache.backend_name(),
            });
        }
        if T::WRITE == WriteMode::Behind {
            if cache.backend_name() != "redis" {
                return Err(Error::WriteBehindNeedsRedis {
                    table: T::TABLE,
                    backend: cache.backend_name(),
                });
            }
            check_eviction_policy(&cache, T::TABLE)
                .await
                .map_err(|policy| Error::EvictionPolicy {
                    table: T::TABLE,
                    policy,
                })?;
        }
        let repository = Self {
            table: Arc::new(Table::new(session)),
            stream: Stream::new(&cache, T::TABLE),
            rows: RowLocks::default(),
            cache,
            batch_rows: SAVE_ALL_CHUNK,
            claim_idle: DEFAULT_CLAIM_IDLE,
            dead_after: DEFAULT_DEAD_LETTER_AFTER,
        };
        if let Err(error) = repository.table.prepare_all().await {
            // Before `create_table` the table may not exist yet: the
            // statement that needs it says so.
            tracing::debug!(%error, "cachefw-cassandra: statements are prepared on first use");
        }
        Ok(repository)
    }

    /// Sets how many rows [`save_all`](Self::save_all) writes per batch
    /// (at least 1; [`SAVE_ALL_CHUNK`] by default).
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
    /// # pub struct User { #[partition_key] pub id: uuid::Uuid, pub bio: String }
    /// # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
    /// # -> Result<(), cachefw_cassandra::Error> {
    /// // Rows of about 4 KiB: 10 per batch stay under 50 KiB.
    /// let users = Repository::<User>::new(session, cache).await?.batch_rows(10);
    /// # let _ = users; Ok(()) }
    /// ```
    #[must_use]
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Creates the table if it does not exist, then prepares the statements.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the DDL or a statement.
    pub async fn create_table(&self) -> Result<(), Error> {
        self.table.create().await
    }

    fn writes(&self) -> Writes<'_, T> {
        Writes {
            table: &self.table,
            cache: &self.cache,
            rows: &self.rows,
        }
    }

    fn reads(&self) -> Reads<'_, T> {
        Reads {
            table: &self.table,
            cache: &self.cache,
        }
    }

    /// The writes of the hash layout, when the entity has it.
    fn hashed(&self) -> Option<HashWrites<'_, T>> {
        (T::LAYOUT == Layout::Hash).then(|| HashWrites {
            table: &self.table,
            cache: &self.cache,
            rows: &self.rows,
            stream: &self.stream,
        })
    }

    fn hash_reads(&self) -> HashReads<'_, T> {
        HashReads {
            table: &self.table,
            cache: &self.cache,
        }
    }

    /// Writes `entity` as the entity's [`WriteMode`] says: to Cassandra,
    /// then evicting its cached entries (invalidate) or storing the row
    /// (through); or to Redis, for a flusher to write (behind).
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub items: Vec<String>, pub total: i64 }
    /// # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
    /// # -> Result<(), cachefw_cassandra::Error> {
    /// let carts: Repository<Cart> = Repository::new(session, cache).await?;
    /// let _flusher = carts.spawn_flusher();
    /// let cart = Cart { id: uuid::Uuid::new_v4(), items: vec!["tea".into()], total: 4 };
    /// carts.save(&cart).await?;                 // Redis has it: the entry and the record
    /// assert_eq!(carts.find(&cart.key()).await?.map(|c| c.total), Some(4));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When the Cassandra write fails (for write-behind: when Redis could
    /// not take the write and Cassandra failed too). The entries are
    /// evicted all the same unless Cassandra definitely refused it (a
    /// timeout may hide a write). [`Error::CounterTable`], before anything
    /// is sent, for a table of counters, whose rows Cassandra cannot INSERT:
    /// use [`increment`](Self::increment).
    pub async fn save(&self, entity: &T) -> Result<(), Error> {
        refuse_counters::<T>("save", "Cassandra cannot INSERT into it")?;
        if let Some(hashed) = self.hashed() {
            return hashed.save(entity).await;
        }
        let writes = self.writes();
        match T::WRITE {
            WriteMode::Invalidate => writes.save_invalidating(entity).await,
            WriteMode::Through => writes.save_through(entity).await,
            WriteMode::Behind => writes.save_behind(&self.stream, entity).await,
        }
    }

    /// Writes only the fields `patch` gives (`UPDATE … SET`) of the row with
    /// `key`, leaving the others as Cassandra has them, and evicts the
    /// row's entry. With write-through the row is then read back through
    /// the cache. With write-behind the patch is a stream record, written
    /// by a flusher with its own timestamp (Cassandra keeps the newest
    /// write of each column), and the cached row is patched in place when
    /// it holds a write of its own (otherwise evicted, and read from
    /// Cassandra until the flush). A patch with no field set writes
    /// nothing.
    ///
    /// With `layout = "hash"` the patch sets only its fields in the cached
    /// hash instead, in every write mode (see the crate documentation,
    /// "Field-level entities"), and the next read is a hit.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// #[entity(keyspace = "shop", table = "carts", ttl = "10m")]
    /// pub struct Cart {
    ///     #[partition_key] pub id: uuid::Uuid,
    ///     pub items: Vec<String>,
    ///     pub total: i64,
    ///     pub coupon: Option<String>,
    /// }
    /// # async fn demo(carts: Repository<Cart>, id: uuid::Uuid) -> Result<(), cachefw_cassandra::Error> {
    /// // Only `total` and `coupon` change; `items` stays as it is.
    /// let patch = CartPatch { total: Some(12), coupon: Some(None), ..Default::default() };
    /// carts.patch(&CartKey { id }, &patch).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`save`](Self::save).
    pub async fn patch(&self, key: &T::Key, patch: &T::Patch) -> Result<(), Error> {
        if T::patch_values(patch).columns().is_empty() {
            return Ok(());
        }
        if let Some(hashed) = self.hashed() {
            return hashed.patch(key, patch).await;
        }
        let writes = self.writes();
        match T::WRITE {
            WriteMode::Invalidate => writes.patch_invalidating(key, patch).await,
            WriteMode::Through => {
                writes.patch_through(key, patch).await?;
                // Read back under the lease; a failure here is only a miss.
                let _ = self.find(key).await;
                Ok(())
            }
            WriteMode::Behind => writes.patch_behind(&self.stream, key, patch).await,
        }
    }

    /// Writes `entity` with `USING TTL` (whole seconds, rounded up), straight
    /// to Cassandra in every write mode, then evicts its cached entries. A
    /// later [`find`](Self::find) reads the row's `TTL()` and caches it for
    /// the entity's TTL or until the row expires, whichever comes first.
    /// With write-through and write-behind the write carries the call's
    /// timestamp and the eviction records it, so an older save still on its
    /// way does not bring its row back, in Cassandra or in the cache.
    ///
    /// # Errors
    ///
    /// [`Error::RowTtl`], before writing, when a cached copy could outlive
    /// the row: the entity has no column whose `TTL()` tells the row's
    /// ([`Statements::select_with_ttl`](crate::Statements::select_with_ttl)
    /// is `None`), or the server cannot read `TTL()` or ignores `USING TTL`.
    /// [`Error::CounterTable`] for a table of counters. Otherwise as
    /// [`save`](Self::save).
    pub async fn save_with_ttl(&self, entity: &T, ttl: Duration) -> Result<(), Error> {
        refuse_counters::<T>(
            "save_with_ttl",
            "Cassandra cannot INSERT into it, nor give a counter a TTL",
        )?;
        let statement = self.table.insert_with_ttl_statement().await?;
        if let Some(hashed) = self.hashed() {
            return hashed.save_with_ttl(statement, entity, ttl).await;
        }
        self.writes().save_with_ttl(statement, entity, ttl).await
    }

    /// Writes `entity` only if no row has its key (a lightweight
    /// transaction); returns whether it was written. The cache changes only
    /// when it was: the entry is evicted (invalidate) or holds the new row
    /// (through, behind); a row that existed keeps its entry.
    ///
    /// A lightweight transaction carries the coordinator's timestamp, not
    /// the call's: as Cassandra advises, do not mix it with concurrent
    /// plain writes of the same row. With write-behind, a row whose save
    /// still waits in the stream (its entry holds it) exists: the answer is
    /// `false` without asking Cassandra.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
    /// # pub struct User { #[partition_key] pub id: uuid::Uuid, pub name: String }
    /// # async fn demo(users: Repository<User>) -> Result<(), cachefw_cassandra::Error> {
    /// let ada = User { id: uuid::Uuid::new_v4(), name: "Ada".into() };
    /// if !users.insert_if_not_exists(&ada).await? {
    ///     println!("{} was taken", ada.id);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When Cassandra fails, and [`Error::NoApplied`] when it answers
    /// without `[applied]` (a server without lightweight transactions, such
    /// as kassandra, which writes the row unconditionally). The entries are
    /// evicted then, and when the outcome is unknown, as by
    /// [`save`](Self::save). [`Error::CounterTable`] for a table of
    /// counters.
    pub async fn insert_if_not_exists(&self, entity: &T) -> Result<bool, Error> {
        refuse_counters::<T>(
            "insert_if_not_exists",
            "Cassandra cannot INSERT into it, nor run a lightweight transaction on it",
        )?;
        if let Some(hashed) = self.hashed() {
            return hashed.insert_if_not_exists(entity).await;
        }
        self.writes().insert_if_not_exists(entity).await
    }

    /// Adds `by` (negative: subtracts) to the counter `counter` of the row
    /// with `key` (`UPDATE … SET c = c + ?`), then evicts the row's entry
    /// (and its partition's): the next read loads the new totals. With
    /// `layout = "hash"` it adds to the cached counter instead, once
    /// Cassandra applied the increment. With
    /// `write = "through"` the row is then read back through the cache.
    ///
    /// Counters are declared with `#[counter]` on `i64` fields; every
    /// regular field of such an entity is one (Cassandra keeps counters in
    /// tables of counters only), and the derive generates
    /// `{Entity}Counter`, one variant per counter. A row exists once one of
    /// its counters was incremented; a counter never incremented reads 0.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// #[entity(keyspace = "shop", table = "page_hits", ttl = "1m")]
    /// pub struct PageHits {
    ///     #[partition_key] pub url: String,
    ///     #[counter] pub views: i64,
    ///     #[counter] pub clicks: i64,
    /// }
    /// # async fn demo(hits: Repository<PageHits>) -> Result<(), cachefw_cassandra::Error> {
    /// let key = PageHitsKey { url: "/".into() };
    /// hits.increment(&key, PageHitsCounter::Views, 1).await?;
    /// let views = hits.find(&key).await?.map_or(0, |row| row.views);
    /// # let _ = views; Ok(()) }
    /// ```
    ///
    /// An increment is not idempotent: it is never sent twice (the driver
    /// does not retry it after a timeout), and counters cannot be written
    /// behind (`write = "behind"` on a table of counters does not compile).
    /// After a timeout the increment may or may not have been applied, as
    /// Cassandra itself cannot tell; the entries are evicted as after a
    /// success.
    ///
    /// # Errors
    ///
    /// When Cassandra fails; the entries are evicted unless Cassandra
    /// definitely refused the increment.
    pub async fn increment(&self, key: &T::Key, counter: T::Counter, by: i64) -> Result<(), Error> {
        if let Some(hashed) = self.hashed() {
            return hashed.increment(key, counter, by).await;
        }
        self.writes().increment(key, counter, by).await?;
        if T::WRITE == WriteMode::Through {
            // Read back under the lease; a failure here is only a miss.
            let _ = self.find(key).await;
        }
        Ok(())
    }

    /// The row with `key`: from the cache, or from Cassandra and then
    /// cached for the entity's TTL, or until the row expires if that comes
    /// sooner. A missing row is not cached.
    ///
    /// # Errors
    ///
    /// When Cassandra fails; a cache failure is served from Cassandra.
    pub async fn find(&self, key: &T::Key) -> Result<Option<T>, Error> {
        if T::LAYOUT == Layout::Hash {
            return self.hash_reads().find(key).await;
        }
        self.reads().find(key).await
    }

    /// The fields `fields` of the row with `key`, as a patch that sets
    /// them (the others `None`); `None` when the row does not exist.
    ///
    /// With `layout = "hash"` a hit reads only these fields (one `HMGET`);
    /// a miss reads the row and caches it whole, as [`find`](Self::find)
    /// does. With the blob layout the row is read as by `find`.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// #[entity(keyspace = "shop", table = "profiles", ttl = "10m", layout = "hash")]
    /// pub struct Profile { #[partition_key] pub id: i64, pub name: String, pub bio: String }
    /// # async fn demo(profiles: Repository<Profile>) -> Result<(), cachefw_cassandra::Error> {
    /// let name = profiles
    ///     .find_fields(&ProfileKey { id: 7 }, &[ProfileField::Name])
    ///     .await?
    ///     .and_then(|fields| fields.name);
    /// # let _ = name; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`find`](Self::find).
    pub async fn find_fields(
        &self,
        key: &T::Key,
        fields: &[T::Field],
    ) -> Result<Option<T::Patch>, Error> {
        if T::LAYOUT == Layout::Hash {
            return self.hash_reads().find_fields(key, fields).await;
        }
        Ok(self.find(key).await?.map(|row| row.to_patch(fields)))
    }

    /// The rows with `keys`, aligned with them, as [`find`](Self::find)
    /// would read each: one cache read for all of them
    /// ([`Cache::get_or_load_many`]: one round trip per slot group), then
    /// the keys that missed read from Cassandra at once (prepared reads,
    /// up to 32 in flight: rows of different partitions live on different
    /// nodes, where one `IN` query would make one coordinator fetch them
    /// all), and stored in one pipeline. A key another caller is loading is
    /// waited for, not read twice.
    ///
    /// A row whose Cassandra TTL ends before the entity's `ttl` is returned
    /// and not cached (`find` caches it for its remaining life); a key whose
    /// load by another caller ended without a value is read again here, as
    /// `find` reads it.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
    /// # pub struct User { #[partition_key] pub id: uuid::Uuid, pub name: String }
    /// # async fn demo(users: Repository<User>, a: uuid::Uuid, b: uuid::Uuid)
    /// # -> Result<(), cachefw_cassandra::Error> {
    /// let found = users.find_many(&[UserKey { id: a }, UserKey { id: b }]).await?;
    /// assert_eq!(found.len(), 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The first Cassandra failure among the reads (nothing is cached then).
    pub async fn find_many(&self, keys: &[T::Key]) -> Result<Vec<Option<T>>, Error> {
        if T::LAYOUT == Layout::Hash {
            return self.hash_reads().find_many(keys).await;
        }
        self.reads().find_many(keys).await
    }

    /// Deletes the row with `key`, then evicts its cached entries. With
    /// write-through and write-behind the delete carries the call's
    /// timestamp, and the entry records it: an older save still on its way
    /// (in the stream, or in flight) neither brings the row back in
    /// Cassandra nor stores it in the cache.
    ///
    /// # Errors
    ///
    /// When the delete fails; the entries are evicted unless Cassandra
    /// definitely refused it.
    pub async fn delete(&self, key: &T::Key) -> Result<(), Error> {
        if let Some(hashed) = self.hashed() {
            return hashed.delete(key).await;
        }
        let writes = self.writes();
        match T::WRITE {
            WriteMode::Invalidate => writes.delete_invalidating(key).await,
            WriteMode::Through => writes.delete_through(key).await,
            WriteMode::Behind => writes.delete_behind(key).await,
        }
    }

    /// Follows `stream` (a literal Redis key on the cache's Redis), where
    /// Debezium Server's Redis sink announces rows of this table changed
    /// by any writer, as a member of the consumer group `group` (processes
    /// share the work), and evicts each changed row's cached entries (a
    /// partition's, for a key document without the clustering columns).
    /// Reads the sink's *extended* and *compact* entries, key documents
    /// bare or under `payload` with a `schema`. The formats, a Debezium
    /// Server configuration and the guarantees (at least once; entries
    /// published while no follower runs are applied when one starts) are
    /// on the page [`change_streams`](crate::change_streams).
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
    /// # pub struct User { #[partition_key] pub id: uuid::Uuid, pub name: String }
    /// # async fn demo(users: Repository<User>) -> Result<(), cachefw_cassandra::Error> {
    /// let follower = users.follow_changes("cdc.shop.users", "cachefw").await?;
    /// # follower.abort(); Ok(()) }
    /// ```
    ///
    /// The follower stops when its handle is aborted, or the cache shuts
    /// down or is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Cache`] on an in-memory cache, or when `stream` holds
    /// something other than a stream. A Redis that is down does not fail
    /// the call: the follower starts once it answers.
    pub async fn follow_changes(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        crate::changes::follow::<T>(&self.cache, stream, group).await
    }

    /// Loads the `n` hottest rows of this table that are not cached, as
    /// [`Cache::hot_keys`](cachefw::Cache::hot_keys) ranks them, through
    /// [`find_many`](Self::find_many): one batch, under leases, so that
    /// processes warming at once read each row from Cassandra once. How
    /// many rows it read from Cassandra.
    ///
    /// The deploy recipe: build the new version's cache (a bumped
    /// `.version(..)`), `warm` its repositories with the old version's hot
    /// keys, then take traffic.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "users", ttl = "10m")]
    /// # pub struct User { #[partition_key] pub id: uuid::Uuid, pub name: String }
    /// # async fn demo(users: Repository<User>) -> Result<(), cachefw_cassandra::Error> {
    /// let loaded = users.warm(1_000).await?;
    /// println!("{loaded} rows loaded before taking traffic");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Cache`] when the hot keys cannot be read; a Cassandra
    /// failure as [`find_many`](Self::find_many) returns it.
    pub async fn warm(&self, n: usize) -> Result<u64, Error> {
        crate::changes::warm(&self.reads(), n).await
    }

    /// Every row of `partition`, in clustering order, fetched page by page;
    /// cached as a whole when the entity has `cache_partitions = true`, for
    /// the entity's TTL or until its first row expires.
    ///
    /// # Errors
    ///
    /// When Cassandra fails.
    pub async fn find_partition(&self, partition: &T::Partition) -> Result<Vec<T>, Error> {
        self.reads().find_partition(partition).await
    }

    /// One page of `partition` of at most `page_size` rows, starting where
    /// `from` left off (the first page for `None`). Not cached.
    ///
    /// # Errors
    ///
    /// When Cassandra fails.
    pub async fn find_partition_page(
        &self,
        partition: &T::Partition,
        page_size: i32,
        from: Option<&PageToken>,
    ) -> Result<Page<T>, Error> {
        page::find_partition_page(&self.table, partition, page_size, from).await
    }

    /// Writes every entity, in logged batches of [`batch_rows`](Self::batch_rows)
    /// rows ([`SAVE_ALL_CHUNK`] by default), straight to Cassandra in every
    /// write mode. After each batch, with invalidation, its rows' cached
    /// entries are evicted in one call of the cache; with write-through and
    /// write-behind the batch carries the call's timestamp and each row is
    /// stored as that version of its entry, unless a newer write of it is
    /// stored already (an older save still on its way, in flight or in the
    /// stream, then neither overwrites the row in Cassandra nor in the
    /// cache). A key given twice in one batch is evicted instead: both rows
    /// carry one timestamp, and Cassandra keeps the one whose values
    /// compare greater.
    ///
    /// Each batch is atomic; the whole is not: when a batch fails, the
    /// batches before it stay written (and evicted or stored).
    ///
    /// # Errors
    ///
    /// When a batch fails (the error names its rows); the batches after it
    /// are not written. Its entries are evicted unless Cassandra definitely
    /// refused it. [`Error::CounterTable`] for a table of counters.
    pub async fn save_all(&self, entities: &[T]) -> Result<(), Error> {
        refuse_counters::<T>("save_all", "Cassandra cannot INSERT into it")?;
        if let Some(hashed) = self.hashed() {
            return hashed.save_all(entities, self.batch_rows).await;
        }
        self.writes().save_all(entities, self.batch_rows).await
    }

    /// The cache this repository reads through.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Sets how long a write-behind record may stay unacknowledged by the
    /// flusher that took it (dead, or stuck) before the flushers this
    /// repository spawns take it over ([`DEFAULT_CLAIM_IDLE`], 30 s, by
    /// default). Shorter takes over sooner, and may write a record twice
    /// (harmless: the same timestamp) while a slow flusher still holds it.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// # pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub total: i64 }
    /// # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
    /// # -> Result<(), cachefw_cassandra::Error> {
    /// let carts = Repository::<Cart>::new(session, cache)
    ///     .await?
    ///     .flusher_claim_idle(Duration::from_secs(10));
    /// # let _ = carts; Ok(()) }
    /// ```
    #[must_use]
    pub fn flusher_claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle.max(Duration::from_millis(1));
        self
    }

    /// Starts a flusher of this table's write-behind stream on the current
    /// tokio runtime: it writes the records to Cassandra, each with its own
    /// timestamp, settles their cache entries and acknowledges them. Start
    /// any number, in any processes: they share the records (one Redis
    /// consumer group), and take over those of a flusher that died after
    /// the claim idle time. `abort()` on the handle stops it; the records
    /// it held are taken over by another. Over an in-memory cache there is
    /// nothing to flush and the task ends at once.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// # pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub total: i64 }
    /// # async fn demo(carts: Repository<Cart>) {
    /// let flusher = carts.spawn_flusher();
    /// // … at shutdown, once the backlog is empty:
    /// flusher.abort();
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        behind::spawn_flusher(
            self.table.clone(),
            &self.cache,
            &self.stream,
            self.claim_idle,
            self.dead_after,
        )
    }

    /// Sets how long Cassandra may refuse a write-behind record before the
    /// flushers this repository spawns move it to the dead-letter stream
    /// ([`DEFAULT_DEAD_LETTER_AFTER`](crate::DEFAULT_DEAD_LETTER_AFTER),
    /// 24 h, by default). Until then every refusal, of any kind, is
    /// retried with a backoff of at most 30 s, and reads keep seeing the
    /// pending write.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// # pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub total: i64 }
    /// # async fn demo(session: std::sync::Arc<scylla::client::session::Session>, cache: cachefw::Cache)
    /// # -> Result<(), cachefw_cassandra::Error> {
    /// let carts = Repository::<Cart>::new(session, cache)
    ///     .await?
    ///     .dead_letter_after(Duration::from_secs(3600));
    /// # let _ = carts; Ok(()) }
    /// ```
    #[must_use]
    pub fn dead_letter_after(mut self, after: Duration) -> Self {
        self.dead_after = after;
        self
    }

    /// Moves every dead letter of this table's write-behind stream back
    /// into the stream, for the flushers to write (with the timestamps
    /// they were saved with), once the cause of the refusals is fixed;
    /// returns how many were moved. Calls from several processes take
    /// turns, so that each letter is moved once. Always 0 over an
    /// in-memory cache.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// # pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub total: i64 }
    /// # async fn demo(carts: Repository<Cart>) -> Result<(), cachefw_cassandra::Error> {
    /// if carts.backlog().await?.dead > 0 {
    ///     // … after the migration that was missing:
    ///     let moved = carts.replay_dead().await?;
    ///     eprintln!("{moved} dead letters go back to the flushers");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Stream`] when Redis does not answer (the letters moved
    /// before stay moved; the others stay dead letters).
    pub async fn replay_dead(&self) -> Result<u64, Error> {
        behind::replay_dead(&self.cache, &self.stream)
            .await
            .map_err(|source| Error::Stream {
                table: T::TABLE,
                source: Box::new(source),
            })
    }

    /// How many write-behind records wait for a flusher, and how long ago
    /// the oldest was written, and how many are dead letters (also
    /// published as the gauges `cachefw_writebehind_pending`,
    /// `cachefw_writebehind_oldest_seconds` and `cachefw_writebehind_dead`,
    /// label `table`, through the `metrics` facade; flushers count
    /// Cassandra's refusals in `cachefw_writebehind_refusals_total`, labels
    /// `table` and `kind`). Always empty over an in-memory cache.
    ///
    /// ```no_run
    /// # use cachefw_cassandra::{Entity, Repository};
    /// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize, Entity)]
    /// # #[entity(keyspace = "shop", table = "carts", ttl = "10m", write = "behind")]
    /// # pub struct Cart { #[partition_key] pub id: uuid::Uuid, pub total: i64 }
    /// # async fn demo(carts: Repository<Cart>) -> Result<(), cachefw_cassandra::Error> {
    /// let backlog = carts.backlog().await?;
    /// if backlog.oldest.is_some_and(|age| age.as_secs() > 60) {
    ///     eprintln!("{} writes wait for Cassandra", backlog.pending);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Stream`] when Redis does not answer.
    pub async fn backlog(&self) -> Result<Backlog, Error> {
        behind::backlog::<T>(&self.cache, &self.stream)
            .await
            .map_err(|source| Error::Stream {
                table: T::TABLE,
                source: Box::new(source),
            })
    }
}
