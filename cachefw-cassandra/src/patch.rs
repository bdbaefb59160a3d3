//! Field patches: `{Entity}Patch` as `#[derive(Entity)]` generates it, and
//! the `UPDATE … SET` of just the fields a patch gives.

use scylla::serialize::SerializationError;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::RowWriter;
use serde::{Deserialize, Deserializer};

/// The columns a patch sets and their values, as `#[derive(Entity)]`
/// lists them for an `UPDATE … SET`.
///
/// ```
/// use cachefw_cassandra::__private::PatchValues;
/// let (total, note) = (12_i64, None::<String>);
/// let mut set = PatchValues::default();
/// set.push("total", &total);
/// set.push("note", &note); // binds null
/// assert_eq!(set.columns(), ["total", "note"]);
/// ```
#[derive(Default)]
pub struct PatchValues<'a> {
    columns: Vec<&'static str>,
    values: Vec<&'a (dyn SerializeValue + Sync)>,
}

impl<'a> PatchValues<'a> {
    /// Adds column `column` (a CQL identifier, quoted if need be) set to
    /// `value`.
    pub fn push(&mut self, column: &'static str, value: &'a (dyn SerializeValue + Sync)) {
        self.columns.push(column);
        self.values.push(value);
    }

    /// The columns, in the order pushed.
    pub fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    pub(crate) fn values(&self) -> &[&'a (dyn SerializeValue + Sync)] {
        &self.values
    }
}

/// Reads a field that is present as `Some`, even when it is null: a
/// patch's `Some(None)` ("set it null") survives a stream record, where
/// a plain `Option<Option<T>>` would read back as `None` ("leave it").
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Patch {
///     #[serde(default, deserialize_with = "cachefw_cassandra::__private::present")]
///     note: Option<Option<String>>,
/// }
/// let null: Patch = rmp_serde::from_slice(&rmp_serde::to_vec_named(
///     &std::collections::BTreeMap::from([("note", None::<String>)]),
/// ).unwrap()).unwrap();
/// assert_eq!(null.note, Some(None));
/// ```
///
/// # Errors
///
/// When the value is not a `T`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `{update} SET c1 = ?, c2 = ? WHERE {key_condition}`, from the
/// entity's `UPDATE {table}` and key condition.
pub(crate) fn update_cql(update: &str, columns: &[&str], key_condition: &str) -> String {
    let set: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = ?"))
        .collect();
    format!("{update} SET {} WHERE {key_condition}", set.join(", "))
}

/// The values of a patch's `UPDATE`: the columns set, then the key.
pub(crate) struct Patched<'a, K> {
    pub(crate) set: &'a [&'a (dyn SerializeValue + Sync)],
    pub(crate) key: K,
}

/// A statement with fewer bind markers than the patch sets.
#[derive(Debug, thiserror::Error)]
#[error("the UPDATE has {markers} bind markers for the {set} columns the patch sets and the key")]
struct TooFewMarkers {
    markers: usize,
    set: usize,
}

impl<K: SerializeRow> SerializeRow for Patched<'_, K> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        let columns = ctx.columns();
        let Some((set, key)) = columns.split_at_checked(self.set.len()) else {
            return Err(SerializationError::new(TooFewMarkers {
                markers: columns.len(),
                set: self.set.len(),
            }));
        };
        SerializeRow::serialize(&self.set, &RowSerializationContext::from_specs(set), writer)?;
        self.key
            .serialize(&RowSerializationContext::from_specs(key), writer)
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.key.is_empty()
    }
}
