//! Bind values of a statement, without the driver's 16-value limit of
//! tuples: an entity binds an array of its fields, each as
//! `&dyn SerializeValue`, and a TTL binds after a row.

use scylla::serialize::SerializationError;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::RowWriter;

/// The values of one statement, in bind order: what `#[derive(Entity)]`
/// binds for a row, a key or a partition.
///
/// ```
/// use cachefw_cassandra::__private::{SerializeRow, Values};
/// let (id, name) = (7_i64, String::from("Ada"));
/// let values = Values([&id, &name]);
/// assert!(!values.is_empty());
/// ```
// `Sync` keeps the repository's futures `Send`: they hold these values
// across the request's await points.
pub struct Values<'a, const N: usize>(pub [&'a (dyn SerializeValue + Sync); N]);

impl<const N: usize> SerializeRow for Values<'_, N> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        // The slice implementation checks the count and names a column that
        // does not serialize.
        SerializeRow::serialize(&self.0.as_slice(), ctx, writer)
    }

    fn is_empty(&self) -> bool {
        N == 0
    }
}

/// A row's values, then one more: the `?` of `USING TTL ?`.
pub(crate) struct Then<R, V> {
    pub(crate) row: R,
    pub(crate) last: V,
}

/// A statement with no bind marker left for the value that binds last.
#[derive(Debug, thiserror::Error)]
#[error("the statement has no bind marker for the value that binds after the row")]
struct NoMarkerLeft;

impl<R: SerializeRow, V: SerializeValue> SerializeRow for Then<R, V> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        let Some((last, head)) = ctx.columns().split_last() else {
            return Err(SerializationError::new(NoMarkerLeft));
        };
        self.row
            .serialize(&RowSerializationContext::from_specs(head), writer)?;
        self.last.serialize(last.typ(), writer.make_cell_writer())?;
        Ok(())
    }

    fn is_empty(&self) -> bool {
        false
    }
}
