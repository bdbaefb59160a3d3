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

/// How the cache holds a row: `#[entity(layout = "…")]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Blob,
    Hash,
}

pub(crate) struct Entity {
    pub(crate) ident: Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) keyspace: String,
    pub(crate) table: String,
    pub(crate) ttl_ms: u64,
    pub(crate) cache_partitions: bool,
    pub(crate) write: Write,
    pub(crate) layout: Layout,
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

    /// The `#[counter]` fields: all the regular fields of a table of
    /// counters, none otherwise.
    pub(crate) fn counters(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| is_counter(f))
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
        Kind::Counter => Some(format!(
            "key field `{ident}` cannot be a #[counter]: Cassandra's primary key columns \
             cannot be counters; count in a regular field"
        )),
    }
}

/// The column of a `#[counter]` field, or why it cannot be one.
fn counter_column(ident: &Ident, ty: &Type, column: Option<Column>) -> Result<Column, String> {
    if column.is_some_and(|c| c.cql == "bigint" && !c.optional) {
        return Ok(Column {
            cql: "counter".to_owned(),
            kind: Kind::Counter,
            optional: false,
        });
    }
    // Tokens print spaced (`Option < i64 >`); a type reads better without.
    let written = quote::ToTokens::to_token_stream(ty)
        .to_string()
        .replace(' ', "");
    Err(format!(
        "#[counter] field `{ident}` is `{written}`; a counter is an `i64` (CQL `counter`, a \
         64-bit signed integer; one never incremented reads as 0)"
    ))
}

/// Whether `field` is a counter column (a key marked `#[counter]` is an
/// error of its own, not a counter).
fn is_counter(field: &Field) -> bool {
    field.role == Role::Regular && field.column.kind == Kind::Counter
}

/// The errors of a table of counters: Cassandra keeps counters only in
/// tables whose every regular column is one, and an increment cannot be
/// written behind.
fn check_counters(fields: &[Field], write: Option<&(Write, LitStr)>, errors: &mut Errors) {
    let Some(first) = fields.iter().find(|f| is_counter(f)) else {
        return;
    };
    for field in fields
        .iter()
        .filter(|f| f.role == Role::Regular && f.column.kind != Kind::Counter)
    {
        errors.push(syn::Error::new_spanned(
            &field.ident,
            format!(
                "field `{}` is not a #[counter], but `{}` is: Cassandra keeps counters only \
                 in tables whose every non-key column is a counter; make `{}` a #[counter] \
                 or keep it in another entity (another table)",
                field.ident, first.ident, field.ident
            ),
        ));
    }
    if let Some((Write::Behind, lit)) = write {
        errors.push(syn::Error::new_spanned(
            lit,
            format!(
                "a table of counters (`{}` is a #[counter]) cannot be written behind: an \
                 increment is not idempotent, so a record a flusher writes again (after a \
                 crash or a takeover) would count twice; use write = \"invalidate\" (the \
                 default: an increment evicts the row) or \"through\" (it reads the new \
                 totals back)",
                first.ident
            ),
        ));
    }
}

