//! Attribute arguments: `name = value` pairs, each checked against what the
//! macro accepts, with unknown and repeated names reported on their span.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Token};

use crate::errors::Errors;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cacheable,
    Evict,
    Put,
}

impl Kind {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Self::Cacheable => "#[cacheable]",
            Self::Evict => "#[cache_evict]",
            Self::Put => "#[cache_put]",
        }
    }

    fn accepts(self) -> &'static [&'static str] {
        match self {
            Self::Cacheable => &[
                "key",
                "ttl",
                "cache",
                "cache_none",
                "condition",
                "unless",
                "jitter",
            ],
            Self::Evict => &["key", "prefix", "before", "cache"],
            Self::Put => &["key", "ttl", "cache", "unless"],
        }
    }
}

/// One `name = value`.
struct Arg {
    name: Ident,
    value: Expr,
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(Self { name, value })
    }
}

/// The arguments of one attribute, as given.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) key: Option<LitStr>,
    pub(crate) prefix: Option<LitStr>,
    pub(crate) ttl: Option<LitStr>,
    pub(crate) cache_none: Option<LitStr>,
    pub(crate) jitter: Option<LitStr>,
    pub(crate) cache: Option<Expr>,
    pub(crate) condition: Option<Expr>,
    pub(crate) unless: Option<Expr>,
    pub(crate) before: Option<LitBool>,
}

fn string(arg: Arg, errors: &mut Errors) -> Option<LitStr> {
    match arg.value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!(
                    "`{}` takes a string literal, like `{} = \"…\"`",
                    arg.name, arg.name
                ),
            ));
            None
        }
    }
}

fn boolean(arg: Arg, errors: &mut Errors) -> Option<LitBool> {
    match arg.value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => Some(lit),
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                format!("`{}` takes `true` or `false`", arg.name),
            ));
            None
        }
    }
}

impl Args {
    /// Parses the attribute's tokens, reporting every problem to `errors`.
    pub(crate) fn parse(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> Self {
        let valid = kind.accepts().join(", ");
        let parsed = Punctuated::<Arg, Token![,]>::parse_terminated.parse2(tokens);
        let list = match parsed {
            Ok(list) => list,
            Err(error) => {
                errors.push(syn::Error::new(
                    error.span(),
                    format!(
                        "{error}: {} takes `name = value` arguments: {valid}",
                        kind.attribute()
                    ),
                ));
                return Self::default();
            }
        };
        let mut args = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for arg in list {
            let name = arg.name.to_string();
            if !kind.accepts().contains(&name.as_str()) {
                errors.push(syn::Error::new_spanned(
                    &arg.name,
                    format!(
                        "unknown argument `{name}` of {}; valid arguments are: {valid}",
                        kind.attribute()
                    ),
                ));
                continue;
            }
            if seen.contains(&name) {
                errors.push(syn::Error::new_spanned(
                    &arg.name,
                    format!("`{name}` is given more than once"),
                ));
                continue;
            }
            seen.push(name.clone());
            match name.as_str() {
                "key" => args.key = string(arg, errors),
                "prefix" => args.prefix = string(arg, errors),
                "ttl" => args.ttl = string(arg, errors),
                "cache_none" => args.cache_none = string(arg, errors),
                "jitter" => args.jitter = string(arg, errors),
                "before" => args.before = boolean(arg, errors),
                "cache" => args.cache = Some(arg.value),
                "condition" => args.condition = Some(arg.value),
                _ => args.unless = Some(arg.value),
            }
        }
        args.check_target(kind, errors, &seen);
        args
    }

    /// `key` is required, except that `#[cache_evict]` takes `key` or
    /// `prefix`, not both.
    fn check_target(&self, kind: Kind, errors: &mut Errors, seen: &[String]) {
        let given = |name: &str| seen.iter().any(|s| s == name);
        match (kind, given("key"), given("prefix")) {
            (Kind::Evict, true, true) => errors.push(syn::Error::new_spanned(
                &self.prefix,
                "#[cache_evict] takes `key = …` or `prefix = …`, not both",
            )),
            (Kind::Evict, false, false) => errors.push(syn::Error::new(
                Span::call_site(),
                "#[cache_evict] needs `key = \"…\"` (one entry) or `prefix = \"…\"` (every entry whose key starts with it)",
            )),
            (Kind::Cacheable | Kind::Put, false, _) => errors.push(syn::Error::new(
                Span::call_site(),
                format!("{} needs `key = \"…\"`, such as `key = \"user:<id>\"`", kind.attribute()),
            )),
            _ => {}
        }
    }
}
