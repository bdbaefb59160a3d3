//! The field-level items of an entity: `{Entity}Field` (one variant per
//! column a patch sets) and the `Entity` items that write a row or a patch
//! field by field and read them back (`layout = "hash"`, `find_fields`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::parse::{self, Entity, Field, Layout};
use super::types::Kind;

pub(crate) struct FieldItems {
    /// `{Entity}Field`.
    pub(crate) declaration: TokenStream,
    /// The items of `impl Entity`.
    pub(crate) items: TokenStream,
}

pub(crate) fn field_items(entity: &Entity) -> FieldItems {
    let (ident, vis) = (&entity.ident, &entity.vis);
    let private = quote!(::cachefw_cassandra::__private);
    let name = format_ident!("{}Field", ident);
    let patch = format_ident!("{}Patch", ident);
    let patchable: Vec<&Field> = entity
        .regular_fields()
        .filter(|f| f.column.kind != Kind::Counter)
        .collect();
    let variants: Vec<_> = patchable
        .iter()
        .map(|f| format_ident!("{}", parse::variant_name(&f.ident), span = f.ident.span()))
        .collect();
    let idents: Vec<_> = patchable.iter().map(|f| &f.ident).collect();
    let columns: Vec<&str> = patchable.iter().map(|f| f.name.as_str()).collect();
    let docs = patchable
        .iter()
        .map(|f| format!("The field `{}` (column `{}`).", f.ident, f.name));
    let doc = format!(
        "A column of [`{ident}`] that a patch sets, for `Repository::find_fields`: one \
         variant per non-key, non-counter field."
    );
    let hash_columns = entity.regular_fields().map(|f| f.name.as_str());
    let layout = match entity.layout {
        Layout::Blob => quote!(Blob),
        Layout::Hash => quote!(Hash),
    };
    let write_row = entity.regular_fields().map(|f| {
        let (field, column) = (&f.ident, &f.name);
        if f.column.kind == Kind::Counter {
            quote!(sink.counter(#column, self.#field);)
        } else {
            quote!(sink.value(#column, &self.#field);)
        }
    });
    let read_row = entity.fields.iter().map(|f| {
        let (field, column) = (&f.ident, &f.name);
        match (f.role, f.column.kind) {
            (parse::Role::Regular, Kind::Counter) => quote!(#field: source.counter(#column)?,),
            (parse::Role::Regular, _) => quote!(#field: source.value(#column)?,),
            _ => quote!(#field: ::core::clone::Clone::clone(&key.#field),),
        }
    });
    let items = quote! {
        const LAYOUT: ::cachefw_cassandra::Layout = ::cachefw_cassandra::Layout::#layout;
        const HASH_COLUMNS: &'static [&'static str] = &[#(#hash_columns),*];
        type Field = #name;

        fn field_column(field: #name) -> &'static str {
            match field {
                #(#name::#variants => #columns,)*
            }
        }

        fn write_fields(&self, sink: &mut impl #private::FieldSink) {
            let _ = &sink;
            #(#write_row)*
        }

        fn read_fields(
            key: &Self::Key,
            source: &mut impl #private::FieldSource,
        ) -> ::core::option::Option<Self> {
            let _ = &source;
            ::core::option::Option::Some(Self { #(#read_row)* })
        }

        fn write_patch(patch: &#patch, sink: &mut impl #private::FieldSink) {
            let _ = (&patch, &sink);
            #(
                if let ::core::option::Option::Some(value) = &patch.#idents {
                    sink.value(#columns, value);
                }
            )*
        }

        fn read_patch(
            fields: &[#name],
            source: &mut impl #private::FieldSource,
        ) -> ::core::option::Option<#patch> {
            let _ = &source;
            #[allow(unused_mut)]
            let mut patch = <#patch as ::core::default::Default>::default();
            for field in fields {
                match *field {
                    #(#name::#variants => {
                        patch.#idents = ::core::option::Option::Some(source.value(#columns)?);
                    })*
                }
            }
            ::core::option::Option::Some(patch)
        }

        fn to_patch(&self, fields: &[#name]) -> #patch {
            #[allow(unused_mut)]
            let mut patch = <#patch as ::core::default::Default>::default();
            for field in fields {
                match *field {
                    #(#name::#variants => {
                        patch.#idents =
                            ::core::option::Option::Some(::core::clone::Clone::clone(&self.#idents));
                    })*
                }
            }
            patch
        }
    };
    FieldItems {
        declaration: quote! {
            #[doc = #doc]
            // Generated for every entity; most never name every column.
            #[allow(dead_code)]
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #vis enum #name {
                #(
                    #[doc = #docs]
                    #variants,
                )*
            }
        },
        items,
    }
}
