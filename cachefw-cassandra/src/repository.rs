//! [`Repository`]: an entity's table read through the cache; writes go to
//! Cassandra first, then evict the cached entries they may have changed.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefw::Cache;
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tokio::sync::OnceCell;

use crate::bind::Then;
use crate::entity::Entity;
use crate::error::Error;
use crate::evict::Eviction;
use crate::life;
use crate::outcome::{self, Outcome};
use crate::row::Timed;
use crate::through::{self, Read};

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

/// Where a [`Repository::find_partition_page`] left off: pass it back for the
/// next page. Its bytes can travel through an API (base64 them) and come
/// back with [`PageToken::from_bytes`].
#[derive(Clone, Debug)]
pub struct PageToken(PagingState);

impl PageToken {
    /// The token's bytes, opaque.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0
            .as_bytes_slice()
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default()
    }

    /// A token from bytes given out by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(PagingState::new_from_raw_bytes(bytes))
    }
}

/// One page of a partition, and the token of the next if there is one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The rows, in clustering order.
    pub rows: Vec<T>,
    /// The token of the next page; `None` on the last.
    pub next: Option<PageToken>,
}

/// A select as prepared: with the `TTL()` columns, or without them on a
/// server that cannot parse them.
struct Select {
    statement: PreparedStatement,
    text: &'static str,
    reads_ttl: bool,
}

/// Each statement, prepared on first use.
#[derive(Default)]
struct Prepared {
    insert: OnceCell<PreparedStatement>,
    insert_with_ttl: OnceCell<PreparedStatement>,
    insert_if_not_exists: OnceCell<PreparedStatement>,
    select: OnceCell<Select>,
    delete: OnceCell<PreparedStatement>,
    select_partition: OnceCell<Select>,
    select_partition_page: OnceCell<PreparedStatement>,
}

/// The table of entity `T`, read through a [`Cache`].
///
/// Reads go through the cache under the entity's key
/// (`{table}:{pk…}:{ck…}`) for the entity's TTL, or for less when the row
/// expires sooner (its `TTL()` is read with it), so a cached row never
/// outlives the row. Writes go to Cassandra first and then evict the cached
/// entry (and the partition's, when partitions are cached): after a
/// success, and after a timeout or any failure that may hide an applied
/// write; only a write Cassandra refused leaves the entries alone. A cache
/// failure never fails a call.
pub struct Repository<T: Entity> {
    session: Arc<Session>,
    cache: Cache,
    prepared: Prepared,
    batch_rows: usize,
    entity: PhantomData<fn() -> T>,
}

impl<T: Entity> Repository<T> {
    /// A repository over `session`, reading through `cache`. Prepares every
    /// statement now if the table exists; otherwise (before
    /// [`create_table`](Self::create_table)) on first use.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for checks of the session.
    pub async fn new(session: Arc<Session>, cache: Cache) -> Result<Self, Error> {
        let repository = Self {
            session,
            cache,
            prepared: Prepared::default(),
            batch_rows: SAVE_ALL_CHUNK,
            entity: PhantomData,
        };
        if let Err(error) = repository.prepare_all().await {
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

    async fn prepare_all(&self) -> Result<(), Error> {
        let cql = T::CQL;
        let p = &self.prepared;
        for (cell, statement) in [
            (&p.insert, cql.insert),
            (&p.insert_with_ttl, cql.insert_with_ttl),
            (&p.insert_if_not_exists, cql.insert_if_not_exists),
            (&p.delete, cql.delete),
            (&p.select_partition_page, cql.select_partition),
        ] {
            self.prepared(cell, statement).await?;
        }
        self.select(&p.select, cql.select_with_ttl, cql.select)
            .await?;
        self.select(
            &p.select_partition,
            cql.select_partition_with_ttl,
            cql.select_partition,
        )
        .await?;
        Ok(())
    }

    fn table() -> (&'static str, &'static str) {
        (T::KEYSPACE, T::TABLE)
    }

    async fn prepared<'a>(
        &self,
        cell: &'a OnceCell<PreparedStatement>,
        statement: &'static str,
    ) -> Result<&'a PreparedStatement, Error> {
        cell.get_or_try_init(|| async {
            self.session
                .prepare(statement)
                .await
                .map_err(|source| Error::prepare(Self::table(), statement, source))
        })
        .await
    }

