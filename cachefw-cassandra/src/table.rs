//! [`Table`]: an entity's table as the driver sees it, shared by a
//! repository and its flushers: the session, the statements (prepared on
//! first use), the reads (a row, a partition, with the rows' `TTL()`), and
//! the writes that carry their own timestamp.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

use scylla::client::session::Session;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{Counter, CqlValue, Row};
use tokio::sync::OnceCell;

use crate::behind::columns::{Raw, Schema};
use crate::behind::record::Record;
use crate::bind::Then;
use crate::entity::Entity;
use crate::error::Error;
use crate::life;
use crate::outcome::{self, Effect};
use crate::patch::{self, Patched};
use crate::row::Timed;
use crate::through::Read;

/// A select as prepared: with the `TTL()` columns, or without them on a
/// server that cannot parse them.
pub(crate) struct Select {
    pub(crate) statement: PreparedStatement,
    pub(crate) text: &'static str,
    pub(crate) reads_ttl: bool,
}

/// Each statement, prepared on first use.
#[derive(Default)]
pub(crate) struct Prepared {
    pub(crate) insert: OnceCell<PreparedStatement>,
    pub(crate) insert_with_ttl: OnceCell<PreparedStatement>,
    pub(crate) insert_if_not_exists: OnceCell<PreparedStatement>,
    pub(crate) select: OnceCell<Select>,
    pub(crate) delete: OnceCell<PreparedStatement>,
    pub(crate) select_partition: OnceCell<Select>,
    pub(crate) select_partition_page: OnceCell<PreparedStatement>,
}

/// A write Cassandra did not confirm: the error, whether the row may have
/// changed anyway, and its kind (for the flusher's counters and logs).
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) outcome: Effect,
    pub(crate) kind: &'static str,
}

impl Failed {
    /// Preparing the statement failed: nothing was sent.
    fn prepare(error: Error) -> Self {
        Self {
            kind: error.prepare_kind(),
            outcome: Effect::Refused,
            error,
        }
    }
}

/// The table of entity `T`.
pub(crate) struct Table<T> {
    pub(crate) session: Arc<Session>,
    pub(crate) prepared: Prepared,
    /// `UPDATE … SET c = c + ?` of each counter, by their text.
    increments: Mutex<HashMap<&'static str, PreparedStatement>>,
    /// Statements built at run time, by their text: a patch's `UPDATE`
    /// per set of columns, a write-behind record's `INSERT` or `UPDATE` per
    /// kind and column set.
    dynamic: Mutex<HashMap<String, PreparedStatement>>,
    /// The entity's column types, for making records.
    schema: OnceLock<Result<Schema, String>>,
    entity: PhantomData<fn() -> T>,
}

impl<T: Entity> Table<T> {
    pub(crate) fn new(session: Arc<Session>) -> Self {
        Self {
            session,
            prepared: Prepared::default(),
            increments: Mutex::new(HashMap::new()),
            dynamic: Mutex::new(HashMap::new()),
            schema: OnceLock::new(),
            entity: PhantomData,
        }
    }

    /// `(keyspace, table)`, for errors.
    pub(crate) fn name() -> (&'static str, &'static str) {
        (T::KEYSPACE, T::TABLE)
    }

    /// Creates the table if it does not exist, then prepares the statements.
    pub(crate) async fn create(&self) -> Result<(), Error> {
        let statement = T::CQL.create_table;
        self.session
            .query_unpaged(statement, &[])
            .await
            .map_err(|source| Error::execution(Self::name(), statement, source))?;
        self.prepare_all().await
    }

