//! A write-behind record: one save or patch, as its stream entry holds it.
//!
//! Records are self-describing (format `2`): the flusher needs nothing of
//! the entity's Rust type to write one, so flushers built from another
//! shape of the entity (a rolling deploy that adds or removes a field)
//! write exactly the columns a record was saved with. Fields:
//!
//! - `f` the format (`2`), `k` the kind (`s` a save, `p` a patch), `t` the
//!   write's timestamp (µs since the epoch, decimal);
//! - `r` the row's cache key, `p` the cache's key prefix the entry was
//!   stored under (`{namespace}:v{version}:`), `q` the partition's cache
//!   key when partitions are cached;
//! - `=name` for each key column and `+name` for each column the write
//!   sets, `name` the column's CQL identifier and the value its cell as
//!   the protocol carries it (see `columns.rs`).
//!
//! Format `1` (before issue 23: MessagePack of the row or of the key and
//! patch) is still read, through the flusher's own type.

use super::columns::{self, Cell, Schema};
use crate::entity::Entity;

const FORMAT: &[u8] = b"2";
const FORMAT_1: &[u8] = b"1";

/// One write, as a flusher writes it.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The write's timestamp.
    pub(crate) at: i64,
    /// A save (an `INSERT` of its columns) or a patch (an `UPDATE`).
    pub(crate) save: bool,
    /// The row's cache key.
    pub(crate) row: String,
    /// The key prefix its entry was stored under, if the record says.
    pub(crate) prefix: Option<String>,
    /// The partition's cache key, when partitions are cached.
    pub(crate) partition: Option<String>,
    /// The primary key's cells.
    pub(crate) key: Vec<Cell>,
    /// The cells the write sets.
    pub(crate) set: Vec<Cell>,
}

impl Record {
    /// Whether writing `self` also writes every column `older` sets (a
    /// save, of a superset of its columns).
    pub(crate) fn covers(&self, older: &Self) -> bool {
        self.save
            && self.at > older.at
            && older
                .set
                .iter()
                .all(|(name, _)| self.set.iter().any(|(mine, _)| mine == name))
    }
}

/// What a record is made of, before it goes to the stream.
pub(crate) struct Fields(pub(crate) Vec<(String, Vec<u8>)>);

/// The fields of a save's record.
pub(crate) fn save<T: Entity>(
    schema: &Schema,
    row: &T,
    at: i64,
    prefix: &str,
) -> Result<Fields, String> {
    let (key, set): (Vec<Cell>, Vec<Cell>) = schema
        .row(row)?
        .into_iter()
        .partition(|(name, _)| schema.is_key(name));
    Ok(fields::<T>(b"s", at, &row.key(), prefix, key, set))
}

/// The fields of a patch's record.
pub(crate) fn patch<T: Entity>(
    schema: &Schema,
    key: &T::Key,
    patch: &T::Patch,
    at: i64,
    prefix: &str,
) -> Result<Fields, String> {
    let cells = schema.key::<T>(key)?;
    let set = schema.patch::<T>(patch)?;
    Ok(fields::<T>(b"p", at, key, prefix, cells, set))
}

fn fields<T: Entity>(
    kind: &[u8],
    at: i64,
    key: &T::Key,
    prefix: &str,
    cells: Vec<Cell>,
    set: Vec<Cell>,
) -> Fields {
    let mut fields = Vec::with_capacity(6 + cells.len() + set.len());
    fields.push(("f".to_owned(), FORMAT.to_vec()));
    fields.push(("k".to_owned(), kind.to_vec()));
    fields.push(("t".to_owned(), at.to_string().into_bytes()));
    fields.push(("r".to_owned(), T::cache_key(key).into_bytes()));
    fields.push(("p".to_owned(), prefix.as_bytes().to_vec()));
    if T::CACHE_PARTITIONS {
        let partition = T::partition_cache_key(&T::partition_of(key));
        fields.push(("q".to_owned(), partition.into_bytes()));
    }
    for (name, cell) in cells {
        fields.push((format!("={name}"), cell));
    }
    for (name, cell) in set {
        fields.push((format!("+{name}"), cell));
    }
    Fields(fields)
}

/// The value of field `name`, if the entry has it.
pub(crate) fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(field, _)| field == name.as_bytes())
        .map(|(_, value)| value.as_slice())
}

