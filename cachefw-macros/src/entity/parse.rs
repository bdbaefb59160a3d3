//! Reads an entity struct: its `#[entity(…)]` arguments and each field's
//! role, CQL column name and CQL type. Every mistake is collected, each
//! spanned on the text that has to change.

use syn::{Data, DeriveInput, Expr, ExprLit, Fields, Ident, Lit, LitStr, Type};

use super::types::{self, Column, Kind, SUPPORTED, Unsupported};
use crate::errors::Errors;
use crate::ttl;

/// What a field is in the primary key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Partition,
    Clustering { descending: bool },
    Regular,
}

pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// The column's name, as written (quoted where needed by `cql::ident`).
    pub(crate) name: String,
    pub(crate) column: Column,
    pub(crate) role: Role,
}

/// How a repository writes the entity: `#[entity(write = "…")]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Invalidate,
    Through,
    Behind,
}

pub(crate) struct Entity {
    pub(crate) ident: Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) keyspace: String,
    pub(crate) table: String,
    pub(crate) ttl_ms: u64,
    pub(crate) cache_partitions: bool,
    pub(crate) write: Write,
    pub(crate) fields: Vec<Field>,
}

impl Entity {
    pub(crate) fn partition_keys(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.role == Role::Partition)
    }

    pub(crate) fn clustering_keys(&self) -> impl Iterator<Item = &Field> {
        self.fields
            .iter()
            .filter(|f| matches!(f.role, Role::Clustering { .. }))
    }

    pub(crate) fn key_fields(&self) -> impl Iterator<Item = &Field> {
        self.partition_keys().chain(self.clustering_keys())
    }

    pub(crate) fn regular_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.role == Role::Regular)
    }
}

/// Whether `name` can name a keyspace or a table: Cassandra allows 1 to 48
/// letters, digits and `_`. The table name also starts every cache key, so
/// this is what keeps `:` and `%` out of that part of the key.
fn is_schema_name(name: &str) -> bool {
    (1..=48).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a key field's column cannot be part of a primary key, if it cannot.
fn key_refusal(ident: &Ident, column: &Column) -> Option<String> {
    match column.kind {
        Kind::Scalar => None,
        Kind::Float => Some(format!(
            "key field `{ident}` is a float: a float key finds a row only by the \
             bit-identical value (a key computed as 0.1 + 0.2 misses the row at 0.3), and \
             every NaN renders as `NaN` in the cache key; use an integer (e.g. fixed-point) \
             or a text key"
        )),
        Kind::Blob => Some(format!(
            "key field `{ident}` is a blob (`Vec<u8>`): it has no `Display` to render in the \
             cache key; use a text or uuid key"
        )),
        Kind::Collection => Some(format!(
            "key field `{ident}` is a collection: Cassandra keys rows only by frozen \
             collections, and a collection has no `Display` to render in the cache key; \
             use a scalar key"
        )),
    }
}

/// The expression inside the invisible groups that `macro_rules!` puts
/// around a substituted fragment (`table = $table`).
fn ungrouped(mut value: &Expr) -> &Expr {
    while let Expr::Group(group) = value {
        value = &group.expr;
    }
    value
}

fn string_arg(value: &Expr, name: &str, errors: &mut Errors) -> Option<LitStr> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = ungrouped(value)
    {
        return Some(lit.clone());
    }
    errors.push(syn::Error::new_spanned(
        value,
        format!("`{name}` takes a string literal"),
    ));
    None
}

/// A keyspace or table name: a string literal of letters, digits and `_`.
fn schema_name(value: &Expr, name: &str, errors: &mut Errors) -> Option<String> {
    let lit = string_arg(value, name, errors)?;
    if is_schema_name(&lit.value()) {
        return Some(lit.value());
    }
    errors.push(syn::Error::new_spanned(
        &lit,
        format!("`{name}` is 1 to 48 letters, digits and `_` (what Cassandra accepts)"),
    ));
    // The name is wrong but present: report only this error for it.
    Some(lit.value())
}

