//! `#[cache_config]` on an `impl` block (Spring's `@CacheConfig`): defaults
//! for every `#[cacheable]`, `#[cache_put]` and `#[cache_evict]` on its
//! methods.
//!
//! The compiler expands the attribute of the `impl` before those of its
//! methods, and one macro cannot reach into another's expansion, so this
//! one rewrites the methods' attributes: each gets the defaults it takes
//! and does not name itself, appended to its own arguments. The method's
//! attribute then expands as if the user had written them there. Its own
//! arguments win, since a default it names is not added; and the defaults
//! are the tokens written in `#[cache_config]`, spans included, so a
//! mistake in one (a `cache` expression of the wrong type) is reported
//! where it is written.
//!
//! ```text
//! #[cache_config(cache = self.cache, ttl = "5m")]
//! impl Repo {
//!     #[cacheable(key = "user:<id>")]          // + cache = self.cache, ttl = "5m"
//!     #[cache_put(key = "u:<id>", ttl = "1h")] // + cache = self.cache
//!     #[cache_evict(key = "user:<id>")]        // + cache = self.cache (it takes no ttl)
//! }
//! ```
//!
//! An attribute is known by its name, as a stack's siblings are
//! ([`Kind::of_path`]); one imported under another name gets no defaults.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::token::Paren;
use syn::{
    AttrStyle, Attribute, Expr, Ident, ImplItem, Item, MacroDelimiter, Meta, MetaList, Token,
};

use crate::args::{self, Args, Kind};
use crate::errors::Errors;
use crate::stack;

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    Args::parse_defaults(attr.clone(), &mut errors);
    let block = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Impl(block)) => Some(block),
        Ok(other) => {
            errors.push(not_an_impl(&other));
            None
        }
        Err(error) => {
            errors.push(syn::Error::new(
                error.span(),
                format!("#[cache_config] goes on an `impl` block: {error}"),
            ));
            None
        }
    };
    // An error here was reported by the parse above, which says what is valid.
    let defaults = pairs(attr).unwrap_or_default();
    match block {
        Some(mut block) if errors.is_empty() => {
            for method in &mut block.items {
                if let ImplItem::Fn(method) = method {
                    for attr in &mut method.attrs {
                        give_defaults(attr, &defaults);
                    }
                }
            }
            block.into_token_stream()
        }
        // As written: its methods' attributes expand on their own, without
        // the defaults, so the rest of the crate still type-checks.
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#item #errors)
        }
    }
}

/// One `name = value` argument, as written.
struct Pair {
    name: Ident,
    tokens: TokenStream,
}

/// The arguments of an attribute, each as written; `Err` when they are not
/// a list of `name = value`.
fn pairs(tokens: TokenStream) -> syn::Result<Vec<Pair>> {
    let parser = |input: ParseStream<'_>| {
        let list = Punctuated::<Pair, Token![,]>::parse_terminated_with(input, |input| {
            let name = input.call(Ident::parse_any)?;
            let eq: Token![=] = input.parse()?;
            let value: Expr = input.parse()?;
            let tokens = quote!(#name #eq #value);
            Ok(Pair { name, tokens })
        })?;
        Ok(list.into_iter().collect())
    };
    parser.parse2(tokens)
}

