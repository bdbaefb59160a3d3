//! The CQL text of every statement of an entity, built at compile time.

use super::parse::{Entity, Role};

/// `name` as a CQL identifier: as it is when it is a plain lowercase name,
/// double-quoted otherwise.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
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
    pub(crate) delete: String,
    pub(crate) select_partition: String,
}

pub(crate) fn statements(entity: &Entity) -> Statements {
    let table = format!("{}.{}", ident(&entity.keyspace), ident(&entity.table));
    let columns: Vec<String> = entity.fields.iter().map(|f| ident(&f.column)).collect();
    let all = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let equals = |fields: Vec<&super::parse::Field>| {
        fields
            .iter()
            .map(|f| format!("{} = ?", ident(&f.column)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let key_where = equals(entity.key_fields().collect());
    let partition_where = equals(entity.partition_keys().collect());

    let definitions: Vec<String> = entity
        .fields
        .iter()
        .map(|f| format!("{} {}", ident(&f.column), f.cql_type))
        .collect();
    let partition: Vec<String> = entity.partition_keys().map(|f| ident(&f.column)).collect();
    let clustering: Vec<String> = entity.clustering_keys().map(|f| ident(&f.column)).collect();
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
                format!("{} {direction}", ident(&f.column))
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
        delete: format!("DELETE FROM {table} WHERE {key_where}"),
        select_partition: format!("SELECT {all} FROM {table} WHERE {partition_where}"),
    }
}

#[cfg(test)]
mod tests {
    use super::ident;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(ident("user_id"), "user_id");
        assert_eq!(ident("userId"), "\"userId\"");
        assert_eq!(ident("1st"), "\"1st\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }
}
