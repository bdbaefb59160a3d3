//! A write-behind record: one save or patch, as its stream entry holds it.
//!
//! Fields: `f` the format (`1`), `k` the kind (`s` a save, `p` a patch),
//! `t` the write's timestamp (µs since the epoch, decimal), `d` the data in
//! MessagePack with field names (the row; or the key and the patch), so
//! that a record written before a deploy that adds a `#[serde(default)]`
//! field still reads.

use crate::entity::Entity;

const FORMAT: &[u8] = b"1";

/// What a record changes.
pub(crate) enum Change<T: Entity> {
    /// Every column of the row.
    Save(T),
    /// The columns the patch gives, of the row with the key.
    Patch(T::Key, T::Patch),
}

/// One write, with its timestamp.
pub(crate) struct Record<T: Entity> {
    pub(crate) at: i64,
    pub(crate) change: Change<T>,
}

impl<T: Entity> Record<T> {
    /// The row it writes.
    pub(crate) fn key(&self) -> T::Key {
        match &self.change {
            Change::Save(row) => row.key(),
            Change::Patch(key, _) => key.clone(),
        }
    }
}

/// The fields of a save's record.
pub(crate) fn save<T: Entity>(row: &T, at: i64) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let data = rmp_serde::to_vec_named(row).map_err(|e| e.to_string())?;
    Ok(fields(b"s", at, data))
}

/// The fields of a patch's record.
pub(crate) fn patch<T: Entity>(
    key: &T::Key,
    patch: &T::Patch,
    at: i64,
) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let data = rmp_serde::to_vec_named(&(key, patch)).map_err(|e| e.to_string())?;
    Ok(fields(b"p", at, data))
}

fn fields(kind: &[u8], at: i64, data: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("f", FORMAT.to_vec()),
        ("k", kind.to_vec()),
        ("t", at.to_string().into_bytes()),
        ("d", data),
    ]
}

/// The value of field `name`, if the entry has it.
pub(crate) fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(field, _)| field == name.as_bytes())
        .map(|(_, value)| value.as_slice())
}

/// The timestamp of a record, without decoding its data.
pub(crate) fn timestamp(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<i64> {
    std::str::from_utf8(field(fields, "t")?).ok()?.parse().ok()
}

/// Reads a record; why not, when it cannot be read (another format, a
/// row that no longer decodes as `T`, bytes someone else wrote).
pub(crate) fn decode<T: Entity>(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Record<T>, String> {
    if field(fields, "f") != Some(FORMAT) {
        return Err("not a cachefw write-behind record of format 1".to_owned());
    }
    let at = timestamp(fields).ok_or("no timestamp `t`")?;
    let data = field(fields, "d").ok_or("no data `d`")?;
    let change = match field(fields, "k") {
        Some(b"s") => Change::Save(rmp_serde::from_slice(data).map_err(|e| e.to_string())?),
        Some(b"p") => {
            let (key, patch) = rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
            Change::Patch(key, patch)
        }
        _ => return Err("no kind `k` (`s` or `p`)".to_owned()),
    };
    Ok(Record { at, change })
}
