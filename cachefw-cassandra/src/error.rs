/// A Cassandra call that failed, with the statement it ran.
///
/// Cache failures never appear here: the repository counts and logs them
/// through its `Cache` and answers from Cassandra.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Preparing a statement failed (the table may not exist yet: call
    /// [`Repository::create_table`](crate::Repository::create_table)).
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
    /// A lightweight transaction answered without its `[applied]` column.
    #[error("`{statement}` returned no `[applied]` column")]
    NoApplied {
        /// The CQL text.
        statement: &'static str,
    },
}

impl Error {
    pub(crate) fn execute(
        statement: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Execute {
            statement: statement.into(),
            source: Box::new(source),
        }
    }
}
