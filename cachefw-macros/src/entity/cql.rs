//! The CQL text of every statement of an entity, built at compile time.

use super::parse::{Entity, Field, Role};
use super::types::Kind;

/// Reserved CQL keywords: as identifiers they must be double-quoted. The
/// union of the reserved lists of Apache Cassandra 3.x to 5.0 and ScyllaDB
/// (their "Appendix A: CQL Keywords"); quoting a name that turns out not to
/// be reserved on some server is harmless, as a quoted lowercase name is the
/// same name unquoted.
const RESERVED: &[&str] = &[
    "add",
    "allow",
    "alter",
    "and",
    "apply",
    "asc",
    "authorize",
    "batch",
    "begin",
    "by",
    "columnfamily",
    "create",
    "default",
    "delete",
    "desc",
    "describe",
    "drop",
    "entries",
    "execute",
    "for",
    "from",
    "full",
    "grant",
    "if",
    "in",
    "index",
    "infinity",
    "insert",
    "into",
    "is",
    "keyspace",
    "keyspaces",
    "limit",
    "materialized",
    "mbean",
    "mbeans",
    "modify",
    "nan",
    "norecursive",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "primary",
    "rename",
    "replace",
    "revoke",
    "schema",
    "select",
    "set",
    "table",
    "to",
    "token",
    "truncate",
    "unlogged",
    "unset",
    "update",
    "use",
    "using",
    "view",
    "where",
    "with",
];

/// `name` as a CQL identifier: as it is when it is a lowercase name that is
/// not a reserved keyword, double-quoted otherwise (an unquoted name is
/// folded to lowercase by Cassandra, so `userId` must be quoted to stay
/// `userId`).
pub(crate) fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

pub(crate) struct Statements {
    pub(crate) create_table: String,
    pub(crate) insert: String,
    pub(crate) insert_with_ttl: String,
    pub(crate) insert_if_not_exists: String,
    pub(crate) select: String,
    pub(crate) select_with_ttl: Option<String>,
    pub(crate) delete: String,
    pub(crate) select_partition: String,
    pub(crate) select_partition_with_ttl: Option<String>,
    pub(crate) update: String,
    pub(crate) key_condition: String,
    /// `UPDATE … SET c = c + ? WHERE …` of each counter, in field order.
    pub(crate) increments: Vec<String>,
}

/// The columns whose `TTL()` a select reads, when the row's remaining life
/// can be read at all: `TTL()` exists for every regular column that is not a
/// collection or a counter (counters never expire), and a row written by
/// the repository has a value (hence a TTL) in each non-`Option` one, so
/// one of those must exist.
fn ttl_columns(entity: &Entity) -> Option<Vec<&Field>> {
    let readable: Vec<&Field> = entity
        .fields
        .iter()
        .filter(|f| {
            f.role == Role::Regular && !matches!(f.column.kind, Kind::Collection | Kind::Counter)
        })
        .collect();
    readable
        .iter()
        .any(|f| !f.column.optional)
        .then_some(readable)
}

pub(crate) fn statements(entity: &Entity) -> Statements {
    let table = format!("{}.{}", ident(&entity.keyspace), ident(&entity.table));
    let columns: Vec<String> = entity.fields.iter().map(|f| ident(&f.name)).collect();
    let all = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let equals = |fields: Vec<&Field>| {
        fields
            .iter()
            .map(|f| format!("{} = ?", ident(&f.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let key_where = equals(entity.key_fields().collect());
    let partition_where = equals(entity.partition_keys().collect());
    let with_ttl = ttl_columns(entity).map(|fields| {
        let ttls: Vec<String> = fields
            .iter()
            .map(|f| format!("TTL({})", ident(&f.name)))
            .collect();
        format!("{all}, {}", ttls.join(", "))
    });

    let definitions: Vec<String> = entity
        .fields
        .iter()
        .map(|f| format!("{} {}", ident(&f.name), f.column.cql))
        .collect();
    let partition: Vec<String> = entity.partition_keys().map(|f| ident(&f.name)).collect();
    let clustering: Vec<String> = entity.clustering_keys().map(|f| ident(&f.name)).collect();
    let mut primary = format!("({})", partition.join(", "));
    for column in &clustering {
        primary.push_str(", ");
        primary.push_str(column);
    }
    let mut create_table = format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}, PRIMARY KEY ({primary}))",
        definitions.join(", ")
    );
    if entity
        .clustering_keys()
        .any(|f| f.role == Role::Clustering { descending: true })
    {
        let order: Vec<String> = entity
            .clustering_keys()
            .map(|f| {
                let direction = if f.role == (Role::Clustering { descending: true }) {
                    "DESC"
                } else {
                    "ASC"
                };
                format!("{} {direction}", ident(&f.name))
            })
            .collect();
        create_table.push_str(&format!(" WITH CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    let insert = format!("INSERT INTO {table} ({all}) VALUES ({marks})");
    Statements {
        create_table,
        insert_with_ttl: format!("{insert} USING TTL ?"),
        insert_if_not_exists: format!("{insert} IF NOT EXISTS"),
        insert,
        select: format!("SELECT {all} FROM {table} WHERE {key_where}"),
        select_with_ttl: with_ttl
            .as_ref()
            .map(|columns| format!("SELECT {columns} FROM {table} WHERE {key_where}")),
        delete: format!("DELETE FROM {table} WHERE {key_where}"),
        select_partition: format!("SELECT {all} FROM {table} WHERE {partition_where}"),
        select_partition_with_ttl: with_ttl
            .map(|columns| format!("SELECT {columns} FROM {table} WHERE {partition_where}")),
        increments: entity
            .counters()
            .map(|f| {
                let column = ident(&f.name);
                format!("UPDATE {table} SET {column} = {column} + ? WHERE {key_where}")
            })
            .collect(),
        update: format!("UPDATE {table}"),
        key_condition: key_where,
    }
}

#[cfg(test)]
mod tests {
    use super::ident;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(ident("user_id"), "user_id");
        assert_eq!(ident("_x1"), "_x1");
        assert_eq!(ident("userId"), "\"userId\"");
        assert_eq!(ident("1st"), "\"1st\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(ident("order"), "\"order\"");
        assert_eq!(ident("from"), "\"from\"");
        // Non-reserved keywords are plain identifiers.
        assert_eq!(ident("key"), "key");
        assert_eq!(ident("ttl"), "ttl");
    }
}