    /// The select with its `TTL()` columns, or the plain one on a server
    /// that cannot parse `TTL()` (kassandra, which never expires rows
    /// either) or for an entity with no column whose `TTL()` can be read.
    async fn select<'a>(
        &self,
        cell: &'a OnceCell<Select>,
        with_ttl: Option<&'static str>,
        plain: &'static str,
    ) -> Result<&'a Select, Error> {
        cell.get_or_try_init(|| async {
            if let Some(text) = with_ttl {
                match self.session.prepare(text).await {
                    Ok(statement) => {
                        return Ok(Select {
                            statement,
                            text,
                            reads_ttl: true,
                        });
                    }
                    Err(error) if !unparsable(&error) => {
                        return Err(Error::prepare(Self::table(), text, error));
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        statement = text,
                        "cachefw-cassandra: the server cannot read TTL(); rows are cached \
                         for the entity's TTL and save_with_ttl is refused"
                    ),
                }
            }
            let statement = self
                .session
                .prepare(plain)
                .await
                .map_err(|source| Error::prepare(Self::table(), plain, source))?;
            Ok(Select {
                statement,
                text: plain,
                reads_ttl: false,
            })
        })
        .await
    }

    /// Creates the table if it does not exist, then prepares the statements.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the DDL or a statement.
    pub async fn create_table(&self) -> Result<(), Error> {
        let statement = T::CQL.create_table;
        self.session
            .query_unpaged(statement, &[])
            .await
            .map_err(|source| Error::execution(Self::table(), statement, source))?;
        self.prepare_all().await
    }

    /// The cache keys a write of the row with `key` may change.
    fn keys_of(key: &T::Key) -> [Option<String>; 2] {
        let partition = T::CACHE_PARTITIONS.then(|| T::partition_cache_key(&T::partition_of(key)));
        [Some(T::cache_key(key)), partition]
    }

    fn eviction(&self, keys: impl IntoIterator<Item = T::Key>) -> Eviction {
        let keys = keys
            .into_iter()
            .flat_map(|key| Self::keys_of(&key))
            .flatten()
            .collect();
        Eviction::new(&self.cache, keys)
    }

    /// Runs one write, then evicts `eviction`'s entries unless Cassandra
    /// refused the write.
    async fn write(
        &self,
        cql: &'static str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        eviction: Eviction,
    ) -> Result<(), Error> {
        match self.session.execute_unpaged(statement, values).await {
            Ok(_) => {
                eviction.run().await;
                Ok(())
            }
            Err(error) => {
                settle(eviction, outcome::of(&error)).await;
                Err(Error::execution(Self::table(), cql, error))
            }
        }
    }

    /// Writes `entity`, then evicts its cached entries.
    ///
    /// # Errors
    ///
    /// When the write fails. Its entries are evicted all the same unless
    /// Cassandra definitely refused it (a timeout may hide a write).
    pub async fn save(&self, entity: &T) -> Result<(), Error> {
        let cql = T::CQL.insert;
        let statement = self.prepared(&self.prepared.insert, cql).await?;
        let eviction = self.eviction([entity.key()]);
        self.write(cql, statement, entity.values(), eviction).await
    }

    /// Writes `entity` with `USING TTL` (whole seconds, rounded up), then
    /// evicts its cached entries. A later [`find`](Self::find) reads the
    /// row's `TTL()` and caches it for the entity's TTL or until the row
    /// expires, whichever comes first.
    ///
    /// # Errors
    ///
    /// [`Error::RowTtl`], before writing, when a cached copy could outlive
    /// the row: the entity has no column whose `TTL()` tells the row's
    /// ([`Statements::select_with_ttl`](crate::Statements::select_with_ttl)
    /// is `None`), or the server cannot read `TTL()` or ignores `USING TTL`.
    /// Otherwise as [`save`](Self::save).
    pub async fn save_with_ttl(&self, entity: &T, ttl: Duration) -> Result<(), Error> {
        let refuse = |reason| Error::RowTtl {
            table: T::TABLE,
            reason,
        };
        if T::CQL.select_with_ttl.is_none() {
            return Err(refuse(
                "the entity has no regular column that is neither an Option nor a \
                 collection, so the row's TTL() cannot be read back",
            ));
        }
        let select = self
            .select(&self.prepared.select, T::CQL.select_with_ttl, T::CQL.select)
            .await?;
        if !select.reads_ttl {
            return Err(refuse("the server cannot read TTL()"));
        }
        let cql = T::CQL.insert_with_ttl;
        let statement = self.prepared(&self.prepared.insert_with_ttl, cql).await?;
        if statement.get_variable_col_specs().len() != T::COLUMNS + 1 {
            return Err(refuse("the server ignores `USING TTL ?` in an INSERT"));
        }
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        // Past i32::MAX seconds Cassandra refuses the TTL itself (its limit
        // is 20 years), which is the error to show.
        let seconds = i32::try_from(seconds.max(1)).unwrap_or(i32::MAX);
        let values = Then {
            row: entity.values(),
            last: seconds,
        };
        let eviction = self.eviction([entity.key()]);
        self.write(cql, statement, values, eviction).await
    }

    /// Writes `entity` only if no row has its key (a lightweight
    /// transaction); returns whether it was written.
    ///
    /// # Errors
    ///
    /// When Cassandra fails or answers without `[applied]`. The entries are
    /// evicted when the outcome is unknown, as by [`save`](Self::save).
    pub async fn insert_if_not_exists(&self, entity: &T) -> Result<bool, Error> {
        let cql = T::CQL.insert_if_not_exists;
        let statement = self
            .prepared(&self.prepared.insert_if_not_exists, cql)
            .await?;
        let eviction = self.eviction([entity.key()]);
        let result = match self
            .session
            .execute_unpaged(statement, entity.values())
            .await
        {
            Ok(result) => result,
            Err(error) => {
                settle(eviction, outcome::of(&error)).await;
                return Err(Error::execution(Self::table(), cql, error));
            }
        };
        let applied = result
            .into_rows_result()
            .map_err(|source| Error::execute(cql, source))
            .and_then(|rows| {
                rows.maybe_first_row::<Row>()
                    .map_err(|source| Error::execute(cql, source))
            })
            .and_then(
                |row| match row.as_ref().and_then(|row| row.columns.first()) {
                    Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
                    _ => Err(Error::NoApplied { statement: cql }),
                },
            );
        match applied {
            Ok(false) => eviction.disarm(),
            // Applied, or answered without saying: the row may be new.
            Ok(true) | Err(_) => eviction.run().await,
        }
        applied
    }

    /// The row with `key`: from the cache, or from Cassandra and then
    /// cached for the entity's TTL, or until the row expires if that comes
    /// sooner. A missing row is not cached.
    ///
    /// # Errors
    ///
    /// When Cassandra fails; a cache failure is served from Cassandra.
    pub async fn find(&self, key: &T::Key) -> Result<Option<T>, Error> {
        through::read_through(&self.cache, &T::cache_key(key), T::TTL, || {
            self.load_row(key)
        })
        .await
    }

    async fn load_row(&self, key: &T::Key) -> Result<Read<T>, Error> {
        let select = self
            .select(&self.prepared.select, T::CQL.select_with_ttl, T::CQL.select)
            .await?;
        let sent = Instant::now();
        let row = self
            .session
            .execute_unpaged(&select.statement, T::key_values(key))
            .await
            .map_err(|source| Error::execution(Self::table(), select.text, source))?
            .into_rows_result()
            .map_err(|source| Error::execute(select.text, source))?
            .maybe_first_row::<Timed<T>>()
            .map_err(|source| Error::execute(select.text, source))?;
        Ok(match row {
            Some(row) => Read {
                expiry: row.ttl_seconds.map(|ttl| life::expiry(sent, ttl)),
                value: Some(row.entity),
            },
            None => Read {
                value: None,
                expiry: None,
            },
        })
    }

    /// Deletes the row with `key`, then evicts its cached entries.
    ///
    /// # Errors
    ///
    /// When the delete fails; the entries are evicted unless Cassandra
    /// definitely refused it.
    pub async fn delete(&self, key: &T::Key) -> Result<(), Error> {
        let cql = T::CQL.delete;
        let statement = self.prepared(&self.prepared.delete, cql).await?;
        let eviction = self.eviction([key.clone()]);
        self.write(cql, statement, T::key_values(key), eviction)
            .await
    }

    /// Every row of `partition`, in clustering order, fetched page by page;
    /// cached as a whole when the entity has `cache_partitions = true`, for
    /// the entity's TTL or until its first row expires.
    ///
    /// # Errors
    ///
    /// When Cassandra fails.
    pub async fn find_partition(&self, partition: &T::Partition) -> Result<Vec<T>, Error> {
        if !T::CACHE_PARTITIONS {
            // Not cached: the rows' TTLs are not needed.
            let cql = T::CQL.select_partition;
            let statement = self
                .prepared(&self.prepared.select_partition_page, cql)
                .await?;
            let read = self.load_partition(partition, statement, cql).await?;
            return Ok(read.value.unwrap_or_default());
        }
        let key = T::partition_cache_key(partition);
        let rows = through::read_through(&self.cache, &key, T::TTL, || async {
            let select = self
                .select(
                    &self.prepared.select_partition,
                    T::CQL.select_partition_with_ttl,
                    T::CQL.select_partition,
                )
                .await?;
            self.load_partition(partition, &select.statement, select.text)
                .await
        })
        .await?;
        Ok(rows.unwrap_or_default())
    }

    /// Every row of `partition` through `statement` (text `cql`), page by
    /// page, and the earliest any of them expires.
    async fn load_partition(
        &self,
        partition: &T::Partition,
        statement: &PreparedStatement,
        cql: &'static str,
    ) -> Result<Read<Vec<T>>, Error> {
        let sent = Instant::now();
        let rows: Vec<Timed<T>> = self
            .session
            .execute_iter(statement.clone(), T::partition_values(partition))
            .await
            .map_err(|source| Error::execute(cql, source))?
            .rows_stream::<Timed<T>>()
            .map_err(|source| Error::execute(cql, source))?
            .try_collect()
            .await
            .map_err(|source| Error::execute(cql, source))?;
        let least = rows.iter().filter_map(|row| row.ttl_seconds).min();
        Ok(Read {
            value: Some(rows.into_iter().map(|row| row.entity).collect()),
            expiry: least.map(|ttl| life::expiry(sent, ttl)),
        })
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
        let cql = T::CQL.select_partition;
        let mut statement = self
            .prepared(&self.prepared.select_partition_page, cql)
            .await?
            .clone();
        statement.set_page_size(page_size.max(1));
        let state = from.map_or_else(PagingState::start, |token| token.0.clone());
        let (result, next) = self
            .session
            .execute_single_page(&statement, T::partition_values(partition), state)
            .await
            .map_err(|source| Error::execution(Self::table(), cql, source))?;
        let rows = result
            .into_rows_result()
            .map_err(|source| Error::execute(cql, source))?
            .rows::<Timed<T>>()
            .map_err(|source| Error::execute(cql, source))?
            .map(|row| row.map(|row| row.entity))
            .collect::<Result<Vec<T>, _>>()
            .map_err(|source| Error::execute(cql, source))?;
        let next = match next {
            PagingStateResponse::HasMorePages { state } => Some(PageToken(state)),
            PagingStateResponse::NoMorePages => None,
        };
        Ok(Page { rows, next })
    }

    /// Writes every entity, in logged batches of [`batch_rows`](Self::batch_rows)
    /// rows ([`SAVE_ALL_CHUNK`] by default), and after each batch evicts its
    /// rows' cached entries in one call of the cache.
    ///
    /// Each batch is atomic; the whole is not: when a batch fails, the
    /// batches before it stay written (and evicted).
    ///
    /// # Errors
    ///
    /// When a batch fails (the error names its rows); the batches after it
    /// are not written. Its entries are evicted unless Cassandra definitely
    /// refused it.
    pub async fn save_all(&self, entities: &[T]) -> Result<(), Error> {
        if entities.is_empty() {
            return Ok(());
        }
        let cql = T::CQL.insert;
        let statement = self.prepared(&self.prepared.insert, cql).await?;
        let mut start = 0;
        for chunk in entities.chunks(self.batch_rows) {
            let mut batch = Batch::new(BatchType::Logged);
            for _ in chunk {
                batch.append_statement(statement.clone());
            }
            let values: Vec<_> = chunk.iter().map(Entity::values).collect();
            let eviction = self.eviction(chunk.iter().map(Entity::key));
            let result = self.session.batch(&batch, values).await;
            let end = start + chunk.len();
            match result {
                Ok(_) => eviction.run().await,
                Err(error) => {
                    settle(eviction, outcome::of(&error)).await;
                    let statement =
                        format!("BATCH of rows {start}..{end} of {}: {cql}", entities.len());
                    return Err(Error::execution(Self::table(), statement, error));
                }
            }
            start = end;
        }
        Ok(())
    }

    /// The cache this repository reads through.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

/// Evicts after a failed write unless Cassandra refused it.
async fn settle(eviction: Eviction, outcome: Outcome) {
    match outcome {
        Outcome::Refused => eviction.disarm(),
        Outcome::Unknown => eviction.run_unsettled().await,
    }
}

/// Whether preparing failed because the server could not parse the text
/// (Cassandra answers `SyntaxError`, kassandra `ProtocolError`), rather than
/// because of the table.
fn unparsable(error: &PrepareError) -> bool {
    matches!(
        error,
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(
                DbError::SyntaxError | DbError::ProtocolError,
                _
            )
        }
    )
}
