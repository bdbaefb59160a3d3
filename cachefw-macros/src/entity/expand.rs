//! The items `#[derive(Entity)]` emits: the key and partition structs and the
//! `cachefw_cassandra::Entity` implementation.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::cql;
use super::parse::{Entity, Field};

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
    let all_types: Vec<_> = entity.fields.iter().map(|f| &f.ty).collect();

    let statements = cql::statements(entity);
    let (
        create_table,
        insert,
        insert_with_ttl,
        insert_if_not_exists,
        select,
        delete,
        select_partition,
    ) = (
        &statements.create_table,
        &statements.insert,
        &statements.insert_with_ttl,
        &statements.insert_if_not_exists,
        &statements.select,
        &statements.delete,
        &statements.select_partition,
    );
    let (keyspace, table, ttl_ms, cache_partitions) = (
        &entity.keyspace,
        &entity.table,
        entity.ttl_ms,
        entity.cache_partitions,
    );
    let key_doc = format!("The primary key of [`{ident}`], as the repository takes it.");
    let partition_doc = format!("The partition key of [`{ident}`].");
    let key_format = format!("{table}{}", ":{}".repeat(key_fields.len()));
    let partition_format = format!("{table}{}:#partition", ":{}".repeat(partition_fields.len()));

    quote! {
        #[doc = #key_doc]
        #[derive(Clone, Debug, PartialEq)]
        #vis struct #key { #(#key_decl,)* }

        #[doc = #partition_doc]
        #[derive(Clone, Debug, PartialEq)]
        #vis struct #partition { #(#partition_decl,)* }

        impl ::cachefw_cassandra::Entity for #ident {
            type Key = #key;
            type Partition = #partition;
            type Row = (#(#all_types,)*);

            const KEYSPACE: &'static str = #keyspace;
            const TABLE: &'static str = #table;
            const TTL: ::cachefw_cassandra::__private::Duration =
                ::cachefw_cassandra::__private::Duration::from_millis(#ttl_ms);
            const CACHE_PARTITIONS: bool = #cache_partitions;
            const CQL: ::cachefw_cassandra::Statements = ::cachefw_cassandra::Statements {
                create_table: #create_table,
                insert: #insert,
                insert_with_ttl: #insert_with_ttl,
                insert_if_not_exists: #insert_if_not_exists,
                select: #select,
                delete: #delete,
                select_partition: #select_partition,
            };

            fn key(&self) -> #key {
                #key { #(#key_names: ::core::clone::Clone::clone(&self.#key_names),)* }
            }

            fn partition_of(key: &#key) -> #partition {
                #partition { #(#partition_names: ::core::clone::Clone::clone(&key.#partition_names),)* }
            }

            fn values(&self) -> impl ::cachefw_cassandra::__private::SerializeRow + '_ {
                (#(&self.#all_names,)*)
            }

            fn values_with_ttl(&self, ttl_seconds: i32) -> impl ::cachefw_cassandra::__private::SerializeRow + '_ {
                (#(&self.#all_names,)* ttl_seconds,)
            }

            fn key_values(key: &#key) -> impl ::cachefw_cassandra::__private::SerializeRow + '_ {
                (#(&key.#key_names,)*)
            }

            fn partition_values(partition: &#partition) -> impl ::cachefw_cassandra::__private::SerializeRow + '_ {
                (#(&partition.#partition_names,)*)
            }

            fn from_row((#(#all_names,)*): Self::Row) -> Self {
                Self { #(#all_names,)* }
            }

            fn cache_key(key: &#key) -> ::std::string::String {
                ::std::format!(#key_format, #(key.#key_names),*)
            }

            fn partition_cache_key(partition: &#partition) -> ::std::string::String {
                ::std::format!(#partition_format, #(partition.#partition_names),*)
            }
        }
    }
}
