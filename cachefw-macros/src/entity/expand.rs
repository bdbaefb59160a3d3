//! The items `#[derive(Entity)]` emits: the key and partition structs and the
//! `cachefw_cassandra::Entity` implementation.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::cql;
use super::fields::field_items;
use super::parse::{self, Entity, Field, Write};
use super::types::Kind;

pub(crate) fn expand(entity: &Entity) -> TokenStream {
    let ident = &entity.ident;
    let vis = &entity.vis;
    let key = format_ident!("{}Key", ident);
    let partition = format_ident!("{}Partition", ident);
    let key_fields: Vec<&Field> = entity.key_fields().collect();
    let partition_fields: Vec<&Field> = entity.partition_keys().collect();

    let declare = |fields: &[&Field]| {
        fields
            .iter()
            .map(|f| {
                let (name, ty) = (&f.ident, &f.ty);
                quote!(#vis #name: #ty)
            })
            .collect::<Vec<_>>()
    };
    let key_decl = declare(&key_fields);
    let partition_decl = declare(&partition_fields);
    let key_names: Vec<_> = key_fields.iter().map(|f| &f.ident).collect();
    let partition_names: Vec<_> = partition_fields.iter().map(|f| &f.ident).collect();
    let all_names: Vec<_> = entity.fields.iter().map(|f| &f.ident).collect();
    let columns = entity.fields.len();
    let field_columns = entity.fields.iter().map(|f| {
        let (name, cql) = (cql::ident(&f.name), &f.column.cql);
        quote!((#name, #cql))
    });
    let key_columns: Vec<String> = key_fields.iter().map(|f| cql::ident(&f.name)).collect();
    let key_column_names: Vec<&String> = key_fields.iter().map(|f| &f.name).collect();
    let partition_columns = partition_fields.len();

    let cql::Statements {
        create_table,
        insert,
        insert_with_ttl,
        insert_if_not_exists,
        select,
        select_with_ttl,
        delete,
        select_partition,
        select_partition_with_ttl,
        update,
        key_condition,
        increments,
    } = cql::statements(entity);
    let optional = |text: Option<String>| match text {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    };
    let select_with_ttl = optional(select_with_ttl);
    let select_partition_with_ttl = optional(select_partition_with_ttl);
    let (keyspace, table, ttl_ms, cache_partitions) = (
        &entity.keyspace,
        &entity.table,
        entity.ttl_ms,
        entity.cache_partitions,
    );
    let write = match entity.write {
        Write::Invalidate => quote!(Invalidate),
        Write::Through => quote!(Through),
        Write::Behind => quote!(Behind),
    };
    let private = quote!(::cachefw_cassandra::__private);
    let patch = format_ident!("{}Patch", ident);
    // A counter is only incremented: it has no place in a patch.
    let regular: Vec<&Field> = entity
        .regular_fields()
        .filter(|f| f.column.kind != Kind::Counter)
        .collect();
    let patch_names: Vec<_> = regular.iter().map(|f| &f.ident).collect();
    let patch_types: Vec<_> = regular.iter().map(|f| &f.ty).collect();
    let patch_columns: Vec<String> = regular.iter().map(|f| cql::ident(&f.name)).collect();
    let patch_field_docs: Vec<String> = regular
        .iter()
        .map(|f| {
            if f.column.optional {
                format!("Sets `{}` when `Some`: `Some(None)` sets it null.", f.ident)
            } else {
                format!("Sets `{}` when `Some`.", f.ident)
            }
        })
        .collect();
    let patch_doc = if entity.counters().next().is_some() {
        format!(
            "The patch of [`{ident}`], a table of counters: empty, as counters are not set \
             but incremented (`Repository::increment`)."
        )
    } else {
        format!(
            "Some columns of a [`{ident}`] row, for `Repository::patch`: each `Some` field \
             is written, each `None` left as it is."
        )
    };
    let counter = counter_items(entity, &increments);
    let counter_type = &counter.ty;
    let counter_enum = &counter.declaration;
    let counter_columns = &counter.columns;
    let counter_arms = &counter.arms;
    let counter_column_arms = &counter.column_arms;
    let fields = field_items(entity);
    let field_enum = &fields.declaration;
    let field_items = &fields.items;
    let checks = entity.fields.iter().enumerate().map(|(index, f)| {
        let ty = &f.ty;
        if f.column.kind == Kind::Counter {
            quote!(#private::check_counter(columns, #index)?;)
        } else {
            quote!(#private::check_column::<#ty>(columns, #index)?;)
        }
    });
    let reads = entity.fields.iter().map(|f| {
        let name = &f.ident;
        if f.column.kind == Kind::Counter {
            quote!(#name: #private::next_counter(columns)?,)
        } else {
            quote!(#name: #private::next_column(columns)?,)
        }
    });
    let key_doc = format!("The primary key of [`{ident}`], as the repository takes it.");
    let partition_doc = format!("The partition key of [`{ident}`].");

    quote! {
        #[doc = #key_doc]
        #[derive(
            Clone,
            Debug,
            PartialEq,
            #private::serde::Serialize,
            #private::serde::Deserialize,
        )]
        #[serde(crate = "::cachefw_cassandra::__private::serde")]
        #vis struct #key { #(#key_decl,)* }

        #[doc = #partition_doc]
        #[derive(
            Clone,
            Debug,
            PartialEq,
            #private::serde::Serialize,
            #private::serde::Deserialize,
        )]
        #[serde(crate = "::cachefw_cassandra::__private::serde")]
        #vis struct #partition { #(#partition_decl,)* }

        #[doc = #patch_doc]
        #[derive(
            Clone,
            Debug,
            Default,
            PartialEq,
            #private::serde::Serialize,
            #private::serde::Deserialize,
        )]
        #[serde(crate = "::cachefw_cassandra::__private::serde")]
        #vis struct #patch {
            #(
                #[doc = #patch_field_docs]
                // Present and null is `Some(None)`: `present` keeps it
                // apart from absent.
                #[serde(
                    default,
                    skip_serializing_if = "::core::option::Option::is_none",
                    deserialize_with = "::cachefw_cassandra::__private::present"
                )]
                #vis #patch_names: ::core::option::Option<#patch_types>,
            )*
        }

        #counter_enum

        #field_enum

        impl ::cachefw_cassandra::Entity for #ident {
            type Key = #key;
            type Partition = #partition;

            const KEYSPACE: &'static str = #keyspace;
            const TABLE: &'static str = #table;
            const TTL: #private::Duration = #private::Duration::from_millis(#ttl_ms);
            const CACHE_PARTITIONS: bool = #cache_partitions;
            const COLUMNS: usize = #columns;
            const CQL: ::cachefw_cassandra::Statements = ::cachefw_cassandra::Statements {
                create_table: #create_table,
                insert: #insert,
                insert_with_ttl: #insert_with_ttl,
                insert_if_not_exists: #insert_if_not_exists,
                select: #select,
                select_with_ttl: #select_with_ttl,
                delete: #delete,
                select_partition: #select_partition,
                select_partition_with_ttl: #select_partition_with_ttl,
                update: #update,
                key_condition: #key_condition,
            };
            const WRITE: ::cachefw_cassandra::WriteMode = ::cachefw_cassandra::WriteMode::#write;
            const FIELD_COLUMNS: &'static [(&'static str, &'static str)] = &[#(#field_columns),*];
            const KEY_COLUMNS: &'static [&'static str] = &[#(#key_columns),*];
            const KEY_COLUMN_NAMES: &'static [&'static str] = &[#(#key_column_names),*];
            const PARTITION_COLUMNS: usize = #partition_columns;

            type Patch = #patch;
            type Counter = #counter_type;

            const COUNTERS: &'static [&'static str] = &[#(#counter_columns),*];

            #field_items

            fn increment_cql(counter: #counter_type) -> &'static str {
                match counter {
                    #(#counter_arms)*
                }
            }

            fn counter_column(counter: #counter_type) -> &'static str {
                match counter {
                    #(#counter_column_arms)*
                }
            }

            fn patch_values(patch: &#patch) -> #private::PatchValues<'_> {
                let mut set = #private::PatchValues::default();
                #(
                    if let ::core::option::Option::Some(value) = &patch.#patch_names {
                        set.push(#patch_columns, value);
                    }
                )*
                set
            }

            fn apply(&mut self, patch: &#patch) {
                #(
                    if let ::core::option::Option::Some(value) = &patch.#patch_names {
                        self.#patch_names = ::core::clone::Clone::clone(value);
                    }
                )*
            }

            fn key(&self) -> #key {
                #key { #(#key_names: ::core::clone::Clone::clone(&self.#key_names),)* }
            }

            fn partition_of(key: &#key) -> #partition {
                #partition { #(#partition_names: ::core::clone::Clone::clone(&key.#partition_names),)* }
            }

            fn values(&self) -> impl #private::SerializeRow + '_ {
                #private::Values([#(&self.#all_names),*])
            }

            fn key_values(key: &#key) -> impl #private::SerializeRow + '_ {
                #private::Values([#(&key.#key_names),*])
            }

            fn partition_values(partition: &#partition) -> impl #private::SerializeRow + '_ {
                #private::Values([#(&partition.#partition_names),*])
            }

            fn type_check(
                columns: &[#private::ColumnSpec<'_>],
            ) -> ::core::result::Result<(), #private::TypeCheckError> {
                #(#checks)*
                ::core::result::Result::Ok(())
            }

            fn from_columns(
                columns: &mut #private::ColumnIterator<'_, '_>,
            ) -> ::core::result::Result<Self, #private::DeserializationError> {
                // Fields are evaluated in the order written: the column order.
                ::core::result::Result::Ok(Self {
                    #(#reads)*
                })
            }

            fn cache_key(key: &#key) -> ::std::string::String {
                #private::row_key(#table, &[#(&key.#key_names),*])
            }

            fn partition_cache_key(partition: &#partition) -> ::std::string::String {
                #private::partition_key(#table, &[#(&partition.#partition_names),*])
            }
        }
    }
}

