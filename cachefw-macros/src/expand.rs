//! The expansion shared by the three macros: check everything, then wrap
//! the body in one `__private::Call` method, generic over the return shape
//! that the generated code finds from the return type.
//!
//! ```text
//! async fn get_user(id: u64) -> ApiResult<User> {
//!     let __cachefw_call = Call::key(<cache>, <capacity>, |k| { k.text("user:"); k.display(&(id)); });
//!     let __cachefw_body = async move { let __cachefw_ret: ApiResult<User> = { <body> }; __cachefw_ret };
//!     let __cachefw_shape = { use Dispatch as _; (&&&Tag::of(&__cachefw_body)).shape() };
//!     __cachefw_call.cacheable(__cachefw_shape, &Options { … },
//!         |result: &_| -> bool { <unless> }, __cachefw_body).await
//! }
//! ```
//!
//! Every runtime path starts from `::cachefw`, or from the path given as
//! `crate = …`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn};

use crate::args::{Args, Kind, RefreshAhead, Ttl};
use crate::errors::Errors;
use crate::owned::{self, OwnedArgs};
use crate::signature::{self, Analysis};
use crate::template::Template;

pub(crate) fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(kind, attr, &mut errors);
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let message = format!("{} goes on an `async fn`: {error}", kind.attribute());
            let error = syn::Error::new(error.span(), message).to_compile_error();
            return quote!(#item #error);
        }
    };
    let analysis = match signature::analyze(&mut function, kind.attribute()) {
        Ok(analysis) => Some(analysis),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let call = analysis
        .as_ref()
        .and_then(|analysis| call_tokens(kind, &args, analysis, &mut errors));
    match (call, analysis) {
        (Some(call), Some(analysis)) if errors.is_empty() => wrap(function, &analysis, call),
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#item #errors)
        }
    }
}

