//! `#[derive(Entity)]`: a Cassandra table, its statements and its cache keys
//! from an annotated struct.

mod cql;
mod expand;
mod fields;
mod parse;
mod types;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::errors::Errors;

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = Errors::default();
    let entity = parse::parse(&input, &mut errors);
    match entity {
        Some(entity) if errors.is_empty() => expand::expand(&entity),
        _ => errors.to_compile_errors(),
    }
}
