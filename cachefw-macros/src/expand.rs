//! The expansion shared by the three macros: check everything, then wrap
//! the body in one `::cachefw::__private::Call` method.
//!
//! ```text
//! async fn get_user(id: u64) -> Result<User, E> {
//!     let __cachefw_call = Call::key(<cache>, <capacity>, |k| { k.text("user:"); k.display(&(id)); });
//!     __cachefw_call.cacheable_result(<ttl>, |result: &User| -> bool { <unless> },
//!         async move { let __cachefw_ret: Result<User, E> = { <body> }; __cachefw_ret }).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, LitStr};

use crate::args::{Args, Kind};
use crate::errors::Errors;
use crate::signature::{self, Analysis, Shape};
use crate::template::Template;
use crate::ttl;

/// `Option<Duration>` tokens for an optional TTL literal.
fn ttl_tokens(lit: Option<&LitStr>, errors: &mut Errors) -> TokenStream {
    match lit.map(|lit| (lit, ttl::parse_millis(&lit.value()))) {
        None => quote!(::core::option::Option::None),
        Some((_, Ok(ms))) => {
            quote!(::core::option::Option::Some(::cachefw::__private::Duration::from_millis(#ms)))
        }
        Some((lit, Err(message))) => {
            errors.push(syn::Error::new_spanned(lit, message));
            TokenStream::new()
        }
    }
}

fn cache_tokens(cache: Option<&Expr>) -> TokenStream {
    match cache {
        // Method-call syntax, so that `Arc<Cache>`, `&Cache` and statics
        // that dereference to a `Cache` work as they are.
        // Spanned on the expression, so a wrong type is reported there.
        Some(expr) => quote_spanned! {expr.span()=> {
            use ::cachefw::__private::CacheRef as _;
            (#expr).__cachefw_cache()
        }},
        None => quote!(::cachefw::__private::installed()),
    }
}

/// The `unless` predicate over `result: &T`.
fn unless_tokens(unless: Option<&Expr>, value: &syn::Type) -> TokenStream {
    // `result` is the user's name for the value, so it takes their span.
    let result = Ident::new("result", Span::call_site());
    match unless {
        Some(expr) => quote!(|#result: &#value| -> bool { #expr }),
        None => quote!(|_: &#value| false),
    }
}

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

/// The call the body is wrapped in; `None` after reporting an error.
fn call_tokens(kind: Kind, args: &Args, analysis: &Analysis, errors: &mut Errors) -> Option<Call> {
    // Every check runs, so that all mistakes are reported at once.
    let template = args
        .key
        .as_ref()
        .or(args.prefix.as_ref())
        .and_then(|target| match Template::parse(target, &analysis.params) {
            Ok(template) => Some(template),
            Err(error) => {
                errors.push(error);
                None
            }
        });
    let ttl = ttl_tokens(args.ttl.as_ref(), errors);
    if let Some(cache_none) = &args.cache_none
        && analysis.shape != Shape::Option
    {
        errors.push(syn::Error::new_spanned(
            cache_none,
            "`cache_none` caches a `None` result, so it needs a function returning `Option<T>`",
        ));
    }
    let none_ttl = ttl_tokens(args.cache_none.as_ref(), errors);
    let template = template?;
    let writer = Ident::new("__cachefw_key", Span::mixed_site());
    let render = template.render(&writer);
    let capacity = template.capacity();
    let cache = cache_tokens(args.cache.as_ref());
    let constructor = if args.prefix.is_some() {
        quote!(prefix)
    } else {
        quote!(key)
    };
    let new_call = quote! {
        ::cachefw::__private::Call::#constructor(#cache, #capacity, |#writer| { #render })
    };
    let value = &analysis.value;
    let unless = unless_tokens(args.unless.as_ref(), value);
    let make = match &args.condition {
        Some(condition) => quote! {
            let __cachefw_enabled: bool = #condition;
            let __cachefw_call = if __cachefw_enabled {
                #new_call
            } else {
                ::cachefw::__private::Call::bypass()
            };
        },
        None => quote!(let __cachefw_call = #new_call;),
    };
    let jitter = match args
        .jitter
        .as_ref()
        .map(|lit| (lit, ttl::parse_jitter(&lit.value())))
    {
        None => quote!(::core::option::Option::None),
        Some((_, Ok(fraction))) => quote!(::core::option::Option::Some(#fraction)),
        Some((lit, Err(message))) => {
            errors.push(syn::Error::new_spanned(lit, message));
            TokenStream::new()
        }
    };
    let options = quote! {
        &::cachefw::__private::Options { ttl: #ttl, none_ttl: #none_ttl, jitter: #jitter }
    };
    let (name, args) = match (kind, analysis.shape) {
        (Kind::Cacheable, Shape::Result) => ("cacheable_result", quote!(#options, #unless,)),
        (Kind::Cacheable, Shape::Option) => ("cacheable_option", quote!(#options, #unless,)),
        (Kind::Cacheable, Shape::Plain) => ("cacheable_value", quote!(#options, #unless,)),
        (Kind::Put, Shape::Result) => ("put_result", quote!(#options, #unless,)),
        (Kind::Put, Shape::Option) => ("put_option", quote!(#options, #unless,)),
        (Kind::Put, Shape::Plain) => ("put_value", quote!(#options, #unless,)),
        (Kind::Evict, shape) => {
            let before = args.before.as_ref().is_some_and(|b| b.value);
            let name = if shape == Shape::Result {
                "evict_result"
            } else {
                "evict"
            };
            (name, quote!(#before,))
        }
    };
    Some(Call {
        make,
        method: Ident::new(name, Span::mixed_site()),
        args,
    })
}

/// What the wrapped body runs: `make` binds `__cachefw_call`, then
/// `__cachefw_call.method(args…, body).await`.
struct Call {
    make: TokenStream,
    method: Ident,
    /// The method's arguments before the body, each followed by a comma.
    args: TokenStream,
}

/// The function with its body wrapped; its signature stays as written.
fn wrap(mut function: ItemFn, analysis: &Analysis, call: Call) -> TokenStream {
    let Call { make, method, args } = call;
    // The method's bounds are on the value type: report them on the return
    // type rather than on the attribute.
    let method = Ident::new(&method.to_string(), analysis.output_span);
    if analysis.async_trait {
        if let Some(inner) = signature::async_trait_body(&mut function) {
            let body = inner.to_token_stream();
            *inner = syn::parse_quote! {
                async move {
                    #make
                    __cachefw_call.#method(#args #body).await
                }
            };
        }
        return function.into_token_stream();
    }
    let block = &function.block;
    let body = match &analysis.annotate {
        Some(ty) => quote!(async move { let __cachefw_ret: #ty = #block; __cachefw_ret }),
        None => quote!(async move #block),
    };
    let attrs = &function.attrs;
    let vis = &function.vis;
    let sig = &function.sig;
    quote! {
        #(#attrs)*
        #vis #sig {
            #make
            __cachefw_call.#method(#args #body).await
        }
    }
}