/// `Option<Duration>` tokens for an optional TTL.
fn ttl_tokens(private: &TokenStream, ttl: Option<&Ttl>) -> TokenStream {
    match ttl {
        None => quote!(#private::Option::None),
        Some(Ttl { millis, .. }) => {
            quote!(#private::Option::Some(#private::Duration::from_millis(#millis)))
        }
    }
}

fn cache_tokens(private: &TokenStream, cache: Option<&Expr>) -> TokenStream {
    match cache {
        // Method-call syntax, so that `Arc<Cache>`, `&Cache` and statics
        // that dereference to a `Cache` work as they are.
        // Spanned on the expression, so a wrong type is reported there.
        Some(expr) => quote_spanned! {expr.span()=> {
            use #private::CacheRef as _;
            (#expr).__cachefw_cache()
        }},
        None => quote!(#private::installed_or_warn()),
    }
}

/// The `unless` predicate over `result`, a reference to the value about to
/// be stored, whose type the runtime method gives.
fn unless_tokens(unless: Option<&Expr>) -> TokenStream {
    // `result` is the user's name for the value, so it takes their span.
    let result = Ident::new("result", Span::call_site());
    match unless {
        Some(expr) => quote!(|#result: &_| -> bool { #expr }),
        None => quote!(|_: &_| false),
    }
}

/// The call the body is wrapped in; `None` after reporting an error.
fn call_tokens(kind: Kind, args: &Args, analysis: &Analysis, errors: &mut Errors) -> Option<Call> {
    // Every check runs, so that all mistakes are reported at once.
    let template = args
        .key
        .as_ref()
        .or(args.prefix.as_ref())
        .and_then(
            |target| match Template::parse(&target.0, &analysis.params) {
                Ok(template) => Some(template),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        );
    if let (Some(output), None, Kind::Cacheable | Kind::Put) =
        (&analysis.generic_output, &args.shape, kind)
    {
        errors.push(syn::Error::new_spanned(
            output,
            format!(
                "this return type is a type parameter (or one of its associated types), whose \
                 shape {} cannot see: declare it with `shape = \"result\"`, `\"option\"`, \
                 `\"result_option\"` or `\"plain\"` (a bare type parameter can only be \
                 `\"plain\"`, every value cached; return `Result<T, E>` or `Option<T>` to cache \
                 only `Ok` or `Some`)",
                kind.attribute(),
            ),
        ));
    }
    let template = template?;
    let private = match &args.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cachefw::__private),
    };
    let writer = Ident::new("__cachefw_key", Span::mixed_site());
    let render = template.render(&writer);
    let capacity = template.capacity();
    let cache = cache_tokens(&private, args.cache.as_ref());
    let constructor = if args.prefix.is_some() {
        quote!(prefix)
    } else {
        quote!(key)
    };
    let new_call = quote! {
        #private::Call::#constructor(#cache, #capacity, |#writer| { #render })
    };
    let make = match &args.condition {
        Some(condition) => quote! {
            let __cachefw_enabled: bool = #condition;
            let __cachefw_call = if __cachefw_enabled {
                #new_call
            } else {
                #private::Call::bypass()
            };
        },
        None => quote!(let __cachefw_call = #new_call;),
    };
    // Each check is spanned on its argument, where a mismatch is reported.
    let mut shape = quote! {
        let __cachefw_shape = {
            use #private::Dispatch as _;
            (&&&#private::Tag::__cachefw_tag).shape()
        };
    };
    if let Some(declared) = &args.shape {
        let check = Ident::new(declared.shape.name(), declared.lit.span());
        shape.extend(quote_spanned! {declared.lit.span()=>
            let __cachefw_shape = #private::declare::#check(__cachefw_shape);
        });
    }
    if let Some(none) = &args.cache_none {
        shape.extend(quote_spanned! {none.lit.span()=>
            let __cachefw_shape = #private::caching_none(__cachefw_shape);
        });
    }
    let options = {
        let ttl = ttl_tokens(&private, args.ttl.as_ref());
        let none_ttl = ttl_tokens(&private, args.cache_none.as_ref());
        let jitter = match &args.jitter {
            Some(jitter) => {
                let fraction = jitter.0;
                quote!(#private::Option::Some(#fraction))
            }
            None => quote!(#private::Option::None),
        };
        let refresh_ahead = match &args.refresh_ahead {
            None => quote!(#private::Option::None),
            Some(RefreshAhead::Default(_)) => {
                quote!(#private::Option::Some(#private::Option::None))
            }
            Some(RefreshAhead::Off) => {
                quote!(#private::Option::Some(#private::Option::Some(0.0)))
            }
            Some(RefreshAhead::Beta(beta, _)) => {
                quote!(#private::Option::Some(#private::Option::Some(#beta)))
            }
        };
        let swr = ttl_tokens(&private, args.stale_while_revalidate.as_ref());
        let sie = ttl_tokens(&private, args.stale_if_error.as_ref());
        let load_timeout = ttl_tokens(&private, args.load_timeout.as_ref());
        quote!(&#private::Options {
            ttl: #ttl,
            none_ttl: #none_ttl,
            jitter: #jitter,
            refresh_ahead: #refresh_ahead,
            stale_while_revalidate: #swr,
            stale_if_error: #sie,
            load_timeout: #load_timeout,
        })
    };
    let (method, call_args) = match kind {
        Kind::Cacheable => ("cacheable", {
            let unless = unless_tokens(args.unless.as_ref());
            quote!(#options, #unless,)
        }),
        Kind::Put => ("put", {
            let unless = unless_tokens(args.unless.as_ref());
            quote!(#options, #unless,)
        }),
        Kind::Evict => ("evict", {
            let before = args.before.as_ref().is_some_and(|before| before.value);
            quote!(#before,)
        }),
    };
    let background = match kind {
        Kind::Cacheable => args
            .refresh_ahead
            .as_ref()
            .and_then(RefreshAhead::span_if_on)
            .or_else(|| {
                args.stale_while_revalidate
                    .as_ref()
                    .map(|ttl| ttl.lit.span())
            })
            .or_else(|| args.load_timeout.as_ref().map(|ttl| ttl.lit.span()))
            .map(|span| Background {
                span,
                private: private.clone(),
                options: options.clone(),
                unless: args.unless.clone(),
            }),
        _ => None,
    };
    Some(Call {
        make,
        shape,
        // The method's bounds are on the value type: report them on the
        // return type rather than on the attribute.
        method: Ident::new(method, analysis.output_span),
        args: call_args,
        background,
    })
}

/// What the wrapped body runs: `make` binds `__cachefw_call`, `shape`
/// binds `__cachefw_shape` from `__cachefw_body`, then
/// `__cachefw_call.method(__cachefw_shape, args…, __cachefw_body).await`.
struct Call {
    make: TokenStream,
    shape: TokenStream,
    method: Ident,
    /// The method's arguments between the shape and the body, each followed
    /// by a comma.
    args: TokenStream,
    /// With a background option (its span): the body runs in an owned
    /// loader, and these are the pieces of that call.
    background: Option<Background>,
}

/// The pieces of `cacheable_owned`.
struct Background {
    span: Span,
    private: TokenStream,
    options: TokenStream,
    unless: Option<Expr>,
}

impl Call {
    fn run(&self, body: TokenStream) -> TokenStream {
        let Self {
            make,
            shape,
            method,
            args,
            ..
        } = self;
        let shape = shape_of(shape, quote!(of(&__cachefw_body)));
        quote! {
            #make
            let __cachefw_body = #body;
            #shape
            __cachefw_call.#method(__cachefw_shape, #args __cachefw_body).await
        }
    }

    /// The call with background options: the body in an owned loader.
    fn run_owned(
        &self,
        background: &Background,
        function: &ItemFn,
        body: TokenStream,
    ) -> syn::Result<TokenStream> {
        let Background {
            span,
            private,
            options,
            unless,
        } = background;
        let OwnedArgs { copies, rebinds } = owned::owned_args(function, private, *span)?;
        let (unless_copies, unless) =
            owned::owned_unless(function, unless.as_ref(), private, *span);
        let body = owned::rename_self(body);
        let make = &self.make;
        let shape = shape_of(&self.shape, quote!(of_loader(&__cachefw_loader)));
        let method = Ident::new("cacheable_owned", self.method.span());
        Ok(quote! {
            #make
            #unless_copies
            #copies
            let __cachefw_loader = move || async move {
                #rebinds
                #body.await
            };
            #shape
            __cachefw_call.#method(__cachefw_shape, #options, #unless, __cachefw_loader).await
        })
    }
}

/// The shape tokens with the dispatch on `tag` (`of(&body)` or
/// `of_loader(&loader)`) in place of the placeholder.
fn shape_of(shape: &TokenStream, tag: TokenStream) -> TokenStream {
    shape
        .clone()
        .into_iter()
        .flat_map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) if ident == "__cachefw_tag" => tag.clone(),
            proc_macro2::TokenTree::Group(group) => {
                let mut inner = proc_macro2::Group::new(
                    group.delimiter(),
                    shape_of(&group.stream(), tag.clone()),
                );
                inner.set_span(group.span());
                proc_macro2::TokenTree::Group(inner).into()
            }
            other => other.into(),
        })
        .collect()
}

/// The function with its body wrapped; its signature stays as written.
fn wrap(mut function: ItemFn, analysis: &Analysis, call: Call) -> TokenStream {
    if analysis.async_trait {
        if let Some(background) = &call.background {
            let error = syn::Error::new(
                background.span,
                "background options (`refresh_ahead`, `stale_while_revalidate`, `load_timeout`) \
                 are not supported inside `#[async_trait]` impls yet: use them on an inherent \
                 method or a free function, or set them as the cache's defaults",
            )
            .to_compile_error();
            return quote!(#function #error);
        }
        if let Some(inner) = signature::async_trait_body(&mut function) {
            let run = call.run(inner.to_token_stream());
            *inner = syn::parse_quote!(async move { #run });
        }
        return function.into_token_stream();
    }
    let block = &function.block;
    let body = match &analysis.annotate {
        Some(ty) => quote!(async move { let __cachefw_ret: #ty = #block; __cachefw_ret }),
        None => quote!(async move #block),
    };
    let run = match &call.background {
        Some(background) => match call.run_owned(background, &function, body) {
            Ok(run) => run,
            Err(error) => {
                let error = error.to_compile_error();
                return quote!(#function #error);
            }
        },
        None => call.run(body),
    };
    let attrs = &function.attrs;
    let vis = &function.vis;
    let sig = &function.sig;
    quote! {
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenTree;
    use quote::quote;

    use super::*;

    /// Every token of `stream`, groups opened, delimiters dropped.
    fn flatten(stream: TokenStream, out: &mut Vec<TokenTree>) {
        for tree in stream {
            match tree {
                TokenTree::Group(group) => flatten(group.stream(), out),
                other => out.push(other),
            }
        }
    }

    fn is_punct(token: Option<&TokenTree>, c: char) -> bool {
        matches!(token, Some(TokenTree::Punct(p)) if p.as_char() == c)
    }

    /// Every path with a leading `::` in `stream` (and its groups).
    fn absolute_paths(stream: TokenStream, out: &mut Vec<String>) {
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        for (at, token) in tokens.iter().enumerate() {
            if let TokenTree::Group(group) = token {
                absolute_paths(group.stream(), out);
            }
            let joint = matches!(token, TokenTree::Punct(p)
                if p.as_char() == ':' && p.spacing() == proc_macro2::Spacing::Joint);
            let continues = at > 0
                && (matches!(tokens[at - 1], TokenTree::Ident(_))
                    || is_punct(tokens.get(at - 1), '>'));
            if joint && is_punct(tokens.get(at + 1), ':') && !continues {
                let path: Vec<String> = tokens[at..]
                    .iter()
                    .take_while(|t| matches!(t, TokenTree::Ident(_)) || is_punct(Some(t), ':'))
                    .map(ToString::to_string)
                    .collect();
                out.push(path.concat());
            }
        }
    }

    fn expansions(krate: TokenStream) -> Vec<TokenStream> {
        let cases = [
            (
                Kind::Cacheable,
                quote!(
                    key = "u:<id>",
                    ttl = "1m",
                    cache_none = "5s",
                    jitter = "5%",
                    condition = id > 0,
                    unless = result.is_empty(),
                    shape = "option"
                ),
                quote!(
                    async fn get(id: u64) -> Option<String> {
                        None
                    }
                ),
            ),
            (
                Kind::Put,
                quote!(key = "u:<id>", cache = self.cache),
                quote!(
                    async fn put(&self, id: u64) -> Result<u8, ()> {
                        Ok(1)
                    }
                ),
            ),
            (
                Kind::Evict,
                quote!(prefix = "u:<id>", before = true),
                quote!(
                    async fn evict(id: u64) {}
                ),
            ),
        ];
        cases
            .into_iter()
            .map(|(kind, mut args, item)| {
                if !krate.is_empty() {
                    args.extend(quote!(, crate = #krate));
                }
                expand(kind, args, item)
            })
            .collect()
    }

    #[test]
    fn generated_code_names_only_the_private_module() {
        let mut paths = Vec::new();
        absolute_paths(
            quote!(x: ::a::b::c, f(::d), &::e::f, <T>::g, a::h),
            &mut paths,
        );
        assert_eq!(paths, ["::a::b::c", "::d", "::e::f"], "the scan finds them");

        for out in expansions(TokenStream::new()) {
            let text = out.to_string();
            assert!(!text.contains("compile_error"), "{text}");
            let mut paths = Vec::new();
            absolute_paths(out.clone(), &mut paths);
            assert!(paths.len() >= 3, "{text}");
            for path in paths {
                assert!(
                    path.starts_with("::cachefw::__private::"),
                    "{path} in {text}"
                );
            }
            let mut tokens = Vec::new();
            flatten(out, &mut tokens);
            for (at, token) in tokens.iter().enumerate() {
                if token.to_string() == "let" {
                    let local = tokens[at + 1].to_string();
                    assert!(local.starts_with("__cachefw_"), "{local} in {text}");
                }
            }
        }
    }

    #[test]
    fn crate_path_replaces_cachefw() {
        for out in expansions(quote!(my::rt)) {
            let text = out.to_string();
            assert!(!text.contains("compile_error"), "{text}");
            assert!(!text.contains("cachefw ::"), "{text}");
            let uses = text.matches("__private").count();
            assert!(uses >= 3, "{text}");
            assert_eq!(
                text.matches("my :: rt :: __private").count(),
                uses,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_arguments_leave_the_function_untouched() {
        let item = quote!(
            async fn get(id: u64) -> u64 {
                id
            }
        );
        let out = expand(
            Kind::Cacheable,
            quote!(key = "u:<id>", ttl = 10),
            item.clone(),
        );
        let text = out.to_string();
        assert!(text.starts_with(&item.to_string()), "{text}");
        assert_eq!(text.matches("compile_error").count(), 1, "{text}");
        assert!(!text.contains("__private"), "{text}");
    }

    #[test]
    fn a_generic_return_needs_a_declared_shape() {
        let item = quote!(
            async fn get<R: Tr>(id: u64) -> R::Out {
                load(id)
            }
        );
        let out = expand(Kind::Cacheable, quote!(key = "u:<id>"), item.clone());
        assert!(out.to_string().contains("a type parameter"), "{out}");
        let out = expand(
            Kind::Cacheable,
            quote!(key = "u:<id>", shape = "plain"),
            item.clone(),
        );
        assert!(!out.to_string().contains("compile_error"), "{out}");
        let out = expand(Kind::Evict, quote!(key = "u:<id>"), item);
        assert!(
            !out.to_string().contains("compile_error"),
            "evicting needs no shape: {out}"
        );
    }
}
