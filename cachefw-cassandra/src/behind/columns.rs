//! Column values as a write-behind record carries them: each column's CQL
//! identifier and its value exactly as the protocol sends it (`[int32
//! length][bytes]`, length -1 for null), serialized once when the record
//! is made, from the entity's own column types.
//!
//! A flusher binds these bytes as they are, whatever shape of the entity
//! it was built from: during a rolling deploy that adds or removes a
//! field, a record is written with the columns it was saved with, and a
//! value Cassandra no longer takes is its refusal to report, never a
//! decode error of the flusher's.

use scylla::frame::response::result::{
    CollectionType, ColumnSpec, ColumnType, NativeType, TableSpec,
};
use scylla::serialize::SerializationError;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, RowWriter};

use crate::entity::Entity;

/// One column of a record: its CQL identifier and its cell.
pub(crate) type Cell = (String, Vec<u8>);

/// The column types of an entity, parsed once from its derive's text.
pub(crate) struct Schema {
    /// Every field's column, in field order.
    fields: Vec<ColumnSpec<'static>>,
    /// The key's columns, in key order.
    key: Vec<ColumnSpec<'static>>,
}

impl Schema {
    /// The schema of `T`; why not, for a type the parser does not know
    /// (which the derive never emits).
    pub(crate) fn of<T: Entity>() -> Result<Self, String> {
        let table = TableSpec::owned(T::KEYSPACE.to_owned(), T::TABLE.to_owned());
        let spec = |name: &str, cql: &str| {
            parse(cql)
                .map(|typ| ColumnSpec::owned(name.to_owned(), typ, table.clone()))
                .ok_or_else(|| format!("column {name}: unknown CQL type `{cql}`"))
        };
        let fields = T::FIELD_COLUMNS
            .iter()
            .map(|(name, cql)| spec(name, cql))
            .collect::<Result<Vec<_>, _>>()?;
        let key = T::KEY_COLUMNS
            .iter()
            .map(|name| {
                fields
                    .iter()
                    .find(|field| field.name() == *name)
                    .cloned()
                    .ok_or_else(|| format!("key column {name} is not a field's column"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { fields, key })
    }

    /// Every column of `row`.
    pub(crate) fn row<T: Entity>(&self, row: &T) -> Result<Vec<Cell>, String> {
        cells(&self.fields, &row.values())
    }

    /// The key's columns.
    pub(crate) fn key<T: Entity>(&self, key: &T::Key) -> Result<Vec<Cell>, String> {
        cells(&self.key, &T::key_values(key))
    }

    /// The columns `patch` sets.
    pub(crate) fn patch<T: Entity>(&self, patch: &T::Patch) -> Result<Vec<Cell>, String> {
        let set = T::patch_values(patch);
        let mut cells = Vec::with_capacity(set.columns().len());
        for (name, value) in set.columns().iter().zip(set.values()) {
            let spec = self
                .fields
                .iter()
                .find(|field| field.name() == *name)
                .ok_or_else(|| format!("patched column {name} is not a field's column"))?;
            let mut cell = Vec::new();
            value
                .serialize(spec.typ(), CellWriter::new(&mut cell))
                .map_err(|e| format!("column {name}: {e}"))?;
            cells.push(((*name).to_owned(), cell));
        }
        Ok(cells)
    }

    /// Whether `name` is one of the key's columns.
    pub(crate) fn is_key(&self, name: &str) -> bool {
        self.key.iter().any(|spec| spec.name() == name)
    }
}

/// Serializes `values` against `specs`, one cell per column.
fn cells(specs: &[ColumnSpec<'static>], values: &impl SerializeRow) -> Result<Vec<Cell>, String> {
    let mut buffer = Vec::new();
    let mut writer = RowWriter::new(&mut buffer);
    values
        .serialize(&RowSerializationContext::from_specs(specs), &mut writer)
        .map_err(|e| e.to_string())?;
    let mut rest = buffer.as_slice();
    let mut cells = Vec::with_capacity(specs.len());
    for spec in specs {
        let length = cell_length(rest).ok_or("a value the driver wrote does not split")?;
        let (cell, tail) = rest.split_at(length);
        cells.push((spec.name().to_owned(), cell.to_vec()));
        rest = tail;
    }
    Ok(cells)
}

/// The length of the cell at the start of `bytes` (its 4-byte length and
/// its contents), if it is all there.
pub(crate) fn cell_length(bytes: &[u8]) -> Option<usize> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let length = i32::from_be_bytes(head);
    let total = 4 + usize::try_from(length.max(0)).ok()?;
    // -1 is null and -2 unset: no contents.
    (length >= -2 && bytes.len() >= total).then_some(total)
}

/// A row of cells bound as they are, in the statement's order.
pub(crate) struct Raw<'a>(pub(crate) Vec<&'a [u8]>);

/// A statement whose markers do not match the record's columns.
#[derive(Debug, thiserror::Error)]
#[error("the statement has {markers} bind markers for {cells} columns")]
struct Mismatch {
    markers: usize,
    cells: usize,
}

/// A cell whose length does not match its bytes.
#[derive(Debug, thiserror::Error)]
#[error("a record's cell is malformed")]
struct Malformed;

impl SerializeRow for Raw<'_> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        if ctx.columns().len() != self.0.len() {
            return Err(SerializationError::new(Mismatch {
                markers: ctx.columns().len(),
                cells: self.0.len(),
            }));
        }
        for cell in &self.0 {
            let writer = writer.make_cell_writer();
            if cell_length(cell) != Some(cell.len()) {
                return Err(SerializationError::new(Malformed));
            }
            let (head, contents) = cell.split_at(4);
            let length = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            match length {
                -1 => {
                    writer.set_null();
                }
                -2 => {
                    writer.set_unset();
                }
                _ => {
                    writer
                        .set_value(contents)
                        .map_err(|_| SerializationError::new(Malformed))?;
                }
            }
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A CQL type as the derive writes it: `text`, `list<frozen<set<int>>>`,
/// `map<text, bigint>`…
fn parse(text: &str) -> Option<ColumnType<'static>> {
    let text = text.trim();
    if let Some((outer, inner)) = text.split_once('<') {
        let inner = inner.strip_suffix('>')?;
        let collection = |frozen: bool, outer: &str, inner: &str| {
            let typ = match outer.trim() {
                "list" => CollectionType::List(Box::new(parse(inner)?)),
                "set" => CollectionType::Set(Box::new(parse(inner)?)),
                "map" => {
                    let (key, value) = split_top(inner)?;
                    CollectionType::Map(Box::new(parse(key)?), Box::new(parse(value)?))
                }
                _ => return None,
            };
            Some(ColumnType::Collection { frozen, typ })
        };
        return match outer.trim() {
            "frozen" => {
                let (outer, inner) = inner.split_once('<')?;
                collection(true, outer, inner.strip_suffix('>')?)
            }
            outer => collection(false, outer, inner),
        };
    }
    let native = match text {
        "text" | "varchar" => NativeType::Text,
        "ascii" => NativeType::Ascii,
        "tinyint" => NativeType::TinyInt,
        "smallint" => NativeType::SmallInt,
        "int" => NativeType::Int,
        "bigint" => NativeType::BigInt,
        "counter" => NativeType::Counter,
        "float" => NativeType::Float,
        "double" => NativeType::Double,
        "boolean" => NativeType::Boolean,
        "uuid" => NativeType::Uuid,
        "timeuuid" => NativeType::Timeuuid,
        "timestamp" => NativeType::Timestamp,
        "blob" => NativeType::Blob,
        _ => return None,
    };
    Some(ColumnType::Native(native))
}

/// `a, b` split at the comma outside any `<…>`.
fn split_top(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0_i32;
    for (at, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&text[..at], &text[at + 1..])),
            _ => {}
        }
    }
    None
}

