//! The expansion shared by the three macros: check everything, then wrap
//! the body in one runtime call, generic over the return shape that the
//! generated code finds from the return type. `#[cacheable]` is wrapped in
//! `__private::Call::cacheable`; the `#[cache_put]` and `#[cache_evict]`
//! attributes stacked on a function in one `__private::Writes` (see
//! [`crate::writes`]).
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
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn};

use crate::args::{Args, Kind, RefreshAhead, Ttl, TtlArg};
use crate::errors::Errors;
use crate::owned::{self, OwnedArgs};
use crate::signature::{self, Analysis};
use crate::template::{Results, Template};
use crate::{stack, writes};

pub(crate) fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    if stack::is_expanded(&attr) {
        return item;
    }
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
    let siblings = match kind {
        Kind::Cacheable => Vec::new(),
        Kind::Put | Kind::Evict => stack::take(&mut function, &mut errors),
    };
    let analysis = match signature::analyze(&mut function, kind.attribute()) {
        Ok(analysis) => Some(analysis),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let renderer = match (kind, &analysis) {
        (Kind::Cacheable, Some(analysis)) => key_renderer(&args, &function, analysis),
        _ => TokenStream::new(),
    };
    let wrapper = analysis.as_ref().and_then(|analysis| match kind {
        Kind::Cacheable => cacheable_tokens(&args, analysis, &mut errors),
        Kind::Put | Kind::Evict => {
            let mut stack = vec![(kind, args)];
            stack.extend(siblings.into_iter().map(|sibling| {
                let args = Args::parse_at(sibling.kind, sibling.tokens, sibling.span, &mut errors);
                (sibling.kind, args)
            }));
            writes::tokens(&stack, analysis, &mut errors)
        }
    });
    match (wrapper, analysis) {
        (Some(wrapper), Some(analysis)) if errors.is_empty() => {
            let wrapped = wrap(function, &analysis, wrapper);
            quote!(#wrapped #renderer)
        }
        // The function as written (its stack left expanded, so that no
        // error is reported twice), so the rest of the crate still
        // type-checks.
        _ => {
            let errors = errors.to_compile_errors();
            quote!(#function #errors)
        }
    }
}

/// `fn <name>_key(..) -> String` beside a `#[cacheable]` function: its
/// key (the `{key}` part, as `get`, `delete` and `get_or_load_many` take
/// it) rendered from the parameters the template names, each by reference
/// (a reference parameter as it is), so that batch reads and manual
/// evictions never rebuild keys by hand. Only for functions without a
/// receiver or generics (a method may sit in a trait impl, where an extra
/// item is not allowed); nothing otherwise.
fn key_renderer(args: &Args, function: &ItemFn, analysis: &Analysis) -> TokenStream {
    let sig = &function.sig;
    let has_receiver = sig
        .inputs
        .iter()
        .any(|input| matches!(input, syn::FnArg::Receiver(_)));
    if has_receiver || !sig.generics.params.is_empty() || analysis.async_trait {
        return TokenStream::new();
    }
    let Some(key) = &args.key else {
        return TokenStream::new();
    };
    let results = Results::Refused(String::new());
    let Ok(template) = Template::parse(&key.0, &analysis.params, &results) else {
        return TokenStream::new();
    };
    let roots = template.roots();
    let mut params = Vec::new();
    for input in &sig.inputs {
        let syn::FnArg::Typed(typed) = input else {
            continue;
        };
        let syn::Pat::Ident(pat) = &*typed.pat else {
            continue;
        };
        if !roots.iter().any(|root| pat.ident == root) {
            continue;
        }
        let ident = &pat.ident;
        let ty = &typed.ty;
        params.push(match &**ty {
            syn::Type::Reference(_) => quote!(#ident: #ty),
            _ => quote!(#ident: &#ty),
        });
    }
    let private = private_path(args);
    let writer = Ident::new("__cachefw_key", Span::mixed_site());
    let render = template.render(&writer);
    let capacity = template.capacity();
    let vis = &function.vis;
    let name = format_ident!("{}_key", sig.ident);
    let doc = format!(
        "The cache key of [`{}`], `{}`, rendered from its arguments as the macro renders \
         it: for `get`, `delete` and `get_or_load_many`.",
        sig.ident,
        key.0.value()
    );
    quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        #vis fn #name(#(#params),*) -> #private::String {
            #private::render_key(#capacity, |#writer| { #render })
        }
    }
}

/// `::cachefw::__private`, or the `__private` of the path given as
/// `crate = …`.
pub(crate) fn private_path(args: &Args) -> TokenStream {
    match &args.krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cachefw::__private),
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

/// The cache of one attribute: its `cache = …`, or the installed one, which
/// warns naming `site` (the function, `module_path!()::name`) when there is
/// none, since then that attribute does nothing.
fn cache_tokens(
    private: &TokenStream,
    cache: Option<&Expr>,
    kind: Kind,
    site: &TokenStream,
) -> TokenStream {
    match cache {
        // Method-call syntax, so that `Arc<Cache>`, `&Cache` and statics
        // that dereference to a `Cache` work as they are.
        // Spanned on the expression, so a wrong type is reported there.
        Some(expr) => quote_spanned! {expr.span()=> {
            use #private::CacheRef as _;
            (#expr).__cachefw_cache()
        }},
        None => {
            let attribute = match kind {
                Kind::Cacheable => quote!(Cacheable),
                Kind::Put => quote!(Put),
                Kind::Evict => quote!(Evict),
            };
            // A flag per attribute: it warns once, and two functions of one
            // name in a module each warn.
            quote!({
                static WARNED: #private::AtomicBool = #private::AtomicBool::new(false);
                #private::installed_or_warn(
                    #site,
                    #private::concat!(#private::file!(), ":", #private::line!()),
                    #private::Attribute::#attribute,
                    &WARNED,
                )
            })
        }
    }
}

/// `module_path!()::name` of the function, as a `&'static str`: the metrics
/// label and the name in warnings.
fn site_tokens(private: &TokenStream, name: &Ident) -> TokenStream {
    let name = name.to_string();
    quote!(#private::concat!(#private::module_path!(), "::", #name))
}

/// The `unless` predicate over `result`, a reference to the value about to
/// be stored, whose type the runtime method gives.
pub(crate) fn unless_tokens(unless: Option<&Expr>) -> TokenStream {
    // `result` is the user's name for the value, so it takes their span.
    let result = Ident::new("result", Span::call_site());
    match unless {
        Some(expr) => quote!(|#result: &_| -> bool { #expr }),
        None => quote!(|_: &_| false),
    }
}

/// The TTL of `ttl = <expr>`: a `Duration` over `result`, the value about
/// to be stored, its type checked on the expression; `None` (the options'
/// TTL) for a literal or no `ttl`.
pub(crate) fn ttl_of_tokens(private: &TokenStream, args: &Args) -> TokenStream {
    let result = Ident::new("result", Span::call_site());
    match &args.ttl {
        Some(TtlArg::Expr(expr)) => {
            let ttl = quote_spanned!(expr.span()=> { let __cachefw_ttl: #private::Duration = #expr; __cachefw_ttl });
            quote!(|#result: &_| -> #private::Option<#private::Duration> { #private::Option::Some(#ttl) })
        }
        _ => quote!(|_: &_| #private::Option::None),
    }
}

/// The `&Options { … }` of a call: what its arguments say about storing.
///
/// `site` is the function's name: the metrics label the call with
/// `module_path!()::name`.
pub(crate) fn options_tokens(private: &TokenStream, args: &Args, site: &Ident) -> TokenStream {
    let site = site_tokens(private, site);
    let ttl = ttl_tokens(private, args.ttl.as_ref().and_then(TtlArg::literal));
    let none_ttl = ttl_tokens(private, args.cache_none.as_ref());
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
    let swr = ttl_tokens(private, args.stale_while_revalidate.as_ref());
    let sie = ttl_tokens(private, args.stale_if_error.as_ref());
    let load_timeout = ttl_tokens(private, args.load_timeout.as_ref());
    quote!(&#private::Options {
        ttl: #ttl,
        none_ttl: #none_ttl,
        jitter: #jitter,
        refresh_ahead: #refresh_ahead,
        stale_while_revalidate: #swr,
        stale_if_error: #sie,
        load_timeout: #load_timeout,
        site: #site,
    })
}

/// An expression making the `Call` of one attribute before the body runs:
/// its cache and the key (or prefix) rendered from the parameters, or a
/// bypass when its `condition` is false. `name` is the function's.
pub(crate) fn new_call(
    private: &TokenStream,
    kind: Kind,
    args: &Args,
    template: &Template,
    tags: &[Template],
    name: &Ident,
) -> TokenStream {
    let writer = Ident::new("__cachefw_key", Span::mixed_site());
    let render = template.render(&writer);
    let capacity = template.capacity();
    let site = site_tokens(private, name);
    let cache = cache_tokens(private, args.cache.as_ref(), kind, &site);
    let constructor = if args.prefix.is_some() {
        quote!(prefix)
    } else {
        quote!(key)
    };
    let tags = tags.iter().map(|tag| {
        let render = tag.render(&writer);
        let capacity = tag.capacity();
        quote!(.tag(#capacity, |#writer| { #render }))
    });
    // An eviction of tags alone has no key to evict.
    let keyless = (args.key.is_none() && args.prefix.is_none()).then(|| quote!(.keyless()));
    let call = quote! {
        #private::Call::#constructor(#cache, #capacity, |#writer| { #render }) #(#tags)* #keyless
    };
    match &args.condition {
        // The `bool` is spanned on the expression, where a mismatch is
        // reported, not on the attribute (which may be another of a stack).
        Some(condition) => {
            let enabled =
                quote_spanned!(condition.span()=> let __cachefw_enabled: bool = #condition;);
            quote! {{
                #enabled
                if __cachefw_enabled { #call } else { #private::Call::bypass() }
            }}
        }
        None => call,
    }
}

/// The checked templates of `tags = [...]` (none when not given); `None`
/// after reporting an error. Tags are rendered before the body runs, so
/// they name parameters only.
pub(crate) fn tag_templates(
    args: &Args,
    params: &[String],
    errors: &mut Errors,
) -> Option<Vec<Template>> {
    let Some(tags) = &args.tags else {
        return Some(Vec::new());
    };
    let results = Results::Refused(
        "which a tag cannot name: tags are rendered from the parameters before the body runs"
            .to_owned(),
    );
    let mut templates = Vec::with_capacity(tags.0.len());
    let mut failed = false;
    for tag in &tags.0 {
        match Template::parse(tag, params, &results) {
            Ok(template) => templates.push(template),
            Err(error) => {
                errors.push(error);
                failed = true;
            }
        }
    }
    (!failed).then_some(templates)
}

/// Binds `__cachefw_shape` to the shape of `__cachefw_body`.
pub(crate) fn shape_tokens(private: &TokenStream) -> TokenStream {
    quote! {
        let __cachefw_shape = {
            use #private::Dispatch as _;
            (&&&#private::Tag::__cachefw_tag).shape()
        };
    }
}

/// Checks the shape against the one `shape = "…"` declares, if any; spanned
/// on the argument, where a mismatch is reported.
pub(crate) fn declared_shape_tokens(private: &TokenStream, args: &Args) -> TokenStream {
    let Some(declared) = &args.shape else {
        return TokenStream::new();
    };
    let check = Ident::new(declared.shape.name(), declared.lit.span());
    quote_spanned! {declared.lit.span()=>
        let __cachefw_shape = #private::declare::#check(__cachefw_shape);
    }
}

/// The error for a return type whose shape only a `shape = "…"` can tell.
pub(crate) fn undeclared_shape(output: &syn::Type, kind: Kind) -> syn::Error {
    syn::Error::new_spanned(
        output,
        format!(
            "this return type is a type parameter (or one of its associated types), whose \
             shape {} cannot see: declare it with `shape = \"result\"`, `\"option\"`, \
             `\"result_option\"` or `\"plain\"` (a bare type parameter can only be \
             `\"plain\"`, every value cached; return `Result<T, E>` or `Option<T>` to cache \
             only `Ok` or `Some`)",
            kind.attribute(),
        ),
    )
}

/// The `#[cacheable]` call the body is wrapped in; `None` after reporting
/// an error.
fn cacheable_tokens(args: &Args, analysis: &Analysis, errors: &mut Errors) -> Option<Wrapper> {
    // Every check runs, so that all mistakes are reported at once.
    let results = Results::Refused(
        "which #[cacheable] does not have: its key is read before the body runs (to store \
         under a key from the returned value, use #[cache_put])"
            .to_owned(),
    );
    let template = args.key.as_ref().and_then(|key| {
        Template::parse(&key.0, &analysis.params, &results)
            .map_err(|error| errors.push(error))
            .ok()
    });
    let tags = tag_templates(args, &analysis.params, errors);
    if let (Some(output), None) = (&analysis.generic_output, &args.shape) {
        errors.push(undeclared_shape(output, Kind::Cacheable));
    }
    let (template, tags) = (template?, tags?);
    let private = private_path(args);
    let call = new_call(
        &private,
        Kind::Cacheable,
        args,
        &template,
        &tags,
        &analysis.name,
    );
    let mut shape = shape_tokens(&private);
    shape.extend(declared_shape_tokens(&private, args));
    if let Some(none) = &args.cache_none {
        shape.extend(quote_spanned! {none.lit.span()=>
            let __cachefw_shape = #private::caching_none(__cachefw_shape);
        });
    }
    let options = options_tokens(&private, args, &analysis.name);
    let unless = unless_tokens(args.unless.as_ref());
    let ttl_of = ttl_of_tokens(&private, args);
    // The method's bounds are on the value type: report them on the return
    // type rather than on the attribute.
    let method = Ident::new("cacheable", analysis.output_span);
    let background = args
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
            method: Ident::new("cacheable_owned", analysis.output_span),
            options: options.clone(),
            unless: args.unless.clone(),
            ttl_of: ttl_of.clone(),
        });
    Some(Wrapper {
        make: quote!(let __cachefw_call = #call;),
        shape,
        run: quote! {
            __cachefw_call.#method(__cachefw_shape, #options, #unless, #ttl_of, __cachefw_body).await
        },
        background,
    })
}

/// What the wrapped body runs: `make` binds what is made before the body,
/// `shape` binds `__cachefw_shape` from the shape tag (`__cachefw_tag`
/// stands for `of(&__cachefw_body)`), then `run` awaits the runtime call
/// that runs the body.
pub(crate) struct Wrapper {
    pub(crate) make: TokenStream,
    pub(crate) shape: TokenStream,
    pub(crate) run: TokenStream,
    /// With a background option of `#[cacheable]`: the body runs in an
    /// owned loader, and these are the pieces of that call.
    pub(crate) background: Option<Background>,
}

/// The pieces of `cacheable_owned`.
pub(crate) struct Background {
    span: Span,
    private: TokenStream,
    method: Ident,
    options: TokenStream,
    unless: Option<Expr>,
    /// The TTL over `result` (`ttl = <expr>`): it may name `result` only.
    ttl_of: TokenStream,
}

impl Wrapper {
    fn run(&self, body: TokenStream) -> TokenStream {
        let Self {
            make, shape, run, ..
        } = self;
        let shape = shape_of(shape, quote!(of(&__cachefw_body)));
        quote! {
            #make
            let __cachefw_body = #body;
            #shape
            #run
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
            method,
            options,
            unless,
            ttl_of,
        } = background;
        let OwnedArgs { copies, rebinds } = owned::owned_args(function, private, *span)?;
        let (unless_copies, unless) =
            owned::owned_unless(function, unless.as_ref(), private, *span);
        let body = owned::rename_self(body);
        let make = &self.make;
        let shape = shape_of(&self.shape, quote!(of_loader(&__cachefw_loader)));
        Ok(quote! {
            #make
            #unless_copies
            #copies
            let __cachefw_loader = move || async move {
                #rebinds
                #body.await
            };
            #shape
            __cachefw_call.#method(__cachefw_shape, #options, #unless, #ttl_of, __cachefw_loader).await
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
fn wrap(mut function: ItemFn, analysis: &Analysis, wrapper: Wrapper) -> TokenStream {
    if analysis.async_trait {
        if let Some(background) = &wrapper.background {
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
            let run = wrapper.run(inner.to_token_stream());
            *inner = syn::parse_quote!(async move { #run });
        }
        return function.into_token_stream();
    }
    let block = &function.block;
    let body = match &analysis.annotate {
        Some(ty) => quote!(async move { let __cachefw_ret: #ty = #block; __cachefw_ret }),
        None => quote!(async move #block),
    };
    let run = match &wrapper.background {
        Some(background) => match wrapper.run_owned(background, &function, body) {
            Ok(run) => run,
            Err(error) => {
                let error = error.to_compile_error();
                return quote!(#function #error);
            }
        },
        None => wrapper.run(body),
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
            (
                Kind::Put,
                quote!(
                    key = "u:<result.id>",
                    condition = id > 0,
                    unless = result.id == 0
                ),
                quote!(
                    #[cache_put(key = "e:<result.name>:<id>", ttl = "1m", jitter = "5%")]
                    #[cachefw::cache_evict(key = "l:<id>", condition = id > 1)]
                    #[cache_evict(prefix = "p:<result.0>", shape = "result")]
                    async fn create(id: u64) -> Result<U, ()> {
                        Ok(U)
                    }
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
            // What the expansion wrote, after the attributes the user did.
            let text = text.find("async fn").map_or(&*text, |at| &text[at..]);
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

    /// The outermost write expands the whole stack: one runtime call, the
    /// writes in the order written, no attribute of the stack left.
    #[test]
    fn one_expansion_for_the_stack() {
        let out = expand(
            Kind::Evict,
            quote!(key = "a:<id>", before = true),
            quote!(
                #[doc = "kept"]
                #[cache_put(key = "b:<result>")]
                #[cache_evict(prefix = "c:")]
                async fn f(id: u64) -> u64 {
                    id
                }
            ),
        );
        let text = out.to_string();
        assert!(!text.contains("compile_error"), "{text}");
        assert_eq!(text.matches("Writes :: new").count(), 1, "{text}");
        assert_eq!(
            text.matches("# [cache_").count(),
            text.matches("__cachefw_expanded_with").count(),
            "the others are left expanded: {text}"
        );
        let sibling = expand(
            Kind::Put,
            quote!(__cachefw_expanded_with_the_first_attribute_of_its_stack),
            out.clone(),
        );
        assert_eq!(
            sibling.to_string(),
            text,
            "and expand to the function as it is"
        );
        assert!(text.contains("# [doc = \"kept\"]"), "{text}");
        let at = |step: &str| {
            text.find(step)
                .unwrap_or_else(|| panic!("{step} in {text}"))
        };
        let steps = [
            at(". evict (__cachefw_write_0 "),
            at(". put (__cachefw_write_1 "),
            at(". evict (__cachefw_write_2 "),
        ];
        assert!(steps.is_sorted(), "in the order written: {text}");
    }

    #[test]
    fn every_attribute_of_the_stack_reports_its_own_errors_once() {
        let out = expand(
            Kind::Put,
            quote!(key = "a:<result>", ttl = "1x"),
            quote!(
                #[cache_evict(key = "b:<result>", before = true)]
                #[cache_put(tll = "1m")]
                async fn f(id: u64) {}
            ),
        );
        let text = out.to_string();
        for expected in [
            "malformed TTL",
            "`f` returns `()`",
            "`before = true` does not have",
            "unknown argument `tll` of #[cache_put]",
            "#[cache_put] needs `key",
        ] {
            assert_eq!(text.matches(expected).count(), 1, "{expected} in {text}");
        }
        assert!(
            text.starts_with(
                "# [cache_evict (__cachefw_expanded_with_the_first_attribute_of_its_stack)] \
                 # [cache_put (__cachefw_expanded_with_the_first_attribute_of_its_stack)] \
                 async fn f (id : u64) { }"
            ),
            "the function is left as written, its stack expanded: {text}"
        );
    }

    #[test]
    fn result_keys_only_after_the_body() {
        let item = quote!(
            async fn f(id: u64) -> Option<u64> {
                Some(id)
            }
        );
        let cases = [
            (
                Kind::Cacheable,
                quote!(key = "a:<result>"),
                Some("#[cacheable] does not have"),
            ),
            (
                Kind::Evict,
                quote!(key = "a:<result>", before = true),
                Some("`before = true`"),
            ),
            (Kind::Evict, quote!(prefix = "a:<result>"), None),
            (Kind::Put, quote!(key = "a:<result.x.0>"), None),
        ];
        for (kind, args, error) in cases {
            let text = expand(kind, args, item.clone()).to_string();
            match error {
                Some(error) => assert!(text.contains(error), "{text}"),
                None => assert!(!text.contains("compile_error"), "{text}"),
            }
        }
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
