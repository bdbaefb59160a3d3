//! The errors of the Cassandra calls, each with the statement it ran.

use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};

/// A Cassandra call that failed, with the statement it ran.
///
/// Cache failures never appear here: the repository counts and logs them
/// through its `Cache` and answers from Cassandra.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entity's table (or keyspace) does not exist: call
    /// [`Repository::create_table`](crate::Repository::create_table)
    /// (and [`create_keyspace`](crate::create_keyspace)) first.
    #[error(
        "table `{table}` does not exist: call `Repository::create_table()` first \
         (`{statement}` failed: {source})"
    )]
    MissingTable {
        /// The table, as `keyspace.table`.
        table: String,
        /// The CQL text.
        statement: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Preparing a statement failed.
    #[error("preparing `{statement}` failed: {source}")]
    Prepare {
        /// The CQL text.
        statement: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Running a statement failed, or its rows did not convert.
    #[error("`{statement}` failed: {source}")]
    Execute {
        /// The CQL text.
        statement: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A lightweight transaction answered without its `[applied]` column:
    /// the server may have written the row without checking the condition
    /// (kassandra, the in-memory test server, drops `IF NOT EXISTS`).
    #[error(
        "`{statement}` returned no `[applied]` column: the server may not run lightweight \
         transactions, and may have written the row unconditionally"
    )]
    NoApplied {
        /// The CQL text.
        statement: &'static str,
    },
    /// `#[entity(write = "behind")]` over a cache that is not Redis: the
    /// writes would live only in this process until flushed.
    #[error(
        "table `{table}` is written behind (`#[entity(write = \"behind\")]`), which needs a \
         Redis cache to hold the writes until they are flushed; this cache is `{backend}` \
         (build it with `.redis(url)`, or use write = \"through\")"
    )]
    WriteBehindNeedsRedis {
        /// The table.
        table: &'static str,
        /// The cache's backend, as `Cache::backend_name` says.
        backend: &'static str,
    },
    /// A `layout = "hash"` entity over a cache that is not Redis: its
    /// entries are Redis hashes.
    #[error(
        "table `{table}` has layout = \"hash\", whose entries are Redis hashes, but the cache \
         is `{backend}` (build it with `.redis(url)`, or use layout = \"blob\")"
    )]
    HashNeedsRedis {
        /// The table.
        table: &'static str,
        /// The cache's backend, as `Cache::backend_name` says.
        backend: &'static str,
    },
    /// A write-behind entity over a Redis whose `maxmemory-policy` may
    /// evict keys that have no expiry: the stream, the pending entries
    /// and their version records, that is acknowledged writes.
    #[error(
        "table `{table}` is written behind, but Redis's maxmemory-policy is `{policy}`, which \
         may evict the write-behind stream and pending entries (keys with no expiry); set \
         maxmemory-policy to noeviction or a volatile-* policy"
    )]
    EvictionPolicy {
        /// The table.
        table: &'static str,
        /// The policy Redis reported.
        policy: String,
    },
    /// Redis could not answer a call that only Redis can answer (the
    /// write-behind backlog).
    #[error("reading the write-behind stream of `{table}` failed: {source}")]
    Stream {
        /// The table.
        table: &'static str,
        /// The cache's error, or a reply of an unexpected shape.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A call that sets a row's values on an entity with `#[counter]` fields,
    /// refused before anything is sent: Cassandra only increments
    /// ([`Repository::increment`](crate::Repository::increment)), reads and
    /// deletes the rows of a table of counters.
    #[error(
        "`{call}` on `{table}` refused: it is a table of counters ({counters}), and {reason}; \
         change counters with `Repository::increment`"
    )]
    CounterTable {
        /// The table.
        table: &'static str,
        /// The repository method called (`save`, `save_all`, …).
        call: &'static str,
        /// The counter columns, comma-separated.
        counters: String,
        /// What Cassandra refuses.
        reason: &'static str,
    },
    /// [`Repository::save_with_ttl`](crate::Repository::save_with_ttl) was
    /// refused before writing: a cached copy of the row could outlive it.
    #[error("save_with_ttl on `{table}` refused: {reason}")]
    RowTtl {
        /// The table.
        table: &'static str,
        /// Why the row's life cannot be bounded.
        reason: &'static str,
    },
    /// A call that only the cache can answer failed: following a change
    /// stream ([`Repository::follow_changes`](crate::Repository::follow_changes):
    /// an in-memory cache, a key that is not a stream) or reading the hot
    /// keys ([`Repository::warm`](crate::Repository::warm)).
    #[error("`{call}` on `{table}` failed: {source}")]
    Cache {
        /// The table.
        table: &'static str,
        /// The repository method called.
        call: &'static str,
        /// The cache's error.
        #[source]
        source: cachefw::Error,
    },
}

