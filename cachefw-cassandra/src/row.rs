//! Rows as the driver reads them: an entity's columns in field order, then
//! the `TTL()` columns of a select that asks for them. Column by column,
//! without the driver's 16-column limit of tuples.

use scylla::deserialize::row::{ColumnIterator, DeserializeRow};
use scylla::deserialize::value::DeserializeValue;
use scylla::deserialize::{DeserializationError, TypeCheckError};
use scylla::frame::response::result::ColumnSpec;
use scylla::value::Counter;

use crate::entity::Entity;

/// A row whose columns do not match the entity.
#[derive(Debug, thiserror::Error)]
enum ColumnError {
    #[error("the row has no column {index}: it has fewer columns than the entity has fields")]
    Missing { index: usize },
    #[error("the row ended before the entity's fields did")]
    Ended,
    #[error("column `{column}`: {source}")]
    Type {
        column: String,
        #[source]
        source: TypeCheckError,
    },
    #[error("column `{column}`: {source}")]
    Value {
        column: String,
        #[source]
        source: DeserializationError,
    },
}

/// Checks that column `index` of a result can be read as a `V`.
///
/// # Errors
///
/// When the column is missing or its CQL type is not `V`'s.
pub fn check_column<V>(columns: &[ColumnSpec<'_>], index: usize) -> Result<(), TypeCheckError>
where
    V: for<'frame, 'metadata> DeserializeValue<'frame, 'metadata>,
{
    let spec = columns
        .get(index)
        .ok_or_else(|| TypeCheckError::new(ColumnError::Missing { index }))?;
    V::type_check(spec.typ()).map_err(|source| {
        TypeCheckError::new(ColumnError::Type {
            column: spec.name().to_owned(),
            source,
        })
    })
}

/// Reads the next column of a row as a `V`.
///
/// # Errors
///
/// When the row has no column left, or the column's bytes are not a `V`.
pub fn next_column<'frame, 'metadata, V>(
    columns: &mut ColumnIterator<'frame, 'metadata>,
) -> Result<V, DeserializationError>
where
    V: DeserializeValue<'frame, 'metadata>,
{
    let column = columns
        .next()
        .ok_or_else(|| DeserializationError::new(ColumnError::Ended))??;
    V::deserialize(column.spec.typ(), column.slice).map_err(|source| {
        DeserializationError::new(ColumnError::Value {
            column: column.spec.name().to_owned(),
            source,
        })
    })
}

/// Checks that column `index` of a result is a CQL `counter`.
///
/// # Errors
///
/// When the column is missing or is not a counter.
pub fn check_counter(columns: &[ColumnSpec<'_>], index: usize) -> Result<(), TypeCheckError> {
    check_column::<Option<Counter>>(columns, index)
}

/// Reads the next column of a row as a counter's value: a counter never
/// incremented is null in a row where another counter was, and reads as 0.
///
/// # Errors
///
/// When the row has no column left, or the column is not a counter.
pub fn next_counter(columns: &mut ColumnIterator<'_, '_>) -> Result<i64, DeserializationError> {
    let counter: Option<Counter> = next_column(columns)?;
    Ok(counter.map_or(0, |Counter(value)| value))
}

/// An entity read with the `TTL()` of its columns, when the select asked.
pub(crate) struct Timed<T> {
    pub(crate) entity: T,
    /// The smallest `TTL()` of the row's columns, in seconds; `None` when
    /// no column has a TTL or the select did not ask.
    pub(crate) ttl_seconds: Option<i32>,
}

impl<'frame, 'metadata, T: Entity> DeserializeRow<'frame, 'metadata> for Timed<T> {
    fn type_check(specs: &[ColumnSpec]) -> Result<(), TypeCheckError> {
        T::type_check(specs)?;
        (T::COLUMNS..specs.len()).try_for_each(|index| check_column::<Option<i32>>(specs, index))
    }

    fn deserialize(
        mut row: ColumnIterator<'frame, 'metadata>,
    ) -> Result<Self, DeserializationError> {
        let entity = T::from_columns(&mut row)?;
        let mut ttl_seconds: Option<i32> = None;
        while row.columns_remaining() > 0 {
            // A null TTL: the column is null or was written without one.
            if let Some(ttl) = next_column::<Option<i32>>(&mut row)? {
                ttl_seconds = Some(ttl_seconds.map_or(ttl, |least| least.min(ttl)));
            }
        }
        Ok(Self {
            entity,
            ttl_seconds,
        })
    }
}
