//! The expansion of the `#[cache_put]` and `#[cache_evict]` attributes on
//! one function, however many stack there ([`crate::stack`] gathers them):
//! each attribute's key is rendered from the parameters before the body
//! takes them, under its own `condition`; the body runs once; one runtime
//! call, `__private::Writes`, runs every write in the order written.
//!
//! ```text
//! #[cache_put(key = "user:<result.id>")]
//! #[cache_evict(key = "users:<req.tenant>", condition = req.notify)]
//! async fn create_user(req: NewUser) -> Result<User, DbError> { <body> }
//!
//! async fn create_user(req: NewUser) -> Result<User, DbError> {
//!     let __cachefw_write_0 = Call::key(<cache>, 5, |k| { k.text("user:"); k.result(); });
//!     let __cachefw_write_1 = {
//!         let __cachefw_enabled: bool = req.notify;
//!         if __cachefw_enabled { Call::key(<cache>, 22, |k| { k.text("users:"); k.display(&(req.tenant)); }) }
//!         else { Call::bypass() }
//!     };
//!     let __cachefw_body = async move { let __cachefw_ret: Result<User, DbError> = { <body> }; __cachefw_ret };
//!     let __cachefw_shape = { use Dispatch as _; (&&&Tag::of(&__cachefw_body)).shape() };
//!     Writes::new(__cachefw_shape)
//!         .put(__cachefw_write_0, &Options { … }, |_: &_| false, |k, result| { k.display(&(result.id)); })
//!         .evict(__cachefw_write_1, false, |_, _| {})
//!         .run(__cachefw_body).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::args::{Args, Kind};
use crate::errors::Errors;
use crate::expand::{self, Wrapper};
use crate::signature::Analysis;
use crate::template::{Results, Template};

/// The writes of `stack` (each `#[cache_put]` or `#[cache_evict]` with its
/// arguments, in the order written) around the body; `None` after reporting
/// an error.
pub(crate) fn tokens(
    stack: &[(Kind, Args)],
    analysis: &Analysis,
    errors: &mut Errors,
) -> Option<Wrapper> {
    // Every check runs, so that all mistakes are reported at once.
    let templates: Vec<Option<(Template, Vec<Template>)>> = stack
        .iter()
        .map(|(kind, args)| {
            // An eviction of tags alone renders an empty key it never uses.
            let empty = syn::LitStr::new("", Span::call_site());
            let target = match args.key.as_ref().or(args.prefix.as_ref()) {
                Some(target) => &target.0,
                None if args.tags.is_some() => &empty,
                None => return None,
            };
            let template =
                Template::parse(target, &analysis.params, &results(*kind, args, analysis))
                    .map_err(|error| errors.push(error))
                    .ok();
            let tags = expand::tag_templates(args, &analysis.params, errors);
            Some((template?, tags?))
        })
        .collect();
    let declared = stack.iter().any(|(_, args)| args.shape.is_some());
    if let (Some(output), false) = (&analysis.generic_output, declared)
        && let Some((kind, _)) = stack.iter().find(|(kind, _)| *kind == Kind::Put)
    {
        errors.push(expand::undeclared_shape(output, *kind));
    }
    // The stack's runtime items come from the first `crate = …` given, as
    // each write's own do from its own (or that one).
    let krate = stack.iter().find_map(|(_, args)| args.krate.as_ref());
    let stack_private = match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cachefw::__private),
    };
    let mut make = TokenStream::new();
    let mut shape = expand::shape_tokens(&stack_private);
    let mut steps = TokenStream::new();
    for (at, ((kind, args), template)) in stack.iter().zip(templates).enumerate() {
        let (template, tags) = template?;
        let private = match &args.krate {
            Some(_) => expand::private_path(args),
            None => stack_private.clone(),
        };
        let local = format_ident!("__cachefw_write_{at}");
        let call = expand::new_call(&private, *kind, args, &template, &tags, &analysis.name);
        make.extend(quote!(let #local = #call;));
        shape.extend(expand::declared_shape_tokens(&private, args));
        let writer = Ident::new("__cachefw_key", Span::mixed_site());
        let key = template.render_result(&writer);
        // The method's bounds are on the value type: report them on the
        // return type rather than on the attribute.
        steps.extend(if *kind == Kind::Put {
            let method = Ident::new("put", analysis.output_span);
            let options = expand::options_tokens(&private, args, &analysis.name);
            let unless = expand::unless_tokens(args.unless.as_ref());
            let ttl_of = expand::ttl_of_tokens(&private, args);
            quote!(.#method(#local, #options, #unless, #ttl_of, #key))
        } else {
            let method = Ident::new("evict", analysis.output_span);
            let before = args.before.as_ref().is_some_and(|before| before.value);
            quote!(.#method(#local, #before, #key))
        });
    }
    Some(Wrapper {
        make,
        shape,
        run: quote! {
            #stack_private::Writes::new(__cachefw_shape) #steps .run(__cachefw_body).await
        },
        background: None,
    })
}

/// Whether the key of one write may name the returned value, and why not.
fn results(kind: Kind, args: &Args, analysis: &Analysis) -> Results {
    if kind == Kind::Evict && args.before.as_ref().is_some_and(|before| before.value) {
        return Results::Refused(
            "which an eviction with `before = true` does not have: it runs before the body \
             (without `before = true`, it runs after the body, and may name the result)"
                .to_owned(),
        );
    }
    if analysis.returns_unit {
        return Results::Refused(format!(
            "and `{}` returns `()`, which has no value to name: return the value \
             (`Result<T, E>`, `Option<T>` or `T`), or name parameters only",
            analysis.name
        ));
    }
    Results::Allowed
}