    pub(crate) async fn prepare_all(&self) -> Result<(), Error> {
        let cql = T::CQL;
        let p = &self.prepared;
        let inserts = [
            (&p.insert, cql.insert),
            (&p.insert_with_ttl, cql.insert_with_ttl),
            (&p.insert_if_not_exists, cql.insert_if_not_exists),
        ];
        // Cassandra refuses to prepare an INSERT into a table of counters.
        let inserts = if T::COUNTERS.is_empty() {
            &inserts[..]
        } else {
            &[]
        };
        for (cell, statement) in inserts.iter().copied().chain([
            (&p.delete, cql.delete),
            (&p.select_partition_page, cql.select_partition),
        ]) {
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

    pub(crate) async fn prepared<'a>(
        &self,
        cell: &'a OnceCell<PreparedStatement>,
        statement: &'static str,
    ) -> Result<&'a PreparedStatement, Error> {
        cell.get_or_try_init(|| async {
            self.session
                .prepare(statement)
                .await
                .map_err(|source| Error::prepare(Self::name(), statement, source))
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
                        return Err(Error::prepare(Self::name(), text, error));
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
                .map_err(|source| Error::prepare(Self::name(), plain, source))?;
            Ok(Select {
                statement,
                text: plain,
                reads_ttl: false,
            })
        })
        .await
    }

    /// The row with `key`, and when it expires (from its `TTL()`, where
    /// the server reads it).
    pub(crate) async fn select_row(&self, key: &T::Key) -> Result<Read<T>, Error> {
        let select = self
            .select(&self.prepared.select, T::CQL.select_with_ttl, T::CQL.select)
            .await?;
        let sent = Instant::now();
        let row = self
            .session
            .execute_unpaged(&select.statement, T::key_values(key))
            .await
            .map_err(|source| Error::execution(Self::name(), select.text, source))?
            .into_rows_result()
            .map_err(|source| Error::statement(select.text, source))?
            .maybe_first_row::<Timed<T>>()
            .map_err(|source| Error::statement(select.text, source))?;
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

    /// Every row of `partition`, page by page, without their `TTL()`s
    /// (for a partition that is not cached: they are not needed).
    pub(crate) async fn select_partition_untimed(
        &self,
        partition: &T::Partition,
    ) -> Result<Read<Vec<T>>, Error> {
        let cql = T::CQL.select_partition;
        let statement = self
            .prepared(&self.prepared.select_partition_page, cql)
            .await?;
        self.select_partition_with(partition, statement, cql).await
    }

    /// Every row of `partition`, page by page, and the earliest any of them
    /// expires (from their `TTL()`, where the server reads it).
    pub(crate) async fn select_partition(
        &self,
        partition: &T::Partition,
    ) -> Result<Read<Vec<T>>, Error> {
        let select = self
            .select(
                &self.prepared.select_partition,
                T::CQL.select_partition_with_ttl,
                T::CQL.select_partition,
            )
            .await?;
        self.select_partition_with(partition, &select.statement, select.text)
            .await
    }

    /// Every row of `partition` through `statement` (text `cql`), page by
    /// page, and the earliest any of them expires.
    async fn select_partition_with(
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
            .map_err(|source| Error::statement(cql, source))?
            .rows_stream::<Timed<T>>()
            .map_err(|source| Error::statement(cql, source))?
            .try_collect()
            .await
            .map_err(|source| Error::statement(cql, source))?;
        let least = rows.iter().filter_map(|row| row.ttl_seconds).min();
        Ok(Read {
            value: Some(rows.into_iter().map(|row| row.entity).collect()),
            expiry: least.map(|ttl| life::expiry(sent, ttl)),
        })
    }

    /// The prepared `INSERT … USING TTL ?`, once it is known that a cached
    /// copy of a row written with it cannot outlive the row.
    ///
    /// # Errors
    ///
    /// [`Error::RowTtl`] when the entity has no column whose `TTL()` tells
    /// the row's, or the server cannot read `TTL()` or ignores `USING TTL`;
    /// when preparing fails.
    pub(crate) async fn insert_with_ttl_statement(&self) -> Result<&PreparedStatement, Error> {
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
        Ok(statement)
    }

    /// Runs one write with the timestamp `at` (µs since the epoch), if
    /// given: Cassandra keeps, cell by cell, the write with the highest.
    async fn execute_at(
        &self,
        cql: &str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        at: Option<i64>,
    ) -> Result<(), Failed> {
        let stamped;
        let statement = match at {
            Some(at) => {
                let mut copy = statement.clone();
                copy.set_timestamp(Some(at));
                // The same write with the same timestamp lands once, however
                // often it is sent: the driver may retry it after a timeout.
                copy.set_is_idempotent(true);
                stamped = copy;
                &stamped
            }
            None => statement,
        };
        self.session
            .execute_unpaged(statement, values)
            .await
            .map(|_| ())
            .map_err(|source| Failed {
                outcome: outcome::of(&source),
                kind: outcome::kind(&source),
                error: Error::execution(Self::name(), cql, source),
            })
    }

    /// `INSERT`s every column of `entity`.
    pub(crate) async fn insert_at(&self, entity: &T, at: Option<i64>) -> Result<(), Failed> {
        let cql = T::CQL.insert;
        let statement = self
            .prepared(&self.prepared.insert, cql)
            .await
            .map_err(Failed::prepare)?;
        self.execute_at(cql, statement, entity.values(), at).await
    }

    /// `INSERT`s every row of `rows` in one logged batch with the timestamp
    /// `at`; `label` names the rows in an error.
    pub(crate) async fn insert_batch_at(
        &self,
        rows: &[T],
        at: Option<i64>,
        label: impl FnOnce(&str) -> String,
    ) -> Result<(), Failed> {
        let cql = T::CQL.insert;
        let statement = self
            .prepared(&self.prepared.insert, cql)
            .await
            .map_err(Failed::prepare)?;
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_timestamp(at);
        for _ in rows {
            batch.append_statement(statement.clone());
        }
        let values: Vec<_> = rows.iter().map(Entity::values).collect();
        self.session
            .batch(&batch, values)
            .await
            .map(|_| ())
            .map_err(|source| Failed {
                outcome: outcome::of(&source),
                kind: outcome::kind(&source),
                error: Error::execution(Self::name(), label(cql), source),
            })
    }

    /// `INSERT … USING TTL ?` of `row`, living `ttl` (in whole seconds,
    /// rounded up, at least one), with the timestamp `at`. `statement` is
    /// the prepared `insert_with_ttl`.
    pub(crate) async fn insert_with_ttl_at(
        &self,
        statement: &PreparedStatement,
        row: &T,
        ttl: Duration,
        at: Option<i64>,
    ) -> Result<(), Failed> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        // Past i32::MAX seconds Cassandra refuses the TTL itself (its limit
        // is 20 years), which is the error to show.
        let seconds = i32::try_from(seconds.max(1)).unwrap_or(i32::MAX);
        let values = Then {
            row: row.values(),
            last: seconds,
        };
        self.execute_at(T::CQL.insert_with_ttl, statement, values, at)
            .await
    }