/// The timestamp of a record, without reading the rest.
pub(crate) fn timestamp(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<i64> {
    std::str::from_utf8(field(fields, "t")?).ok()?.parse().ok()
}

fn text(fields: &[(Vec<u8>, Vec<u8>)], name: &str) -> Option<String> {
    field(fields, name).and_then(|value| String::from_utf8(value.to_vec()).ok())
}

/// Reads a record; why not, when it cannot be read (another format,
/// bytes someone else wrote). A record of format `1` is read through
/// `T`, as the flushers before format `2` wrote it.
pub(crate) fn decode<T: Entity>(
    fields: &[(Vec<u8>, Vec<u8>)],
    schema: Option<&Schema>,
    prefix: &str,
) -> Result<Record, String> {
    match field(fields, "f") {
        Some(FORMAT) => {}
        Some(FORMAT_1) => return decode_1::<T>(fields, schema, prefix),
        _ => return Err("not a cachefw write-behind record of format 1 or 2".to_owned()),
    }
    let at = timestamp(fields).ok_or("no timestamp `t`")?;
    let save = match field(fields, "k") {
        Some(b"s") => true,
        Some(b"p") => false,
        _ => return Err("no kind `k` (`s` or `p`)".to_owned()),
    };
    let row = text(fields, "r").ok_or("no row key `r`")?;
    let mut key = Vec::new();
    let mut set = Vec::new();
    for (name, value) in fields {
        let (cells, column) = match name.split_first() {
            Some((b'=', column)) => (&mut key, column),
            Some((b'+', column)) => (&mut set, column),
            _ => continue,
        };
        let column = std::str::from_utf8(column)
            .ok()
            .filter(|column| columns::is_identifier(column))
            .ok_or("a column name that is not a CQL identifier")?;
        if columns::cell_length(value) != Some(value.len()) {
            return Err(format!("the value of column {column} is malformed"));
        }
        cells.push((column.to_owned(), value.clone()));
    }
    if key.is_empty() {
        return Err("no key column".to_owned());
    }
    if !save && set.is_empty() {
        return Err("a patch that sets no column".to_owned());
    }
    Ok(Record {
        at,
        save,
        row,
        prefix: text(fields, "p").filter(|theirs| same_namespace(prefix, theirs)),
        partition: text(fields, "q"),
        key,
        set,
    })
}

/// Whether `theirs`, a record's key prefix, is `own`'s namespace at some
/// version (`{namespace}:v{digits}:`). The flusher settles the entry under
/// it: any other text, from bytes someone else appended to the stream,
/// would make it rewrite or delete keys outside the cache's namespace.
fn same_namespace(own: &str, theirs: &str) -> bool {
    let Some(at) = own.rfind(":v") else {
        return false;
    };
    theirs
        .strip_prefix(&own[..at + 2])
        .and_then(|rest| rest.strip_suffix(':'))
        .is_some_and(|version| !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
}

/// A record of format `1`: MessagePack of the row (a save) or of the key
/// and the patch.
fn decode_1<T: Entity>(
    fields: &[(Vec<u8>, Vec<u8>)],
    schema: Option<&Schema>,
    prefix: &str,
) -> Result<Record, String> {
    let schema = schema.ok_or("the entity's column types do not parse")?;
    let at = timestamp(fields).ok_or("no timestamp `t`")?;
    let data = field(fields, "d").ok_or("no data `d`")?;
    let made = match field(fields, "k") {
        Some(b"s") => {
            let row: T = rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
            save(schema, &row, at, prefix)?
        }
        Some(b"p") => {
            let (key, changes): (T::Key, T::Patch) =
                rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
            patch::<T>(schema, &key, &changes, at, prefix)?
        }
        _ => return Err("no kind `k` (`s` or `p`)".to_owned()),
    };
    let fields: Vec<(Vec<u8>, Vec<u8>)> = made
        .0
        .into_iter()
        .map(|(name, value)| (name.into_bytes(), value))
        .collect();
    decode::<T>(&fields, Some(schema), prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prefixes_of_the_cache_namespace_are_taken() {
        assert!(same_namespace("shop:v1:", "shop:v1:"));
        assert!(same_namespace("shop:v2:", "shop:v17:"));
        assert!(same_namespace("a:v:b:v3:", "a:v:b:v1:"));
        for hostile in [
            "",
            "shop:",
            "shop:v:",
            "shop:vx:",
            "other:v1:",
            "shop:v1:x:",
            "shop:v1",
        ] {
            assert!(!same_namespace("shop:v1:", hostile), "{hostile:?}");
        }
    }
}
