//! [`Repository`]: an entity's table read through the cache; writes go to
//! Cassandra first, then evict the cached entries they change.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use cachefw::Cache;
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use tokio::sync::OnceCell;

use crate::{Entity, Error};

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

/// Each statement, prepared on first use.
#[derive(Default)]
struct Prepared {
    insert: OnceCell<PreparedStatement>,
    insert_with_ttl: OnceCell<PreparedStatement>,
    insert_if_not_exists: OnceCell<PreparedStatement>,
    select: OnceCell<PreparedStatement>,
    delete: OnceCell<PreparedStatement>,
    select_partition: OnceCell<PreparedStatement>,
}

/// The table of entity `T`, read through a [`Cache`].
///
/// Reads go through the cache under the entity's key
/// (`{table}:{pk…}:{ck…}`) for the entity's TTL; writes go to Cassandra first
/// and then evict the cached entry (and the partition's, when partitions are
/// cached), so the cache never holds a value the database did not accept. A
/// cache failure never fails a call.
pub struct Repository<T: Entity> {
    session: Arc<Session>,
    cache: Cache,
    prepared: Prepared,
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
            entity: PhantomData,
        };
        if let Err(error) = repository.prepare_all().await {
            // Before `create_table` the table may not exist yet.
            tracing::debug!(%error, "cachefw-cassandra: statements are prepared on first use");
        }
        Ok(repository)
    }

    async fn prepare_all(&self) -> Result<(), Error> {
        let cql = T::CQL;
        let p = &self.prepared;
        for (cell, statement) in [
            (&p.insert, cql.insert),
            (&p.insert_with_ttl, cql.insert_with_ttl),
            (&p.insert_if_not_exists, cql.insert_if_not_exists),
            (&p.select, cql.select),
            (&p.delete, cql.delete),
            (&p.select_partition, cql.select_partition),
        ] {
            self.prepared(cell, statement).await?;
        }
        Ok(())
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
                .map_err(|source| Error::Prepare {
                    statement,
                    source: Box::new(source),
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
            .map_err(|source| Error::execute(statement, source))?;
        self.prepare_all().await
    }

    /// Writes `entity`, then evicts its cached entries.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the write (nothing is evicted then).
    pub async fn save(&self, entity: &T) -> Result<(), Error> {
        let statement = self.prepared(&self.prepared.insert, T::CQL.insert).await?;
        self.session
            .execute_unpaged(statement, entity.values())
            .await
            .map_err(|source| Error::execute(T::CQL.insert, source))?;
        self.evict(&entity.key()).await;
        Ok(())
    }

    /// Writes `entity` with `USING TTL` (whole seconds, rounded up), then
    /// evicts its cached entries.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the write.
    pub async fn save_with_ttl(&self, entity: &T, ttl: Duration) -> Result<(), Error> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds = i32::try_from(seconds.max(1)).unwrap_or(i32::MAX);
        let cql = T::CQL.insert_with_ttl;
        let statement = self.prepared(&self.prepared.insert_with_ttl, cql).await?;
        self.session
            .execute_unpaged(statement, entity.values_with_ttl(seconds))
            .await
            .map_err(|source| Error::execute(cql, source))?;
        self.evict(&entity.key()).await;
        Ok(())
    }

    /// Writes `entity` only if no row has its key (a lightweight
    /// transaction); returns whether it was written.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the statement or answers without `[applied]`.
    pub async fn insert_if_not_exists(&self, entity: &T) -> Result<bool, Error> {
        let cql = T::CQL.insert_if_not_exists;
        let statement = self
            .prepared(&self.prepared.insert_if_not_exists, cql)
            .await?;
        let result = self
            .session
            .execute_unpaged(statement, entity.values())
            .await
            .map_err(|source| Error::execute(cql, source))?;
        let row = result
            .into_rows_result()
            .map_err(|source| Error::execute(cql, source))?
            .maybe_first_row::<Row>()
            .map_err(|source| Error::execute(cql, source))?;
        let applied = match row.as_ref().and_then(|row| row.columns.first()) {
            Some(Some(CqlValue::Boolean(applied))) => *applied,
            _ => return Err(Error::NoApplied { statement: cql }),
        };
        if applied {
            self.evict(&entity.key()).await;
        }
        Ok(applied)
    }

    /// The row with `key`: from the cache, or from Cassandra and then
    /// cached for the entity's TTL. A missing row is not cached.
    ///
    /// # Errors
    ///
    /// When Cassandra fails; a cache failure is served from Cassandra.
    pub async fn find(&self, key: &T::Key) -> Result<Option<T>, Error> {
        self.cache
            .get_or_load_optional(&T::cache_key(key), T::TTL, None, || async {
                let cql = T::CQL.select;
                let statement = self.prepared(&self.prepared.select, cql).await?;
                let row = self
                    .session
                    .execute_unpaged(statement, T::key_values(key))
                    .await
                    .map_err(|source| Error::execute(cql, source))?
                    .into_rows_result()
                    .map_err(|source| Error::execute(cql, source))?
                    .maybe_first_row::<T::Row>()
                    .map_err(|source| Error::execute(cql, source))?;
                Ok(row.map(T::from_row))
            })
            .await
    }

    /// Deletes the row with `key`, then evicts its cached entries.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the delete.
    pub async fn delete(&self, key: &T::Key) -> Result<(), Error> {
        let cql = T::CQL.delete;
        let statement = self.prepared(&self.prepared.delete, cql).await?;
        self.session
            .execute_unpaged(statement, T::key_values(key))
            .await
            .map_err(|source| Error::execute(cql, source))?;
        self.evict(key).await;
        Ok(())
    }

    /// Every row of `partition`, in clustering order, fetched page by page;
    /// cached as a whole when the entity has `cache_partitions = true`.
    ///
    /// # Errors
    ///
    /// When Cassandra fails.
    pub async fn find_partition(&self, partition: &T::Partition) -> Result<Vec<T>, Error> {
        if !T::CACHE_PARTITIONS {
            return self.load_partition(partition).await;
        }
        self.cache
            .get_or_load(&T::partition_cache_key(partition), T::TTL, || {
                self.load_partition(partition)
            })
            .await
    }

    async fn load_partition(&self, partition: &T::Partition) -> Result<Vec<T>, Error> {
        let cql = T::CQL.select_partition;
        let statement = self.prepared(&self.prepared.select_partition, cql).await?;
        self.session
            .execute_iter(statement.clone(), T::partition_values(partition))
            .await
            .map_err(|source| Error::execute(cql, source))?
            .rows_stream::<T::Row>()
            .map_err(|source| Error::execute(cql, source))?
            .map_ok(T::from_row)
            .try_collect()
            .await
            .map_err(|source| Error::execute(cql, source))
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
            .prepared(&self.prepared.select_partition, cql)
            .await?
            .clone();
        statement.set_page_size(page_size.max(1));
        let state = from.map_or_else(PagingState::start, |token| token.0.clone());
        let (result, next) = self
            .session
            .execute_single_page(&statement, T::partition_values(partition), state)
            .await
            .map_err(|source| Error::execute(cql, source))?;
        let rows = result
            .into_rows_result()
            .map_err(|source| Error::execute(cql, source))?
            .rows::<T::Row>()
            .map_err(|source| Error::execute(cql, source))?
            .map(|row| row.map(T::from_row))
            .collect::<Result<Vec<T>, _>>()
            .map_err(|source| Error::execute(cql, source))?;
        let next = match next {
            PagingStateResponse::HasMorePages { state } => Some(PageToken(state)),
            PagingStateResponse::NoMorePages => None,
        };
        Ok(Page { rows, next })
    }

    /// Writes every entity in one logged batch, then evicts their cached
    /// entries.
    ///
    /// # Errors
    ///
    /// When Cassandra refuses the batch (nothing is evicted then).
    pub async fn save_all(&self, entities: &[T]) -> Result<(), Error> {
        if entities.is_empty() {
            return Ok(());
        }
        let statement = self.prepared(&self.prepared.insert, T::CQL.insert).await?;
        let mut batch = Batch::new(BatchType::Logged);
        for _ in entities {
            batch.append_statement(statement.clone());
        }
        let values: Vec<_> = entities.iter().map(Entity::values).collect();
        self.session
            .batch(&batch, values)
            .await
            .map_err(|source| Error::execute(format!("BATCH of {}", T::CQL.insert), source))?;
        for entity in entities {
            self.evict(&entity.key()).await;
        }
        Ok(())
    }

    /// The cache this repository reads through.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Evicts the row's entry, and its partition's when partitions are
    /// cached. A cache failure is the cache's to count and log.
    async fn evict(&self, key: &T::Key) {
        let _ = self.cache.delete(&T::cache_key(key)).await;
        if T::CACHE_PARTITIONS {
            let partition = T::partition_of(key);
            let _ = self.cache.delete(&T::partition_cache_key(&partition)).await;
        }
    }
}
