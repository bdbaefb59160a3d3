//! The CQL column type of a field's Rust type, read from the type's path
//! (the derive sees tokens, not resolved types).
//!
//! A collection inside a collection is `frozen<…>`: Cassandra stores only
//! frozen (serialized as one value) collections as elements, keys or values
//! of another collection. The outer collection stays unfrozen, so it can be
//! read and written as the driver does for any list, set or map.

use syn::{GenericArgument, Ident, PathArguments, Type};

/// The Rust types that have a column type, as error messages list them.
pub(crate) const SUPPORTED: &str = "String, i8, i16, i32, i64, f32, f64, bool, uuid::Uuid, \
     chrono::DateTime<Utc>, Vec<u8>, Vec<T>, HashSet<T>, BTreeSet<T>, HashMap<K, V>, \
     BTreeMap<K, V>, Option<T>";

/// What a column's values are, as far as keys and `TTL()` care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Text, integers, booleans, UUIDs, timestamps.
    Scalar,
    /// `float` or `double`.
    Float,
    /// `blob` (`Vec<u8>`).
    Blob,
    /// A list, set or map.
    Collection,
    /// A `#[counter]` (an `i64` as CQL `counter`): no `TTL()`, never a key.
    Counter,
}

/// A field's column type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Column {
    /// The CQL type, e.g. `list<frozen<list<text>>>`.
    pub(crate) cql: String,
    /// The kind of the outermost type (under `Option`).
    pub(crate) kind: Kind,
    /// Whether the field is an `Option` (the column may be null).
    pub(crate) optional: bool,
}

/// Why a type has no column type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unsupported {
    /// No CQL type corresponds to the type.
    Unknown,
    /// An `Option` inside a collection: collections cannot hold null.
    NullInCollection,
}

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

/// The column type of a field of type `ty`.
pub(crate) fn column(ty: &Type) -> Result<Column, Unsupported> {
    let (ty, optional) = match last_segment(ty) {
        Some((ident, args)) if ident == "Option" => match args.as_slice() {
            [inner] => (*inner, true),
            _ => return Err(Unsupported::Unknown),
        },
        _ => (ty, false),
    };
    let (cql, kind) = inner(ty, false)?;
    Ok(Column {
        cql,
        kind,
        optional,
    })
}

/// The CQL type of `ty`; `nested` when `ty` is inside a collection, where a
/// collection must be frozen.
fn inner(ty: &Type, nested: bool) -> Result<(String, Kind), Unsupported> {
    let (ident, args) = last_segment(ty).ok_or(Unsupported::Unknown)?;
    let name = ident.to_string();
    let scalar = match (name.as_str(), args.as_slice()) {
        ("String", []) => Some(("text", Kind::Scalar)),
        ("i8", []) => Some(("tinyint", Kind::Scalar)),
        ("i16", []) => Some(("smallint", Kind::Scalar)),
        ("i32", []) => Some(("int", Kind::Scalar)),
        ("i64", []) => Some(("bigint", Kind::Scalar)),
        ("f32", []) => Some(("float", Kind::Float)),
        ("f64", []) => Some(("double", Kind::Float)),
        ("bool", []) => Some(("boolean", Kind::Scalar)),
        ("Uuid", []) => Some(("uuid", Kind::Scalar)),
        // `DateTime<Utc>`: the timezone argument is not checked here; the
        // driver's type check refuses any other at the first statement.
        ("DateTime", _) => Some(("timestamp", Kind::Scalar)),
        ("Vec", [item]) if last_segment(item).is_some_and(|(i, a)| i == "u8" && a.is_empty()) => {
            Some(("blob", Kind::Blob))
        }
        _ => None,
    };
    if let Some((cql, kind)) = scalar {
        return Ok((cql.to_owned(), kind));
    }
    let collection = match (name.as_str(), args.as_slice()) {
        ("Option", [_]) if nested => return Err(Unsupported::NullInCollection),
        ("Vec", [item]) => format!("list<{}>", inner(item, true)?.0),
        ("HashSet" | "BTreeSet", [item]) => format!("set<{}>", inner(item, true)?.0),
        ("HashMap" | "BTreeMap", [key, value]) => {
            format!("map<{}, {}>", inner(key, true)?.0, inner(value, true)?.0)
        }
        _ => return Err(Unsupported::Unknown),
    };
    let cql = if nested {
        format!("frozen<{collection}>")
    } else {
        collection
    };
    Ok((cql, Kind::Collection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cql(ty: &str) -> Result<String, Unsupported> {
        let ty: Type = syn::parse_str(ty).expect("a type");
        column(&ty).map(|c| c.cql)
    }

    #[test]
    fn nested_collections_are_frozen() {
        assert_eq!(cql("Vec<String>").as_deref(), Ok("list<text>"));
        assert_eq!(
            cql("Vec<Vec<String>>").as_deref(),
            Ok("list<frozen<list<text>>>")
        );
        assert_eq!(
            cql("HashMap<BTreeSet<i32>, Vec<Vec<u8>>>").as_deref(),
            Ok("map<frozen<set<int>>, frozen<list<blob>>>")
        );
        assert_eq!(
            cql("Option<Vec<HashMap<String, Vec<i64>>>>").as_deref(),
            Ok("list<frozen<map<text, frozen<list<bigint>>>>>")
        );
    }

    #[test]
    fn kinds_and_refusals() {
        let ty: Type = syn::parse_str("Option<f64>").expect("a type");
        assert_eq!(
            column(&ty),
            Ok(Column {
                cql: "double".into(),
                kind: Kind::Float,
                optional: true
            })
        );
        assert_eq!(cql("Vec<Option<i32>>"), Err(Unsupported::NullInCollection));
        assert_eq!(cql("Option<Option<i32>>"), Err(Unsupported::Unknown));
        assert_eq!(cql("u64"), Err(Unsupported::Unknown));
        assert_eq!(cql("String<u8>"), Err(Unsupported::Unknown));
    }
}