/// Whether a server's message says that a table or keyspace is missing:
/// Cassandra and ScyllaDB answer `unconfigured table users` or `Keyspace
/// shop does not exist`, kassandra `Keyspace or table does nor exist`.
fn names_missing_table(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["unconfigured table", "does not exist", "does nor exist"]
        .iter()
        .any(|phrase| message.contains(phrase))
}

/// Whether a request attempt failed on a missing table.
fn missing_table(attempt: &RequestAttemptError) -> bool {
    matches!(attempt, RequestAttemptError::DbError(DbError::Invalid, message) if names_missing_table(message))
}

fn prepare_missing_table(error: &PrepareError) -> bool {
    matches!(error, PrepareError::AllAttemptsFailed { first_attempt } if missing_table(first_attempt))
}

impl Error {
    pub(crate) fn statement(
        statement: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Execute {
            statement: statement.into(),
            source: Box::new(source),
        }
    }

    /// Preparing `statement` of table `keyspace.table` failed.
    pub(crate) fn prepare(
        (keyspace, table): (&str, &str),
        statement: &'static str,
        source: PrepareError,
    ) -> Self {
        if prepare_missing_table(&source) {
            return Self::MissingTable {
                table: format!("{keyspace}.{table}"),
                statement: statement.to_owned(),
                source: Box::new(source),
            };
        }
        Self::Prepare {
            statement,
            source: Box::new(source),
        }
    }

    /// Preparing a statement built at run time (a patch's `UPDATE`) failed.
    pub(crate) fn prepare_dynamic(
        (keyspace, table): (&str, &str),
        statement: &str,
        source: PrepareError,
    ) -> Self {
        if prepare_missing_table(&source) {
            return Self::MissingTable {
                table: format!("{keyspace}.{table}"),
                statement: statement.to_owned(),
                source: Box::new(source),
            };
        }
        Self::statement(statement, source)
    }

    /// The kind of a failed prepare (see `outcome::kind`), for the
    /// write-behind flusher's counters.
    pub(crate) fn prepare_kind(&self) -> &'static str {
        match self {
            Self::MissingTable { .. } => "invalid",
            Self::Prepare { source, .. } | Self::Execute { source, .. } => source
                .downcast_ref::<PrepareError>()
                .map_or("other", crate::outcome::prepare_kind),
            _ => "other",
        }
    }

    /// Running `statement` of table `keyspace.table` failed (the table may
    /// have been dropped after the statement was prepared).
    pub(crate) fn execution(
        (keyspace, table): (&str, &str),
        statement: impl Into<String>,
        source: ExecutionError,
    ) -> Self {
        let missing = match &source {
            ExecutionError::LastAttemptError(attempt) => missing_table(attempt),
            ExecutionError::PrepareError(prepare) => prepare_missing_table(prepare),
            _ => false,
        };
        if missing {
            return Self::MissingTable {
                table: format!("{keyspace}.{table}"),
                statement: statement.into(),
                source: Box::new(source),
            };
        }
        Self::statement(statement, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            message.into(),
        ))
    }

    #[test]
    fn a_missing_table_names_create_table() {
        for message in [
            "unconfigured table users",
            "Keyspace shop does not exist",
            "Keyspace or table does nor exist",
        ] {
            let error = Error::execution(("shop", "users"), "SELECT", invalid(message));
            assert!(
                matches!(&error, Error::MissingTable { table, .. } if table == "shop.users"),
                "{error:?}"
            );
            assert!(error.to_string().contains("create_table()"), "{error}");
        }
        let other = Error::execution(("shop", "users"), "SELECT", invalid("Undefined column"));
        assert!(matches!(other, Error::Execute { .. }), "{other:?}");
    }
}
