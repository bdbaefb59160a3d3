//! Attribute arguments: `name = value` pairs. One table ([`arguments!`])
//! lists every argument with the type its value parses into, the macros
//! that take it, and whether `#[cache_config]` may give it as a default;
//! the accepted names, the parse and the fields of [`Args`] all come from
//! it. Every mistake is reported on its own span, all at once: an unknown
//! or repeated name, a value of the wrong kind, a malformed TTL.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token};

use crate::errors::Errors;
use crate::ttl;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cacheable,
    Evict,
    Put,
}

impl Kind {
    /// The attribute's name, as written in code.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Cacheable => "cacheable",
            Self::Evict => "cache_evict",
            Self::Put => "cache_put",
        }
    }

    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Self::Cacheable => "#[cacheable]",
            Self::Evict => "#[cache_evict]",
            Self::Put => "#[cache_put]",
        }
    }

    /// The attribute an attribute path names, if it names one of ours:
    /// `cacheable`, `cache_put` or `cache_evict`, alone or as the last
    /// segment of a path through a module named `cachefw`
    /// (`cachefw::cache_put`, `my_crate::cachefw::cache_evict`).
    pub(crate) fn of_path(path: &Path) -> Option<Self> {
        let mut segments = path.segments.iter().rev();
        let name = &segments.next()?.ident;
        let kind = [Self::Cacheable, Self::Put, Self::Evict]
            .into_iter()
            .find(|kind| name == kind.name())?;
        match segments.next() {
            None if path.leading_colon.is_none() => Some(kind),
            Some(module) if module.ident == "cachefw" => Some(kind),
            _ => None,
        }
    }
}

/// Where a list of arguments is written: on a function, or on an `impl`
/// block as the defaults of its methods (`#[cache_config]`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Site {
    Fn(Kind),
    Config,
}

impl Site {
    fn attribute(self) -> &'static str {
        match self {
            Self::Fn(kind) => kind.attribute(),
            Self::Config => "#[cache_config]",
        }
    }

    fn takes(self, name: Name) -> bool {
        match self {
            Self::Fn(kind) => name.taken_by(kind),
            Self::Config => name.is_default(),
        }
    }
}

/// The keyword of one argument, named as its field: a `syn` custom keyword,
/// except `crate`, which is a Rust keyword with its own token.
macro_rules! keyword {
    ($field:ident(crate)) => {
        pub(super) use syn::token::Crate as $field;
    };
    ($field:ident($keyword:ident)) => {
        syn::custom_keyword!($keyword);
    };
}

/// Declares the arguments: each row is `Variant field(name): ValueType =>
/// [the macros that take it];`, with `default` after the list when
/// `#[cache_config]` may give it to the methods of an `impl` block.
macro_rules! arguments {
    ($($variant:ident $field:ident($name:tt): $value:ty => [$($kind:ident),+] $($default:ident)?;)+) => {
        mod kw {
            $(keyword!($field($name));)+
        }

        /// The name of an argument.
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Name {
            $($variant,)+
        }

        impl Name {
            const ALL: &[Name] = &[$(Name::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($name),)+
                }
            }

            fn taken_by(self, kind: Kind) -> bool {
                match self {
                    $(Self::$variant => matches!(kind, $(Kind::$kind)|+),)+
                }
            }

            fn is_default(self) -> bool {
                match self {
                    $(Self::$variant => arguments!(@default $($default)?),)+
                }
            }

            /// Reads an argument name, or `None` when the next token is not one.
            fn parse(input: ParseStream<'_>) -> syn::Result<Option<(Self, Span)>> {
                $(
                    if input.peek(kw::$field) {
                        let keyword: kw::$field = input.parse()?;
                        return Ok(Some((Self::$variant, keyword.span)));
                    }
                )+
                Ok(None)
            }
        }

        /// The arguments of one attribute, each checked and typed.
        #[derive(Default)]
        pub(crate) struct Args {
            $(pub(crate) $field: Option<$value>,)+
        }

        impl Args {
            fn set(&mut self, name: Name, value: Expr) -> syn::Result<()> {
                match name {
                    $(Name::$variant => self.$field = Some(from_arg(name, value)?),)+
                }
                Ok(())
            }
        }
    };
    (@default default) => { true };
    (@default) => { false };
}

