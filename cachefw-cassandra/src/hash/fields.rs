//! A row's columns one by one, as `#[derive(Entity)]` hands them over: to
//! be stored as the fields of a hash entry, and read back from them.
//!
//! Each regular column is encoded alone with the cache's codec and its
//! header, so that bytes of another codec, another format or another type
//! read as a miss of the row, never as a wrong value. A counter is stored
//! as its decimal text, so that an increment can add to it in Redis
//! (`HINCRBY`) without decoding anything.

use cachefw::__adapter::hashed;
use cachefw::Cache;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Takes a row's (or a patch's) columns one by one.
pub trait FieldSink {
    /// The value of a regular column.
    fn value<V: Serialize>(&mut self, column: &'static str, value: &V);
    /// The value of a counter column.
    fn counter(&mut self, column: &'static str, value: i64);
}

/// Gives a row's (or a patch's) columns one by one.
pub trait FieldSource {
    /// The value of a regular column; `None` when missing or unreadable.
    fn value<V: DeserializeOwned>(&mut self, column: &'static str) -> Option<V>;
    /// The value of a counter column; `None` when missing or unreadable.
    fn counter(&mut self, column: &'static str) -> Option<i64>;
}

/// Encodes columns as the fields of the hash entry `entry`.
pub(crate) struct Encoder<'a> {
    cache: &'a Cache,
    entry: &'a str,
    pub(crate) fields: Vec<(&'static str, Vec<u8>)>,
    pub(crate) error: Option<cachefw::Error>,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(cache: &'a Cache, entry: &'a str) -> Self {
        Self {
            cache,
            entry,
            fields: Vec::new(),
            error: None,
        }
    }

    /// The encoded fields, or the first column that could not be encoded.
    pub(crate) fn finish(self) -> Result<Vec<(&'static str, Vec<u8>)>, cachefw::Error> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.fields),
        }
    }
}

impl FieldSink for Encoder<'_> {
    fn value<V: Serialize>(&mut self, column: &'static str, value: &V) {
        match hashed::encode(self.cache, self.entry, value) {
            Ok(bytes) => self.fields.push((column, bytes)),
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
    }

    fn counter(&mut self, column: &'static str, value: i64) {
        self.fields.push((column, value.to_string().into_bytes()));
    }
}

/// Reads columns from the fields of the hash entry `entry` as Redis
/// answered them (`columns` and `values` aligned).
pub(crate) struct Decoder<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) entry: &'a str,
    pub(crate) columns: &'a [&'a str],
    pub(crate) values: &'a [Vec<u8>],
}

impl Decoder<'_> {
    fn bytes(&self, column: &str) -> Option<&[u8]> {
        let at = self.columns.iter().position(|c| *c == column)?;
        self.values.get(at).map(Vec::as_slice)
    }
}

impl FieldSource for Decoder<'_> {
    fn value<V: DeserializeOwned>(&mut self, column: &'static str) -> Option<V> {
        let bytes = self.bytes(column)?;
        hashed::decode(self.cache, self.entry, bytes)
    }

    fn counter(&mut self, column: &'static str) -> Option<i64> {
        std::str::from_utf8(self.bytes(column)?).ok()?.parse().ok()
    }
}