    /// `INSERT … IF NOT EXISTS` of `row`: whether Cassandra applied it. A
    /// conditional write carries the coordinator's timestamp (Cassandra
    /// refuses a client's), so none is set.
    pub(crate) async fn insert_if_not_exists(&self, row: &T) -> Result<bool, Failed> {
        let cql = T::CQL.insert_if_not_exists;
        let statement = self
            .prepared(&self.prepared.insert_if_not_exists, cql)
            .await
            .map_err(Failed::prepare)?;
        let result = self
            .session
            .execute_unpaged(statement, row.values())
            .await
            .map_err(|source| Failed {
                outcome: outcome::of(&source),
                kind: outcome::kind(&source),
                error: Error::execution(Self::name(), cql, source),
            })?;
        // Written, or maybe written, without saying whether: as a write of
        // unknown outcome.
        let unknown = |error| Failed {
            outcome: Effect::Unknown,
            kind: "other",
            error,
        };
        // An answer that is not rows (kassandra's, which drops the
        // condition) has no `[applied]` either.
        let Ok(rows) = result.into_rows_result() else {
            return Err(unknown(Error::NoApplied { statement: cql }));
        };
        let row = rows
            .maybe_first_row::<Row>()
            .map_err(|source| unknown(Error::statement(cql, source)))?;
        match row.as_ref().and_then(|row| row.columns.first()) {
            Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
            _ => Err(unknown(Error::NoApplied { statement: cql })),
        }
    }

    /// `UPDATE … SET c = c + ?` of the counter `counter` of the row with
    /// `key`, by `by`. An increment is not idempotent: the statement stays
    /// unmarked, so the driver never sends it again after a timeout (which
    /// may hide an applied increment), and no client timestamp is set
    /// (Cassandra orders counter updates itself).
    pub(crate) async fn increment(
        &self,
        key: &T::Key,
        counter: T::Counter,
        by: i64,
    ) -> Result<(), Failed> {
        let cql = T::increment_cql(counter);
        let statement = self
            .increment_statement(cql)
            .await
            .map_err(Failed::prepare)?;
        let amount = Counter(by);
        let values = Patched {
            set: &[&amount],
            key: T::key_values(key),
        };
        self.execute_at(cql, &statement, values, None).await
    }