// A new argument is one row here (and its value type, if new). A default
// is one that means the same on every method of an impl: not a key, a
// condition or a shape, which speak of one function's parameters or return.
arguments! {
    Key key(key): KeyText => [Cacheable, Put, Evict];
    Prefix prefix(prefix): KeyText => [Evict];
    Ttl ttl(ttl): TtlArg => [Cacheable, Put] default;
    Cache cache(cache): Expr => [Cacheable, Put, Evict] default;
    CacheNone cache_none(cache_none): Ttl => [Cacheable];
    Condition condition(condition): Expr => [Cacheable, Put, Evict];
    Unless unless(unless): Expr => [Cacheable, Put];
    Jitter jitter(jitter): Jitter => [Cacheable, Put] default;
    Before before(before): LitBool => [Evict];
    Shape shape(shape): DeclaredShape => [Cacheable, Put, Evict];
    Crate krate(crate): Path => [Cacheable, Put, Evict] default;
    RefreshAhead refresh_ahead(refresh_ahead): RefreshAhead => [Cacheable];
    StaleWhileRevalidate stale_while_revalidate(stale_while_revalidate): Ttl => [Cacheable];
    StaleIfError stale_if_error(stale_if_error): Ttl => [Cacheable];
    LoadTimeout load_timeout(load_timeout): Ttl => [Cacheable];
    Tags tags(tags): TagList => [Cacheable, Put, Evict];
}

/// A value an argument takes, read from the expression after `name =`.
trait FromArg: Sized {
    /// What a valid value looks like, completing "`name` takes …".
    const EXPECTED: &'static str;

    /// `None` when `expr` is not of this kind at all; an error when it is
    /// but is still wrong (a malformed TTL).
    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>>;
}

fn from_arg<V: FromArg>(name: Name, value: Expr) -> syn::Result<V> {
    V::from_expr(&value).unwrap_or_else(|| {
        Err(syn::Error::new_spanned(
            &value,
            format!("`{}` takes {}", name.as_str(), V::EXPECTED),
        ))
    })
}

/// The literal `expr` is, seen through the invisible groups that
/// `macro_rules!` wraps around its fragments.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, attrs }) if attrs.is_empty() => Some(lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn string(expr: &Expr) -> Option<&LitStr> {
    match literal(expr) {
        Some(Lit::Str(lit)) => Some(lit),
        _ => None,
    }
}

/// A key template or prefix as written; its placeholders are checked once
/// the function's parameters are known.
pub(crate) struct KeyText(pub(crate) LitStr);

impl FromArg for KeyText {
    const EXPECTED: &'static str =
        "a string literal with `<param>` placeholders, such as `\"user:<id>\"`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        string(expr).map(|lit| Ok(Self(lit.clone())))
    }
}

/// `tags = ["user:<user_id>", "orders"]`: tag templates as written; their
/// placeholders are checked as a key's once the parameters are known.
pub(crate) struct TagList(pub(crate) Vec<LitStr>);

impl FromArg for TagList {
    const EXPECTED: &'static str = "an array of string literals with `<param>` placeholders, \
         such as `[\"user:<user_id>\", \"orders\"]`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        let Expr::Array(array) = expr else {
            return None;
        };
        let mut tags = Vec::with_capacity(array.elems.len());
        for elem in &array.elems {
            match string(elem) {
                Some(lit) => tags.push(lit.clone()),
                None => {
                    return Some(Err(syn::Error::new_spanned(
                        elem,
                        "a tag is a string literal, such as `\"user:<user_id>\"`",
                    )));
                }
            }
        }
        Some(Ok(Self(tags)))
    }
}

/// A TTL, parsed at compile time.
pub(crate) struct Ttl {
    pub(crate) millis: u64,
    pub(crate) lit: LitStr,
}

