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