/// `views` → `Views`, `page_hits` → `PageHits`: a field's variant in
/// `{Entity}Counter`.
pub(crate) fn variant_name(ident: &Ident) -> String {
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let mut variant = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            variant.extend(c.to_uppercase());
            upper = false;
        } else {
            variant.push(c);
        }
    }
    if variant.is_empty() || variant.starts_with(|c: char| c.is_ascii_digit()) {
        variant.insert(0, 'C');
    }
    variant
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
    let mut write_lit: Option<(Write, LitStr)> = None;
    let mut layout = Layout::Blob;
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
                        let mode = match lit.value().as_str() {
                            "invalidate" => Some(Write::Invalidate),
                            "through" => Some(Write::Through),
                            "behind" => Some(Write::Behind),
                            _ => None,
                        };
                        match mode {
                            Some(mode) => {
                                write = mode;
                                write_lit = Some((mode, lit));
                            }
                            None => errors.push(syn::Error::new_spanned(
                                lit,
                                "`write` is \"invalidate\" (the default: a save evicts the \
                                 cached row), \"through\" (a save stores it) or \"behind\" \
                                 (a save goes to Redis, then to Cassandra)",
                            )),
                        }
                    }
                }
                "layout" => {
                    if let Some(lit) = string_arg(&value, "layout", errors) {
                        match lit.value().as_str() {
                            "blob" => layout = Layout::Blob,
                            "hash" => layout = Layout::Hash,
                            _ => errors.push(syn::Error::new_spanned(
                                lit,
                                "`layout` is \"blob\" (the default: a row is one encoded value, \
                                 read with one GET) or \"hash\" (a Redis hash with a field per \
                                 column: a patch sets only its fields)",
                            )),
                        }
                    }
                }
                _ => errors.push(syn::Error::new_spanned(
                    &meta.path,
                    format!(
                        "unknown argument `{name}` of #[entity]; valid arguments are: \
                         keyspace, table, ttl, cache_partitions, write, layout"
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
        let mut counter = false;
        for attr in &field.attrs {
            if attr.path().is_ident("counter") {
                if attr.meta.require_path_only().is_err() {
                    errors.push(syn::Error::new_spanned(
                        &attr.meta,
                        "#[counter] takes no arguments: the field is a CQL `counter`, \
                         changed by `Repository::increment`",
                    ));
                }
                counter = true;
            } else if attr.path().is_ident("partition_key") {
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
        let column = match (types::column(&field.ty), counter) {
            (column, true) => {
                counter_column(&ident, &field.ty, column.ok()).unwrap_or_else(|message| {
                    errors.push(syn::Error::new_spanned(&field.ty, message));
                    // Still a counter: the checks of its table below apply.
                    Column {
                        cql: String::new(),
                        kind: Kind::Counter,
                        optional: false,
                    }
                })
            }
            (Ok(column), false) => column,
            (Err(why), false) => {
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
    check_counters(&fields, write_lit.as_ref(), errors);
    check_variants(&fields, errors);
    let mut variants: Vec<(String, &Ident)> = Vec::new();
    for field in fields.iter().filter(|f| is_counter(f)) {
        let variant = variant_name(&field.ident);
        match variants.iter().find(|(seen, _)| *seen == variant) {
            Some((_, first)) => errors.push(syn::Error::new_spanned(
                &field.ident,
                format!(
                    "counter `{}` and counter `{first}` both name the variant \
                     `{variant}` of the entity's counter enum; rename one of the fields \
                     (a #[column(name = \"…\")] keeps its column)",
                    field.ident
                ),
            )),
            None => variants.push((variant, &field.ident)),
        }
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
        layout,
        fields,
    })
}

/// Two patchable fields whose names give one variant of `{Entity}Field`.
fn check_variants(fields: &[Field], errors: &mut Errors) {
    let mut variants: Vec<(String, &Ident)> = Vec::new();
    for field in fields
        .iter()
        .filter(|f| f.role == Role::Regular && f.column.kind != Kind::Counter)
    {
        let variant = variant_name(&field.ident);
        match variants.iter().find(|(seen, _)| *seen == variant) {
            Some((_, first)) => errors.push(syn::Error::new_spanned(
                &field.ident,
                format!(
                    "field `{}` and field `{first}` both name the variant `{variant}` of the \
                     entity's field enum; rename one of the fields (a #[column(name = \"…\")] \
                     keeps its column)",
                    field.ident
                ),
            )),
            None => variants.push((variant, &field.ident)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str) -> String {
        variant_name(&syn::parse_str::<Ident>(name).expect("an identifier"))
    }

    fn errors_of(item: &str) -> Vec<String> {
        let input: DeriveInput = syn::parse_str(item).expect("a struct");
        let mut errors = Errors::default();
        let _ = parse(&input, &mut errors);
        errors.messages()
    }

    #[test]
    fn counter_variants_are_upper_camel_case() {
        assert_eq!(variant("views"), "Views");
        assert_eq!(variant("page_views"), "PageViews");
        assert_eq!(variant("_hidden"), "Hidden");
        assert_eq!(variant("r#type"), "Type");
        assert_eq!(variant("a__b"), variant("a_b"));
        assert_eq!(variant("_1st"), "C1st");
    }

    #[test]
    fn a_table_of_counters_is_checked_whole() {
        let accepted = errors_of(
            "#[entity(keyspace = \"k\", table = \"t\", ttl = \"1m\", write = \"through\")]
             struct Hits { #[partition_key] id: i64, #[counter] views: i64, #[counter] clicks: i64 }",
        );
        assert!(accepted.is_empty(), "{accepted:?}");
        let refused = errors_of(
            "#[entity(keyspace = \"k\", table = \"t\", ttl = \"1m\", write = \"behind\")]
             struct Hits {
                 #[partition_key] #[counter] id: i64,
                 #[counter] views: u64,
                 name: String,
                 #[counter] a__b: i64,
                 #[counter] a_b: i64,
             }",
        );
        let expected = [
            "key field `id` cannot be a #[counter]",
            "#[counter] field `views` is `u64`",
            "field `name` is not a #[counter], but `views` is",
            "cannot be written behind",
            "counter `a_b` and counter `a__b` both name the variant `AB`",
        ];
        assert_eq!(refused.len(), expected.len(), "{refused:#?}");
        for (message, part) in refused.iter().zip(expected) {
            assert!(message.contains(part), "{message:?} vs {part:?}");
        }
    }
}