impl FromArg for Ttl {
    const EXPECTED: &'static str =
        "a duration in a string literal, such as `\"45s\"`, `\"10m\"` or `\"1h30m\"`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        let lit = string(expr)?;
        Some(
            ttl::parse_millis(&lit.value())
                .map(|millis| Self {
                    millis,
                    lit: lit.clone(),
                })
                .map_err(|message| syn::Error::new_spanned(lit, message)),
        )
    }
}

/// `ttl = "10m"`, a compile-checked duration, or `ttl = <expr>`, a
/// `Duration` expression over `result`, the value about to be stored.
pub(crate) enum TtlArg {
    Literal(Ttl),
    Expr(Expr),
}

impl TtlArg {
    /// The duration, when it is a literal.
    pub(crate) fn literal(&self) -> Option<&Ttl> {
        match self {
            Self::Literal(ttl) => Some(ttl),
            Self::Expr(_) => None,
        }
    }
}

impl FromArg for TtlArg {
    const EXPECTED: &'static str = "a duration in a string literal, such as `\"10m\"`, or a \
         `Duration` expression over `result`, the value about to be stored";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        match (Ttl::from_expr(expr), literal(expr)) {
            (Some(ttl), _) => Some(ttl.map(Self::Literal)),
            // `ttl = 600`: a number with no unit is a mistake, not an
            // expression to type-check.
            (None, Some(_)) => None,
            (None, None) => Some(Ok(Self::Expr(expr.clone()))),
        }
    }
}

/// A TTL jitter, as a fraction in `[0, 1)`.
pub(crate) struct Jitter(pub(crate) f64);

impl FromArg for Jitter {
    const EXPECTED: &'static str = "a percentage in a string literal, such as `\"10%\"`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        let lit = string(expr)?;
        Some(
            ttl::parse_jitter(&lit.value())
                .map(Self)
                .map_err(|message| syn::Error::new_spanned(lit, message)),
        )
    }
}

/// `refresh_ahead = true | false | <beta>`: on with the cache's beta, off,
/// or on with this beta (a positive float).
pub(crate) enum RefreshAhead {
    Default(Span),
    Off,
    Beta(f64, Span),
}

impl RefreshAhead {
    /// Whether it turns refreshes on, which needs owned arguments.
    pub(crate) fn span_if_on(&self) -> Option<Span> {
        match self {
            Self::Default(span) | Self::Beta(_, span) => Some(*span),
            Self::Off => None,
        }
    }
}

impl FromArg for RefreshAhead {
    const EXPECTED: &'static str =
        "`true`, `false`, or a positive beta such as `1.0` or `2.5` (XFetch's weight)";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        match literal(expr)? {
            Lit::Bool(lit) if lit.value => Some(Ok(Self::Default(lit.span))),
            Lit::Bool(_) => Some(Ok(Self::Off)),
            Lit::Float(lit) => Some(match lit.base10_parse::<f64>() {
                Ok(beta) if beta.is_finite() && beta > 0.0 => Ok(Self::Beta(beta, lit.span())),
                _ => Err(syn::Error::new_spanned(
                    lit,
                    "a refresh_ahead beta must be a positive number, such as `1.0` (use `false` to turn it off)",
                )),
            }),
            Lit::Int(lit) => Some(Err(syn::Error::new_spanned(
                lit,
                "a refresh_ahead beta is a float literal, such as `1.0` or `2.0`",
            ))),
            _ => None,
        }
    }
}

impl FromArg for LitBool {
    const EXPECTED: &'static str = "`true` or `false`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        match literal(expr) {
            Some(Lit::Bool(lit)) => Some(Ok(lit.clone())),
            _ => None,
        }
    }
}

/// Any expression: its type is checked where the expansion uses it.
impl FromArg for Expr {
    const EXPECTED: &'static str = "an expression";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        Some(Ok(expr.clone()))
    }
}

impl FromArg for Path {
    const EXPECTED: &'static str =
        "a path to the `cachefw` crate or a re-export of it, such as `my_crate::cachefw`";

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        match expr {
            Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
                Some(Ok(path.path.clone()))
            }
            Expr::Group(group) => Self::from_expr(&group.expr),
            _ => None,
        }
    }
}