    async fn increment_statement(&self, cql: &'static str) -> Result<PreparedStatement, Error> {
        let known = self
            .increments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cql)
            .cloned();
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self
            .session
            .prepare(cql)
            .await
            .map_err(|source| Error::prepare(Self::name(), cql, source))?;
        self.increments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cql, statement.clone());
        Ok(statement)
    }

    /// The entity's column types, parsed once; why not, if they do not
    /// parse (then records cannot be made, and saves write Cassandra).
    pub(crate) fn schema(&self) -> Result<&Schema, &str> {
        self.schema
            .get_or_init(Schema::of::<T>)
            .as_ref()
            .map_err(String::as_str)
    }

    /// Writes a write-behind record with its timestamp: an `INSERT` of
    /// the columns a save carries, an `UPDATE` of those a patch sets,
    /// whatever columns the entity has in this process.
    pub(crate) async fn write_record(&self, record: &Record) -> Result<(), Failed> {
        let table = T::CQL.update.trim_start_matches("UPDATE ");
        let cql = if record.save {
            let names: Vec<&str> = record
                .key
                .iter()
                .chain(&record.set)
                .map(|(name, _)| name.as_str())
                .collect();
            let markers = vec!["?"; names.len()].join(", ");
            format!(
                "INSERT INTO {table} ({}) VALUES ({markers})",
                names.join(", ")
            )
        } else {
            let set: Vec<&str> = record.set.iter().map(|(name, _)| name.as_str()).collect();
            let key: Vec<String> = record
                .key
                .iter()
                .map(|(name, _)| format!("{name} = ?"))
                .collect();
            patch::update_cql(T::CQL.update, &set, &key.join(" AND "))
        };
        let statement = self
            .dynamic_statement(&cql)
            .await
            .map_err(Failed::prepare)?;
        let cells: Vec<&[u8]> = if record.save {
            record
                .key
                .iter()
                .chain(&record.set)
                .map(|(_, c)| c.as_slice())
                .collect()
        } else {
            record
                .set
                .iter()
                .chain(&record.key)
                .map(|(_, c)| c.as_slice())
                .collect()
        };
        self.execute_at(&cql, &statement, Raw(cells), Some(record.at))
            .await
    }

    /// A statement built at run time (a patch's `UPDATE`, a record's
    /// write), prepared once per text.
    async fn dynamic_statement(&self, cql: &str) -> Result<PreparedStatement, Error> {
        let known = self
            .dynamic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cql)
            .cloned();
        if let Some(statement) = known {
            return Ok(statement);
        }
        let statement = self
            .session
            .prepare(cql.to_owned())
            .await
            .map_err(|source| Error::prepare_dynamic(Self::name(), cql, source))?;
        self.dynamic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// `DELETE`s the row with `key`.
    pub(crate) async fn delete_at(&self, key: &T::Key, at: Option<i64>) -> Result<(), Failed> {
        let cql = T::CQL.delete;
        let statement = self
            .prepared(&self.prepared.delete, cql)
            .await
            .map_err(Failed::prepare)?;
        self.execute_at(cql, statement, T::key_values(key), at)
            .await
    }

    /// `UPDATE … SET` of the columns `patch` gives, of the row with `key`;
    /// nothing for an empty patch.
    pub(crate) async fn update_at(
        &self,
        key: &T::Key,
        patch: &T::Patch,
        at: Option<i64>,
    ) -> Result<(), Failed> {
        let set = T::patch_values(patch);
        if set.columns().is_empty() {
            return Ok(());
        }
        let cql = patch::update_cql(T::CQL.update, set.columns(), T::CQL.key_condition);
        let statement = self
            .dynamic_statement(&cql)
            .await
            .map_err(Failed::prepare)?;
        let values = Patched {
            set: set.values(),
            key: T::key_values(key),
        };
        self.execute_at(&cql, &statement, values, at).await
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