/// The counter items of an entity: `{Entity}Counter` (one variant per
/// `#[counter]` field) and the `Entity` items naming it, or `NoCounter`
/// for a table of rows.
struct CounterItems {
    ty: TokenStream,
    declaration: TokenStream,
    columns: Vec<String>,
    arms: Vec<TokenStream>,
    column_arms: Vec<TokenStream>,
}

fn counter_items(entity: &Entity, increments: &[String]) -> CounterItems {
    let counters: Vec<&Field> = entity.counters().collect();
    if counters.is_empty() {
        return CounterItems {
            ty: quote!(::cachefw_cassandra::NoCounter),
            declaration: TokenStream::new(),
            columns: Vec::new(),
            arms: Vec::new(),
            column_arms: Vec::new(),
        };
    }
    let (ident, vis) = (&entity.ident, &entity.vis);
    let name = format_ident!("{}Counter", ident);
    let variants: Vec<_> = counters
        .iter()
        .map(|f| format_ident!("{}", parse::variant_name(&f.ident), span = f.ident.span()))
        .collect();
    let docs = counters.iter().map(|f| {
        format!(
            "The counter `{}` (column `{}`).",
            f.ident,
            cql::ident(&f.name)
        )
    });
    let doc = format!(
        "A counter of [`{ident}`], as `Repository::increment` takes it: one variant per \
         `#[counter]` field."
    );
    CounterItems {
        ty: quote!(#name),
        declaration: quote! {
            #[doc = #doc]
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #vis enum #name {
                #(
                    #[doc = #docs]
                    #variants,
                )*
            }
        },
        columns: counters.iter().map(|f| f.name.clone()).collect(),
        arms: variants
            .iter()
            .zip(increments)
            .map(|(variant, cql)| quote!(#name::#variant => #cql,))
            .collect(),
        column_arms: variants
            .iter()
            .zip(&counters)
            .map(|(variant, f)| {
                let column = &f.name;
                quote!(#name::#variant => #column,)
            })
            .collect(),
    }
}