/// A return shape, as `shape = "…"` names it. The names are the runtime's:
/// `cachefw::__private::declare::{result, option, result_option, plain}`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    Result,
    Option,
    ResultOption,
    Plain,
}

impl Shape {
    const ALL: [Self; 4] = [Self::Result, Self::Option, Self::ResultOption, Self::Plain];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Result => "result",
            Self::Option => "option",
            Self::ResultOption => "result_option",
            Self::Plain => "plain",
        }
    }
}

/// `shape = "…"`: the shape the function declares.
pub(crate) struct DeclaredShape {
    pub(crate) shape: Shape,
    pub(crate) lit: LitStr,
}

/// The valid shapes, for messages.
macro_rules! shapes {
    () => {
        "`\"result\"` (`Result<T, E>`), `\"option\"` (`Option<T>`), `\"result_option\"` \
         (`Result<Option<T>, E>`) or `\"plain\"` (any other value)"
    };
}

impl FromArg for DeclaredShape {
    const EXPECTED: &'static str = concat!("a shape in a string literal: ", shapes!());

    fn from_expr(expr: &Expr) -> Option<syn::Result<Self>> {
        let lit = string(expr)?;
        let value = lit.value();
        Some(
            Shape::ALL
                .into_iter()
                .find(|shape| shape.name() == value)
                .map(|shape| Self {
                    shape,
                    lit: lit.clone(),
                })
                .ok_or_else(|| {
                    syn::Error::new_spanned(
                        lit,
                        format!("unknown shape {value:?}: expected {}", shapes!()),
                    )
                }),
        )
    }
}

/// Skips the rest of a malformed argument, up to the next top-level comma.
fn skip_argument(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            return;
        }
    }
}

impl Args {
    /// Parses the attribute's tokens, reporting every problem to `errors`.
    pub(crate) fn parse(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> Self {
        Self::parse_at(kind, tokens, Span::call_site(), errors)
    }

    /// [`parse`](Self::parse) for an attribute written at `span`, where a
    /// missing argument is reported.
    pub(crate) fn parse_at(
        kind: Kind,
        tokens: TokenStream,
        span: Span,
        errors: &mut Errors,
    ) -> Self {
        let (args, seen) = Self::parse_list(Site::Fn(kind), tokens, errors);
        args.check_target(kind, &seen, span, errors);
        args
    }

    /// Parses the arguments of `#[cache_config]`: defaults only, at least
    /// one.
    pub(crate) fn parse_defaults(tokens: TokenStream, errors: &mut Errors) -> Self {
        let empty = tokens.is_empty();
        let (args, _) = Self::parse_list(Site::Config, tokens, errors);
        if empty {
            errors.push(syn::Error::new(
                Span::call_site(),
                format!(
                    "#[cache_config] needs at least one default for the methods of its impl \
                     block: {}, such as `#[cache_config(cache = self.cache, ttl = \"5m\")]`",
                    defaults()
                ),
            ));
        }
        args
    }

    /// The arguments, and the names given (the first of each).
    fn parse_list(site: Site, tokens: TokenStream, errors: &mut Errors) -> (Self, Vec<Name>) {
        let valid: Vec<&str> = Name::ALL
            .iter()
            .filter(|name| site.takes(**name))
            .map(|name| name.as_str())
            .collect();
        let valid = valid.join(", ");
        let mut args = Self::default();
        let mut seen = Vec::new();
        let parser = |input: ParseStream<'_>| {
            while !input.is_empty() {
                if let Err(error) = args.parse_one(site, input, &mut seen, &valid) {
                    errors.push(error);
                    skip_argument(input);
                }
                if !input.is_empty()
                    && let Err(error) = input.parse::<Token![,]>()
                {
                    errors.push(syntax(site, &error, &valid));
                    skip_argument(input);
                    let _ = input.parse::<Option<Token![,]>>();
                }
            }
            Ok(())
        };
        if let Err(error) = parser.parse2(tokens) {
            errors.push(syntax(site, &error, &valid));
        }
        (args, seen)
    }

