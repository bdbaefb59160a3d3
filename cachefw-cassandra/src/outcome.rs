//! Whether a failed write may have changed the row, which decides whether
//! its cache entries are evicted anyway.
//!
//! Only a write Cassandra (or the driver, before sending) definitely refused
//! leaves the row as it was. A timeout, a lost connection after the request
//! left, or an answer that could not be read may hide an applied write, and
//! then the cached copy may be stale: it is evicted as after a success.
//!
//! The last attempt's error speaks for the whole request: the repository's
//! statements are not marked idempotent, and the driver's default retry
//! policy retries a non-idempotent request only after errors that mean it
//! was not applied (unavailable replicas, a bootstrapping node, no stream
//! id). A custom retry policy that retries after a timeout can hide an
//! applied attempt behind a later refusal; the default one never does.

use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};

/// What a failed write did to the row, as far as the client can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing: the write was refused before it was applied anywhere.
    Refused,
    /// Maybe applied, on some replicas or all.
    Unknown,
}

/// The outcome of a write that ended in `error`.
pub(crate) fn of(error: &ExecutionError) -> Effect {
    match error {
        // Refused by the driver before sending, or never sent.
        ExecutionError::BadQuery(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::PrepareError(_)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::UseKeyspaceError(_) => Effect::Refused,
        ExecutionError::LastAttemptError(attempt) => of_attempt(attempt),
        // A client timeout, or a failure after the write was acknowledged
        // (schema agreement follows the write), and any error kind a newer
        // driver adds: the write may have happened.
        _ => Effect::Unknown,
    }
}

fn of_attempt(error: &RequestAttemptError) -> Effect {
    match error {
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_)
        | RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::RepreparedIdChanged { .. }
        | RequestAttemptError::RepreparedIdMissingInBatch => Effect::Refused,
        RequestAttemptError::DbError(db_error, _) => of_db_error(db_error),
        // The connection broke (the request may have left), or the answer
        // could not be read: it may have been a success.
        _ => Effect::Unknown,
    }
}

fn of_db_error(error: &DbError) -> Effect {
    match error {
        // Refused by the coordinator before any replica applied it.
        DbError::SyntaxError
        | DbError::Invalid
        | DbError::AlreadyExists { .. }
        | DbError::FunctionFailure { .. }
        | DbError::AuthenticationError
        | DbError::Unauthorized
        | DbError::ConfigError
        | DbError::Unavailable { .. }
        | DbError::Overloaded
        | DbError::IsBootstrapping
        | DbError::TruncateError
        | DbError::Unprepared { .. }
        | DbError::ProtocolError => Effect::Refused,
        DbError::RateLimitReached {
            rejected_by_coordinator,
            ..
        } => {
            if *rejected_by_coordinator {
                Effect::Refused
            } else {
                Effect::Unknown
            }
        }
        // WriteTimeout, WriteFailure, ReadTimeout and ReadFailure (the read
        // phase of a lightweight transaction), ServerError, codes this
        // driver does not know (CAS_WRITE_UNKNOWN among them): replicas may
        // hold the write.
        _ => Effect::Unknown,
    }
}

/// The kind of a failed write, as the write-behind flusher counts and
/// logs its refusals (label `kind` of `cachefw_writebehind_refusals_total`).
/// None of them stops the retries: a record is retried until written or
/// refused for `dead_letter_after`.
pub(crate) fn kind(error: &ExecutionError) -> &'static str {
    match error {
        ExecutionError::BadQuery(_) => "invalid",
        ExecutionError::PrepareError(error) => prepare_kind(error),
        ExecutionError::LastAttemptError(attempt) => attempt_kind(attempt),
        ExecutionError::RequestTimeout(_) => "timeout",
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => "unavailable",
        _ => "other",
    }
}

/// The kind of a failed prepare (see [`kind`]).
pub(crate) fn prepare_kind(error: &PrepareError) -> &'static str {
    match error {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_kind(first_attempt),
        PrepareError::ConnectionPoolError(_) => "unavailable",
        _ => "other",
    }
}

fn attempt_kind(error: &RequestAttemptError) -> &'static str {
    match error {
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => "invalid",
        RequestAttemptError::DbError(error, _) => match error {
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::ConfigError => "invalid",
            DbError::Unauthorized | DbError::AuthenticationError => "unauthorized",
            DbError::Unavailable { .. } | DbError::IsBootstrapping => "unavailable",
            DbError::Overloaded | DbError::RateLimitReached { .. } => "overloaded",
            DbError::WriteTimeout { .. } | DbError::ReadTimeout { .. } => "timeout",
            DbError::ProtocolError => "protocol",
            _ => "other",
        },
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => "unavailable",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scylla::errors::{BadQuery, WriteType};
    use scylla::frame::types::Consistency;

    use super::*;

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "reason".into()))
    }

    #[test]
    fn timeouts_and_failures_are_unknown() {
        let timeout = db(DbError::WriteTimeout {
            consistency: Consistency::Quorum,
            received: 1,
            required: 2,
            write_type: WriteType::Simple,
        });
        assert_eq!(of(&timeout), Effect::Unknown);
        let failure = db(DbError::WriteFailure {
            consistency: Consistency::Quorum,
            received: 1,
            required: 2,
            numfailures: 1,
            write_type: WriteType::Batch,
        });
        assert_eq!(of(&failure), Effect::Unknown);
        assert_eq!(of(&db(DbError::ServerError)), Effect::Unknown);
        assert_eq!(of(&db(DbError::Other(0x1700))), Effect::Unknown);
        let client = ExecutionError::RequestTimeout(Duration::from_secs(12));
        assert_eq!(of(&client), Effect::Unknown);
    }

    #[test]
    fn refusals_have_kinds() {
        assert_eq!(kind(&db(DbError::Invalid)), "invalid");
        assert_eq!(kind(&db(DbError::SyntaxError)), "invalid");
        assert_eq!(kind(&db(DbError::Overloaded)), "overloaded");
        assert_eq!(kind(&db(DbError::Unauthorized)), "unauthorized");
        assert_eq!(kind(&db(DbError::ProtocolError)), "protocol");
        assert_eq!(kind(&db(DbError::ServerError)), "other");
        let unavailable = db(DbError::Unavailable {
            consistency: Consistency::Quorum,
            required: 2,
            alive: 1,
        });
        assert_eq!(kind(&unavailable), "unavailable");
        assert_eq!(
            kind(&ExecutionError::RequestTimeout(Duration::from_secs(1))),
            "timeout"
        );
    }

    #[test]
    fn refusals_are_refused() {
        assert_eq!(of(&db(DbError::Invalid)), Effect::Refused);
        assert_eq!(of(&db(DbError::Overloaded)), Effect::Refused);
        let unavailable = db(DbError::Unavailable {
            consistency: Consistency::Quorum,
            required: 2,
            alive: 1,
        });
        assert_eq!(of(&unavailable), Effect::Refused);
        let bad = ExecutionError::BadQuery(BadQuery::TooManyQueriesInBatchStatement(70_000));
        assert_eq!(of(&bad), Effect::Refused);
        assert_eq!(
            of(&ExecutionError::LastAttemptError(
                RequestAttemptError::UnableToAllocStreamId
            )),
            Effect::Refused
        );
    }
}
