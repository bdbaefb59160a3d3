//! Reads an entity struct: its `#[entity(…)]` arguments and each field's
//! role, CQL column name and CQL type. Every mistake is collected.

use syn::{
    Data, DeriveInput, Expr, ExprLit, Fields, GenericArgument, Ident, Lit, LitStr, PathArguments,
    Type,
};

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
    pub(crate) column: String,
    pub(crate) cql_type: String,
    pub(crate) role: Role,
}

pub(crate) struct Entity {
    pub(crate) ident: Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) keyspace: String,
    pub(crate) table: String,
    pub(crate) ttl_ms: u64,
    pub(crate) cache_partitions: bool,
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
}

/// The driver binds at most 16 values; `save_with_ttl` binds one more than
/// the columns.
const MAX_COLUMNS: usize = 15;

const SUPPORTED: &str = "String, i8, i16, i32, i64, f32, f64, bool, uuid::Uuid, \
     chrono::DateTime<Utc>, Vec<u8>, Vec<T>, HashSet<T>, BTreeSet<T>, HashMap<K, V>, \
     BTreeMap<K, V>, Option<T>";

fn last_segment(ty: &Type) -> Option<(&Ident, Vec<&Type>)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let args = match &last.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&last.ident, args))
}

/// The CQL type of a Rust type, or `None` if it has none.
pub(crate) fn cql_type(ty: &Type) -> Option<String> {
    let (ident, args) = last_segment(ty)?;
    let name = ident.to_string();
    let simple = match name.as_str() {
        "String" => "text",
        "i8" => "tinyint",
        "i16" => "smallint",
        "i32" => "int",
        "i64" => "bigint",
        "f32" => "float",
        "f64" => "double",
        "bool" => "boolean",
        "Uuid" => "uuid",
        "DateTime" => "timestamp",
        _ => "",
    };
    if !simple.is_empty() {
        return Some(simple.to_owned());
    }
    match (name.as_str(), args.as_slice()) {
        ("Option", [inner]) => cql_type(inner),
        ("Vec", [inner]) if last_segment(inner).is_some_and(|(i, _)| i == "u8") => {
            Some("blob".to_owned())
        }
        ("Vec", [inner]) => Some(format!("list<{}>", cql_type(inner)?)),
        ("HashSet" | "BTreeSet", [inner]) => Some(format!("set<{}>", cql_type(inner)?)),
        ("HashMap" | "BTreeMap", [key, value]) => {
            Some(format!("map<{}, {}>", cql_type(key)?, cql_type(value)?))
        }
        _ => None,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|(ident, _)| ident == "Option")
}

fn string_arg(value: &Expr, name: &str, errors: &mut Errors) -> Option<LitStr> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    {
        return Some(lit.clone());
    }
    errors.push(syn::Error::new_spanned(
        value,
        format!("`{name}` takes a string literal"),
    ));
    None
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
                "keyspace" => keyspace = string_arg(&value, "keyspace", errors).map(|l| l.value()),
                "table" => table = string_arg(&value, "table", errors).map(|l| l.value()),
                "ttl" => {
                    if let Some(lit) = string_arg(&value, "ttl", errors) {
                        match ttl::parse_millis(&lit.value()) {
                            Ok(ms) => ttl_ms = Some(ms),
                            Err(message) => errors.push(syn::Error::new_spanned(lit, message)),
                        }
                    }
                }
                "cache_partitions" => match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => cache_partitions = b.value,
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "`cache_partitions` takes `true` or `false`",
                    )),
                },
                _ => errors.push(syn::Error::new_spanned(
                    &meta.path,
                    format!(
                        "unknown argument `{name}` of #[entity]; valid arguments are: \
                         keyspace, table, ttl, cache_partitions"
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
    let mut fields = Vec::new();
    for field in &named.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut role = Role::Regular;
        let mut column = ident.to_string();
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
                        let name: LitStr = meta.value()?.parse()?;
                        column = name.value();
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
        // A field whose type has no column is still a field: its role counts
        // in the checks below, and expansion stops at the error anyway.
        let cql_type = cql_type(&field.ty).unwrap_or_else(|| {
            errors.push(syn::Error::new_spanned(
                &field.ty,
                format!(
                    "field `{ident}` has a type with no CQL column type; supported types: {SUPPORTED}"
                ),
            ));
            String::new()
        });
        if role != Role::Regular && is_option(&field.ty) {
            errors.push(syn::Error::new_spanned(
                &field.ty,
                format!("key field `{ident}` cannot be an `Option`: primary key columns always have a value"),
            ));
        }
        fields.push(Field {
            ident,
            ty: field.ty.clone(),
            column,
            cql_type,
            role,
        });
    }
    if named.named.len() > MAX_COLUMNS {
        errors.push(syn::Error::new_spanned(
            &input.ident,
            format!(
                "an entity has at most {MAX_COLUMNS} fields: the scylla driver binds up to 16 \
                 values, the TTL of `save_with_ttl` included"
            ),
        ));
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
        fields,
    })
}