/// Appends to `attr`, if it is one of ours, the defaults it takes and does
/// not name. An attribute whose arguments do not parse is left as it is:
/// its own expansion reports them.
fn give_defaults(attr: &mut Attribute, defaults: &[Pair]) {
    if !matches!(attr.style, AttrStyle::Outer) {
        return;
    }
    let Some(kind) = Kind::of_path(attr.path()) else {
        return;
    };
    let own = match &attr.meta {
        Meta::Path(_) => TokenStream::new(),
        Meta::List(list) if !stack::is_expanded(&list.tokens) => list.tokens.clone(),
        _ => return,
    };
    let Ok(given) = pairs(own.clone()) else {
        return;
    };
    let missing: Vec<&TokenStream> = defaults
        .iter()
        .filter(|default| {
            let name = default.name.unraw().to_string();
            args::takes(kind, &name) && !given.iter().any(|pair| pair.name == default.name)
        })
        .map(|default| &default.tokens)
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut tokens = own;
    if !tokens.is_empty() && !ends_with_comma(&tokens) {
        tokens.extend(quote!(,));
    }
    tokens.extend(quote!(#(#missing),*));
    attr.meta = Meta::List(MetaList {
        path: attr.path().clone(),
        delimiter: match &attr.meta {
            Meta::List(list) => list.delimiter.clone(),
            _ => MacroDelimiter::Paren(Paren::default()),
        },
        tokens,
    });
}

fn ends_with_comma(tokens: &TokenStream) -> bool {
    matches!(
        tokens.clone().into_iter().last(),
        Some(proc_macro2::TokenTree::Punct(punct)) if punct.as_char() == ','
    )
}

/// `#[cache_config]` on anything but an `impl` block: the error, on the
/// item's name where it has one.
fn not_an_impl(item: &Item) -> syn::Error {
    let message = "#[cache_config] goes on an `impl` block, and gives defaults (`cache = …`, \
                   `ttl = …`) to the #[cacheable], #[cache_put] and #[cache_evict] attributes \
                   of its methods";
    let (at, hint): (&dyn ToTokens, &str) = match item {
        Item::Fn(function) => (
            &function.sig.ident,
            "; on one function, write these arguments in its own attribute",
        ),
        Item::Trait(definition) => (
            &definition.ident,
            "; put it on the `impl` of the trait for a type instead",
        ),
        Item::Struct(definition) => (&definition.ident, "; put it on `impl` of the type"),
        Item::Enum(definition) => (&definition.ident, "; put it on `impl` of the type"),
        Item::Mod(module) => (&module.ident, "; put it on each `impl` block"),
        other => (other, ""),
    };
    syn::Error::new_spanned(at, format!("{message}{hint}"))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn methods_attrs(out: &TokenStream) -> Vec<String> {
        let block: syn::ItemImpl = syn::parse2(out.clone()).expect("an impl");
        block
            .items
            .iter()
            .filter_map(|item| match item {
                ImplItem::Fn(method) => Some(method),
                _ => None,
            })
            .flat_map(|method| &method.attrs)
            .map(|attr| attr.to_token_stream().to_string())
            .collect()
    }

    #[test]
    fn gives_each_attribute_the_defaults_it_takes_and_lacks() {
        let out = expand(
            quote!(cache = self.cache, ttl = "5m", crate = my::cachefw),
            quote!(
                impl Repo {
                    #[cacheable(key = "u:<id>")]
                    async fn get(&self, id: u64) -> u64 { id }
                    #[cache_put(key = "u:<id>", ttl = "1h",)]
                    #[cachefw::cache_evict(key = "l", cache = other)]
                    async fn put(&self, id: u64) -> u64 { id }
                    #[cache_evict]
                    #[inline]
                    #[other::cacheable(key = "x")]
                    async fn evict(&self) {}
                    fn plain(&self) {}
                }
            ),
        );
        assert_eq!(
            methods_attrs(&out),
            [
                "# [cacheable (key = \"u:<id>\" , cache = self . cache , ttl = \"5m\" , crate = my :: cachefw)]",
                "# [cache_put (key = \"u:<id>\" , ttl = \"1h\" , cache = self . cache , crate = my :: cachefw)]",
                "# [cachefw :: cache_evict (key = \"l\" , cache = other , crate = my :: cachefw)]",
                "# [cache_evict (cache = self . cache , crate = my :: cachefw)]",
                "# [inline]",
                "# [other :: cacheable (key = \"x\")]",
            ]
        );
    }

    #[test]
    fn misuse_is_reported_and_the_item_left_as_written() {
        let cases = [
            (
                quote!(key = "u:<id>", tll = "1m"),
                quote!(impl Repo {}),
                vec![
                    "`key` cannot be a default of #[cache_config]",
                    "unknown argument `tll` of #[cache_config]; valid arguments are: ttl, cache, jitter, crate",
                ],
            ),
            (
                quote!(ttl = "5x", refresh_ahead = true),
                quote!(impl Repo {}),
                vec![
                    "malformed TTL",
                    "`refresh_ahead` cannot be a default of #[cache_config]: it is a freshness option: set it for the whole cache with `CacheBuilder::refresh_ahead(..)`",
                ],
            ),
            (
                quote!(),
                quote!(impl Repo {}),
                vec!["#[cache_config] needs at least one default"],
            ),
            (
                quote!(ttl = "5m"),
                quote!(
                    async fn f() {}
                ),
                vec!["#[cache_config] goes on an `impl` block"],
            ),
        ];
        for (attr, item, expected) in cases {
            let out = expand(attr, item.clone()).to_string();
            assert!(out.starts_with(&item.to_string()), "{out}");
            assert_eq!(
                out.matches("compile_error").count(),
                expected.len(),
                "{out}"
            );
            for message in expected {
                assert!(out.contains(message), "{message} in {out}");
            }
        }
    }

    #[test]
    fn a_method_attribute_that_does_not_parse_is_left_to_report_itself() {
        let item = quote!(impl Repo {
            #[cacheable(key "u")]
            async fn f(&self) {}
        });
        let out = expand(quote!(ttl = "5m"), item.clone());
        assert_eq!(out.to_string(), item.to_string());
    }
}
