//! The cache keys of rows and partitions.
//!
//! A row is cached at `{table}:{pk…}:{ck…}` and a partition's rows at
//! `{table}:{pk…}:%partition`. Each value is rendered with `Display` and
//! escaped as every cachefw key part is (`%` → `%25`, `:` → `%3A`, by
//! [`cachefw::__adapter::push_part`]), so:
//!
//! - two rows never share a key: each part holds no `:`, so the parts of a
//!   key are found again by splitting at `:`;
//! - no row key is a partition key: after escaping, a `%` is always
//!   followed by `25` or `3A`, so no value renders as `%partition`, and
//!   every part of a row key after the table is a value.
//!
//! The table name starts the key unescaped: the derive accepts only letters,
//! digits and `_` there.

use std::fmt::Display;

use cachefw::__adapter::push_part;

/// The last part of a partition's cache key: text no escaped value can be.
const PARTITION_MARKER: &str = "%partition";

/// `{table}:{part}:{part}…`, each part escaped.
fn render(table: &str, parts: &[&dyn Display], marker: Option<&str>) -> String {
    // Most parts are short numbers or UUIDs; one allocation covers them.
    let mut key = String::with_capacity(table.len() + 1 + parts.len() * 37 + 11);
    key.push_str(table);
    for part in parts {
        key.push(':');
        push_part(&mut key, *part);
    }
    if let Some(marker) = marker {
        key.push(':');
        key.push_str(marker);
    }
    key
}

/// The cache key of a row: `{table}:{pk…}:{ck…}`.
///
/// ```
/// let key = cachefw_cassandra::__private::row_key("events", &[&"a:b", &7]);
/// assert_eq!(key, "events:a%3Ab:7");
/// ```
pub fn row_key(table: &str, parts: &[&dyn Display]) -> String {
    render(table, parts, None)
}

/// The cache key of a partition's rows: `{table}:{pk…}:%partition`.
///
/// ```
/// let key = cachefw_cassandra::__private::partition_key("events", &[&"u", &20]);
/// assert_eq!(key, "events:u:20:%partition");
/// ```
pub fn partition_key(table: &str, parts: &[&dyn Display]) -> String {
    render(table, parts, Some(PARTITION_MARKER))
}

/// The primary key a row's cache key renders, read back (for warming the
/// hot keys): `None` for a key of another table, a partition's key, or a
/// part that does not read as its field's type. Each part is unescaped,
/// then parsed from its `Display` text into the field's type (numbers,
/// booleans, UUIDs, text); a type whose `Display` its `Deserialize` does
/// not read back (a timestamp) is never parsed back.
pub(crate) fn parse<K: serde::de::DeserializeOwned>(
    table: &str,
    columns: usize,
    rendered: &str,
) -> Option<K> {
    let rest = rendered.strip_prefix(table)?.strip_prefix(':')?;
    let parts: Vec<String> = rest.split(':').map(unescape).collect::<Option<_>>()?;
    if parts.len() != columns {
        return None;
    }
    let seq = serde::de::value::SeqAccessDeserializer::new(Parts(parts.iter()));
    K::deserialize(seq).ok()
}

/// A part with `%25` and `%3A` turned back into `%` and `:`; `None` for any
/// other `%` (no rendered value has one: a partition's marker).
fn unescape(part: &str) -> Option<String> {
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "%25" => '%',
            "%3A" => ':',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The parts of a key, as the sequence of the key struct's fields.
struct Parts<'a>(std::slice::Iter<'a, String>);

impl<'de> serde::de::SeqAccess<'de> for Parts<'_> {
    type Error = serde::de::value::Error;

    fn next_element_seed<S: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.0
            .next()
            .map(|part| seed.deserialize(Part(part)))
            .transpose()
    }
}

/// One part's text, read as the type asked for.
struct Part<'a>(&'a str);

macro_rules! parsed {
    ($($method:ident => $visit:ident,)*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0.parse() {
                Ok(value) => visitor.$visit(value),
                Err(_) => Err(serde::de::Error::custom(format!("{:?} is not a number or boolean", self.0))),
            }
        }
    )*};
}

impl<'de> serde::de::Deserializer<'de> for Part<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_str(self.0)
    }

    parsed! {
        deserialize_bool => visit_bool,
        deserialize_i8 => visit_i8,
        deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64,
        deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16,
        deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64,
        deserialize_f32 => visit_f32,
        deserialize_f64 => visit_f64,
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(row_key("t", &[&"1:2", &"3"]), "t:1%3A2:3");
        assert_eq!(row_key("t", &[&"1", &"2:3"]), "t:1:2%3A3");
        assert_eq!(row_key("t", &[&"50%"]), "t:50%25");
        assert_eq!(row_key("t", &[&"%3A"]), "t:%253A");
    }

    #[test]
    fn row_keys_parse_back() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Key {
            owner: String,
            day: i32,
            id: uuid::Uuid,
        }
        let id = uuid::Uuid::from_u128(7);
        let rendered = row_key("t", &[&"a:b%c", &-3, &id]);
        let key: Option<Key> = parse("t", 3, &rendered);
        assert_eq!(
            key,
            Some(Key {
                owner: "a:b%c".into(),
                day: -3,
                id
            })
        );
        assert_eq!(parse::<Key>("u", 3, &rendered), None, "another table");
        assert_eq!(parse::<Key>("t", 3, "t:a:x:y"), None, "not a number");
        assert_eq!(parse::<Key>("t", 3, &partition_key("t", &[&"a", &1])), None);
        assert_eq!(parse::<Key>("t", 3, "t:a%2:1:x"), None, "a bad escape");
    }

    #[test]
    fn no_row_key_is_a_partition_key() {
        let partition = partition_key("t", &[&"p"]);
        assert_eq!(partition, "t:p:%partition");
        for clustering in ["%partition", "#partition", "%25partition", ":%partition"] {
            assert_ne!(row_key("t", &[&"p", &clustering]), partition);
        }
        // A partition key of more parts is no row key either.
        assert_ne!(
            row_key("t", &[&"p", &"partition"]),
            partition_key("t", &[&"p"])
        );
    }
}