    fn parse_one(
        &mut self,
        site: Site,
        input: ParseStream<'_>,
        seen: &mut Vec<Name>,
        valid: &str,
    ) -> syn::Result<()> {
        let unknown = |name: &dyn std::fmt::Display, span: Span| {
            syn::Error::new(
                span,
                format!(
                    "unknown argument `{name}` of {}; valid arguments are: {valid}",
                    site.attribute()
                ),
            )
        };
        let Some((name, span)) = Name::parse(input)? else {
            let ident = input
                .call(Ident::parse_any)
                .map_err(|error| syntax(site, &error, valid))?;
            return Err(unknown(&ident, ident.span()));
        };
        if !site.takes(name) {
            return Err(match site {
                Site::Config => not_a_default(name, span),
                Site::Fn(_) => unknown(&name.as_str(), span),
            });
        }
        if seen.contains(&name) {
            return Err(syn::Error::new(
                span,
                format!("`{}` is given more than once", name.as_str()),
            ));
        }
        seen.push(name);
        input
            .parse::<Token![=]>()
            .map_err(|error| syntax(site, &error, valid))?;
        let value: Expr = input.parse()?;
        self.set(name, value)
    }

    /// `key` is required, except that `#[cache_evict]` takes `key` or
    /// `prefix`, not both. One given with a wrong value was reported already.
    fn check_target(&self, kind: Kind, given: &[Name], span: Span, errors: &mut Errors) {
        let key = given.contains(&Name::Key);
        let prefix = given.contains(&Name::Prefix);
        match (kind, key, prefix) {
            (Kind::Evict, true, true) => {
                if let Some(prefix) = &self.prefix {
                    errors.push(syn::Error::new_spanned(
                        &prefix.0,
                        "#[cache_evict] takes `key = …` or `prefix = …`, not both",
                    ));
                }
            }
            (Kind::Evict, false, false) if !given.contains(&Name::Tags) => errors.push(syn::Error::new(
                span,
                "#[cache_evict] needs `key = \"…\"` (one entry), `prefix = \"…\"` (every entry whose key starts with it) or `tags = [\"…\"]` (every entry carrying one of them)",
            )),
            (Kind::Cacheable | Kind::Put, false, _) => errors.push(syn::Error::new(
                span,
                format!("{} needs `key = \"…\"`, such as `key = \"user:<id>\"`", kind.attribute()),
            )),
            _ => {}
        }
    }
}

/// A malformed argument list, said with what the attribute takes.
fn syntax(site: Site, error: &syn::Error, valid: &str) -> syn::Error {
    syn::Error::new(
        error.span(),
        format!(
            "{error}: {} takes `name = value` arguments: {valid}",
            site.attribute()
        ),
    )
}

/// The names `#[cache_config]` takes, for messages.
fn defaults() -> String {
    let names: Vec<&str> = Name::ALL
        .iter()
        .filter(|name| name.is_default())
        .map(|name| name.as_str())
        .collect();
    names.join(", ")
}

/// An argument of the methods' attributes that `#[cache_config]` cannot
/// give them all.
fn not_a_default(name: Name, span: Span) -> syn::Error {
    let why = match name {
        Name::Key | Name::Prefix => "it names the entries of one method, so write it in that \
             method's attribute"
            .to_owned(),
        Name::Condition | Name::Unless => "it is an expression over one method's parameters \
             or result, so write it in that method's attribute"
            .to_owned(),
        Name::Shape => "it is the return shape of one method, so write it in that method's \
             attribute"
            .to_owned(),
        Name::Before => "it says when one method evicts, so write it in that method's \
             #[cache_evict]"
            .to_owned(),
        Name::CacheNone => "it applies only to methods that return `Option<T>` or \
             `Result<Option<T>, E>`, so write it in their #[cacheable]"
            .to_owned(),
        _ => format!(
            "it is a freshness option: set it for the whole cache with \
             `CacheBuilder::{}(..)`, or in one method's #[cacheable]",
            name.as_str()
        ),
    };
    syn::Error::new(
        span,
        format!(
            "`{}` cannot be a default of #[cache_config]: {why}; #[cache_config] gives its \
             methods: {}",
            name.as_str(),
            defaults(),
        ),
    )
}