pub(crate) fn parse(input: &DeriveInput, errors: &mut Errors) -> Option<Entity> {
    let Data::Struct(data) = &input.data else {
        errors.push(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Entity)] goes on a struct with named fields",
        ));
        return None;
    };
    let Fields::Named(named) = &data.fields else {
        errors.push(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Entity)] goes on a struct with named fields",
        ));
        return None;
    };
    let mut keyspace = None;
    let mut table = None;
    let mut ttl_ms = None;
    let mut cache_partitions = false;
    let mut write = Write::Invalidate;
    let mut found_entity = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("entity")) {
        found_entity = true;
        let result = attr.parse_nested_meta(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let value: Expr = meta.value()?.parse()?;
            match name.as_str() {
                "keyspace" => keyspace = schema_name(&value, "keyspace", errors),
                "table" => table = schema_name(&value, "table", errors),
                "ttl" => {
                    if let Some(lit) = string_arg(&value, "ttl", errors) {
                        match ttl::parse_millis(&lit.value()) {
                            Ok(ms) => ttl_ms = Some(ms),
                            Err(message) => errors.push(syn::Error::new_spanned(lit, message)),
                        }
                    }
                }
                "cache_partitions" => match ungrouped(&value) {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => cache_partitions = b.value,
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "`cache_partitions` takes `true` or `false`",
                    )),
                },
                "write" => {
                    if let Some(lit) = string_arg(&value, "write", errors) {
                        match lit.value().as_str() {
                            "invalidate" => write = Write::Invalidate,
                            "through" => write = Write::Through,
                            "behind" => write = Write::Behind,
                            _ => errors.push(syn::Error::new_spanned(
                                lit,
                                "`write` is \"invalidate\" (the default: a save evicts the \
                                 cached row), \"through\" (a save stores it) or \"behind\" \
                                 (a save goes to Redis, then to Cassandra)",
                            )),
                        }
                    }
                }
                _ => errors.push(syn::Error::new_spanned(
                    &meta.path,
                    format!(
                        "unknown argument `{name}` of #[entity]; valid arguments are: \
                         keyspace, table, ttl, cache_partitions, write"
                    ),
                )),
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if !found_entity {
        errors.push(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Entity)] needs #[entity(keyspace = \"…\", table = \"…\", ttl = \"…\")]",
        ));
    }
    let mut fields: Vec<Field> = Vec::new();
    for field in &named.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut role = Role::Regular;
        let mut name = ident.to_string();
        for attr in &field.attrs {
            if attr.path().is_ident("partition_key") {
                role = Role::Partition;
            } else if attr.path().is_ident("clustering_key") {
                let mut descending = false;
                if !matches!(attr.meta, syn::Meta::Path(_)) {
                    let result = attr.parse_nested_meta(|meta| {
                        if meta.path.is_ident("order") {
                            let order: LitStr = meta.value()?.parse()?;
                            match order.value().as_str() {
                                "asc" => {}
                                "desc" => descending = true,
                                _ => errors.push(syn::Error::new_spanned(
                                    order,
                                    "`order` is \"asc\" or \"desc\"",
                                )),
                            }
                            Ok(())
                        } else {
                            Err(meta.error("#[clustering_key] takes only `order = \"desc\"`"))
                        }
                    });
                    if let Err(error) = result {
                        errors.push(error);
                    }
                }
                role = Role::Clustering { descending };
            } else if attr.path().is_ident("column") {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("name") {
                        let lit: LitStr = meta.value()?.parse()?;
                        if lit.value().is_empty() {
                            errors.push(syn::Error::new_spanned(
                                &lit,
                                "a column name cannot be empty",
                            ));
                        }
                        name = lit.value();
                        Ok(())
                    } else {
                        Err(meta.error("#[column] takes only `name = \"…\"`"))
                    }
                });
                if let Err(error) = result {
                    errors.push(error);
                }
            }
        }
        if let Some(first) = fields.iter().find(|f| f.name == name) {
            errors.push(syn::Error::new_spanned(
                &ident,
                format!(
                    "field `{ident}` maps to column `{name}`, as field `{}` does; \
                     rename one with #[column(name = \"…\")]",
                    first.ident
                ),
            ));
        }
        // A field whose type has no column is still a field: its role counts
        // in the checks below, and expansion stops at the error anyway.
        let column = match types::column(&field.ty) {
            Ok(column) => column,
            Err(why) => {
                let message = match why {
                    Unsupported::Unknown => format!(
                        "field `{ident}` has a type with no CQL column type; \
                         supported types: {SUPPORTED}"
                    ),
                    Unsupported::NullInCollection => format!(
                        "field `{ident}` has an `Option` inside a collection: Cassandra \
                         collections cannot hold null; drop the inner `Option`"
                    ),
                };
                errors.push(syn::Error::new_spanned(&field.ty, message));
                Column {
                    cql: String::new(),
                    kind: Kind::Scalar,
                    optional: false,
                }
            }
        };
        if role != Role::Regular {
            if column.optional {
                errors.push(syn::Error::new_spanned(
                    &field.ty,
                    format!(
                        "key field `{ident}` cannot be an `Option`: primary key columns \
                         always have a value"
                    ),
                ));
            } else if let Some(message) = key_refusal(&ident, &column) {
                errors.push(syn::Error::new_spanned(&field.ty, message));
            }
        }
        fields.push(Field {
            ident,
            ty: field.ty.clone(),
            name,
            column,
            role,
        });
    }
    if !fields.iter().any(|f| f.role == Role::Partition) && !named.named.is_empty() {
        errors.push(syn::Error::new_spanned(
            &input.ident,
            "an entity needs at least one #[partition_key] field",
        ));
    }
    let (Some(keyspace), Some(table), Some(ttl_ms)) = (keyspace, table, ttl_ms) else {
        if found_entity {
            errors.push(syn::Error::new_spanned(
                &input.ident,
                "#[entity] needs `keyspace = \"…\"`, `table = \"…\"` and `ttl = \"…\"`",
            ));
        }
        return None;
    };
    Some(Entity {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        keyspace,
        table,
        ttl_ms,
        cache_partitions,
        write,
        fields,
    })
}
