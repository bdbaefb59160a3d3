//! The attributes that stack on one function. The outermost `#[cache_put]`
//! or `#[cache_evict]` is the one the compiler expands first: it reads the
//! others from the function's attributes and expands them with itself, so
//! the body runs once and the writes follow it in the order written (as
//! tracing's `#[instrument]` and tokio's `#[tokio::test]` read the
//! attributes beside them).
//!
//! Each sibling stays where it is written, its arguments replaced by
//! [`EXPANDED`]: the compiler still resolves it (so its import is used, and
//! a path to it is checked), and it then expands to the function unchanged.
//!
//! A sibling is known by its name ([`Kind::of_path`]): `cache_put` or
//! `cache_evict`, alone or as the last segment of a path through a module
//! named `cachefw` (`cachefw::cache_put`, `my_crate::cachefw::cache_evict`).
//! One imported under another name is not taken: it expands on its own,
//! around this one.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::token::Paren;
use syn::{AttrStyle, Ident, ItemFn, MacroDelimiter, Meta, MetaList, Path};

use crate::args::Kind;
use crate::errors::Errors;

/// The arguments left to a sibling once the outermost attribute expanded
/// it: not an argument anyone writes.
const EXPANDED: &str = "__cachefw_expanded_with_the_first_attribute_of_its_stack";

/// Whether `args` are those of a sibling already expanded.
pub(crate) fn is_expanded(args: &TokenStream) -> bool {
    args.to_string() == EXPANDED
}

/// A `#[cache_put]` or `#[cache_evict]` below the one being expanded.
pub(crate) struct Sibling {
    pub(crate) kind: Kind,
    /// What is inside its parentheses.
    pub(crate) tokens: TokenStream,
    /// Its name, where an argument it lacks is reported.
    pub(crate) span: Span,
}

/// The kind of write an attribute path names, if it names one.
fn kind_of(path: &Path) -> Option<Kind> {
    Kind::of_path(path).filter(|kind| *kind != Kind::Cacheable)
}

/// Reads the sibling writes from `function`'s attributes, in the order they
/// are written, and leaves each of them [`EXPANDED`].
pub(crate) fn take(function: &mut ItemFn, errors: &mut Errors) -> Vec<Sibling> {
    let mut siblings = Vec::new();
    for attr in &mut function.attrs {
        let kind = match attr.style {
            AttrStyle::Outer => kind_of(attr.path()),
            AttrStyle::Inner(_) => None,
        };
        let Some(kind) = kind else {
            continue;
        };
        let span = attr
            .path()
            .segments
            .last()
            .map_or_else(Span::call_site, |name| name.ident.span());
        match &attr.meta {
            Meta::Path(_) => siblings.push(Sibling {
                kind,
                tokens: TokenStream::new(),
                span,
            }),
            Meta::List(list) => siblings.push(Sibling {
                kind,
                tokens: list.tokens.clone(),
                span,
            }),
            Meta::NameValue(meta) => errors.push(syn::Error::new_spanned(
                &meta.value,
                format!(
                    "{} takes its arguments in parentheses, such as `{}(key = \"user:<id>\")`",
                    kind.attribute(),
                    kind.name(),
                ),
            )),
        }
        let expanded = Ident::new(EXPANDED, Span::call_site());
        attr.meta = Meta::List(MetaList {
            path: attr.path().clone(),
            delimiter: MacroDelimiter::Paren(Paren::default()),
            tokens: quote!(#expanded),
        });
    }
    siblings
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn reads_the_writes_in_order_and_leaves_them_expanded() {
        let mut function: ItemFn = syn::parse2(quote!(
            /// Docs stay.
            #[cache_put(key = "a")]
            #[inline]
            #[cachefw::cache_evict(key = "b")]
            #[my::cachefw::cache_put]
            #[cacheable(key = "c")]
            #[other::cache_put(key = "d")]
            #[::cache_evict(key = "e")]
            async fn f() {}
        ))
        .expect("a fn");
        let mut errors = Errors::default();
        let siblings = take(&mut function, &mut errors);
        assert!(errors.is_empty());
        let taken: Vec<(bool, String)> = siblings
            .iter()
            .map(|s| (s.kind == Kind::Put, s.tokens.to_string()))
            .collect();
        assert_eq!(
            taken,
            [
                (true, "key = \"a\"".to_owned()),
                (false, "key = \"b\"".to_owned()),
                (true, String::new()),
            ]
        );
        let left: Vec<String> = function
            .attrs
            .iter()
            .map(|attr| quote!(#attr).to_string())
            .collect();
        let expanded = |path: &str| format!("# [{path} ({EXPANDED})]");
        assert_eq!(
            left[1..],
            [
                expanded("cache_put"),
                "# [inline]".to_owned(),
                expanded("cachefw :: cache_evict"),
                expanded("my :: cachefw :: cache_put"),
                "# [cacheable (key = \"c\")]".to_owned(),
                "# [other :: cache_put (key = \"d\")]".to_owned(),
                "# [:: cache_evict (key = \"e\")]".to_owned(),
            ]
        );
        assert!(is_expanded(&EXPANDED.parse().expect("an ident")));
        assert!(!is_expanded(&quote!(key = "a")));
    }

    #[test]
    fn a_value_instead_of_arguments_is_reported_on_it() {
        let mut function: ItemFn = syn::parse2(quote!(
            #[cache_evict = "user:<id>"]
            async fn f(id: u64) {}
        ))
        .expect("a fn");
        let mut errors = Errors::default();
        assert!(take(&mut function, &mut errors).is_empty());
        assert_eq!(function.attrs.len(), 1, "left expanded, reported once");
        assert_eq!(
            errors.messages(),
            [
                "#[cache_evict] takes its arguments in parentheses, such as \
              `cache_evict(key = \"user:<id>\")`"
            ]
        );
    }
}