/// Whether the attribute `kind` takes the argument `name` (as written in
/// code): which of `#[cache_config]`'s defaults apply to it.
pub(crate) fn takes(kind: Kind, name: &str) -> bool {
    Name::ALL
        .iter()
        .any(|known| known.as_str() == name && known.taken_by(kind))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(kind: Kind, tokens: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Errors::default();
        let args = Args::parse(kind, tokens, &mut errors);
        (args, errors.messages())
    }

    #[test]
    fn every_name_is_a_keyword_and_taken_by_some_macro() {
        for name in Name::ALL {
            let text = name.as_str();
            assert!(
                [Kind::Cacheable, Kind::Evict, Kind::Put]
                    .into_iter()
                    .any(|kind| name.taken_by(kind)),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_typed_values() {
        let (args, errors) = parse(
            Kind::Cacheable,
            quote!(
                key = "u:<id>",
                ttl = "1m",
                cache_none = "5s",
                jitter = "10%",
                cache = self.cache,
                condition = id > 0,
                unless = result.is_empty(),
                shape = "result_option",
                crate = my::cachefw
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.key.map(|k| k.0.value()).as_deref(), Some("u:<id>"));
        assert_eq!(
            args.ttl.and_then(|t| t.literal().map(|t| t.millis)),
            Some(60_000)
        );
        assert_eq!(args.cache_none.map(|t| t.millis), Some(5_000));
        assert_eq!(args.jitter.map(|j| j.0), Some(0.1));
        assert!(args.cache.is_some() && args.condition.is_some() && args.unless.is_some());
        assert_eq!(args.shape.map(|s| s.shape), Some(Shape::ResultOption));
        let path = args.krate.expect("crate");
        assert_eq!(quote!(#path).to_string(), "my :: cachefw");
    }

    #[test]
    fn reports_every_mistake_and_keeps_the_rest() {
        let (args, errors) = parse(
            Kind::Cacheable,
            quote!(
                key = user,
                ttl = 10,
                bogus = 1,
                ttl = "1m",
                shape = "either",
                before = true,
                jitter = "10%",
                crate = "cachefw",
                cache_none = "1x"
            ),
        );
        let expected = [
            "`key` takes a string literal",
            "`ttl` takes a duration",
            "unknown argument `bogus` of #[cacheable]",
            "`ttl` is given more than once",
            "unknown shape \"either\"",
            "unknown argument `before` of #[cacheable]",
            "`crate` takes a path",
            "malformed TTL \"1x\"",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(error.starts_with(expected), "{error} / {expected}");
        }
        assert_eq!(
            args.jitter.map(|j| j.0),
            Some(0.1),
            "the valid ones are kept"
        );
    }

    #[test]
    fn a_repeated_name_is_reported_once_the_first_kept() {
        let (args, errors) = parse(Kind::Put, quote!(key = "a", ttl = "1m", ttl = "2m"));
        assert_eq!(errors, ["`ttl` is given more than once"]);
        assert_eq!(
            args.ttl.and_then(|t| t.literal().map(|t| t.millis)),
            Some(60_000)
        );
    }

    #[test]
    fn recovers_from_malformed_syntax() {
        let (args, errors) = parse(Kind::Evict, quote!(key "a", before = true false, prefix));
        let expected = ["expected `=`", "expected `,`", "expected `=`"];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(error.contains(expected), "{error} / {expected}");
        }
        assert_eq!(args.before.map(|b| b.value), Some(true));
    }

    #[test]
    fn names_the_valid_arguments_of_each_macro() {
        let (_, errors) = parse(Kind::Evict, quote!(key = "a", ttl = "1m"));
        assert_eq!(
            errors,
            [
                "unknown argument `ttl` of #[cache_evict]; valid arguments are: \
              key, prefix, cache, condition, before, shape, crate, tags"
            ]
        );
    }
}