/// Whether `name` is a CQL identifier as the derive writes one: plain
/// (letters, digits, `_`) or double-quoted with inner quotes doubled. A
/// record's column names go into statement text: nothing else may.
pub(crate) fn is_identifier(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return !inner.is_empty() && !inner.replace("\"\"", "").contains('"');
    }
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_as_the_derive_writes_them() {
        let list = parse("list<frozen<list<text>>>").expect("list");
        let ColumnType::Collection {
            frozen: false,
            typ: CollectionType::List(inner),
        } = list
        else {
            panic!("a list: {list:?}")
        };
        assert!(matches!(
            *inner,
            ColumnType::Collection {
                frozen: true,
                typ: CollectionType::List(_)
            }
        ));
        assert!(matches!(
            parse("map<text, frozen<map<int, bigint>>>"),
            Some(ColumnType::Collection {
                typ: CollectionType::Map(..),
                ..
            })
        ));
        assert_eq!(
            parse("bigint"),
            Some(ColumnType::Native(NativeType::BigInt))
        );
        assert_eq!(parse("udt"), None);
        assert_eq!(parse("list<text"), None);
    }

    #[test]
    fn cells_split_and_malformed_ones_are_refused() {
        assert_eq!(cell_length(&[0, 0, 0, 2, 7, 7, 9]), Some(6));
        assert_eq!(cell_length(&[255, 255, 255, 255]), Some(4));
        assert_eq!(cell_length(&[0, 0, 0, 9, 1]), None);
        assert_eq!(cell_length(&[255, 255, 255, 0]), None);
        assert_eq!(cell_length(&[0, 0]), None);
    }

    #[test]
    fn only_identifiers_go_into_statements() {
        for good in ["total", "line_items2", "\"order\"", "\"say \"\"hi\"\"\""] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "a b", "x) VALUES (1); --", "\"a\"b\"", "\"\"", "t=1"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
