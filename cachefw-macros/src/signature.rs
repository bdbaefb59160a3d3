//! What the macros need to know about the annotated function: its parameter
//! names, its return type, and whether it is a plain `async fn` or a method
//! that `#[async_trait]` has already rewritten.
//!
//! The return type's shape is not read here: the generated code finds it
//! from the type itself (see `cachefw/src/shape.rs`), so aliases keep
//! theirs. What the macro can see is whether the type hangs on a type
//! parameter, which that dispatch cannot see through.

use proc_macro2::Span;
use syn::visit_mut::VisitMut;
use syn::{
    Expr, ExprAsync, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Stmt,
    Type, TypeImplTrait, TypeParamBound, TypePath,
};

pub(crate) struct Analysis {
    /// The function's name, for messages.
    pub(crate) name: Ident,
    /// Parameter names a key may name: `self`, and parameters bound to a
    /// plain identifier.
    pub(crate) params: Vec<String>,
    /// The return type, to annotate the body with, when it can be written
    /// in a `let` (no `impl Trait`).
    pub(crate) annotate: Option<Type>,
    /// The return type when it is a type parameter of the function (`R`)
    /// or one of its associated types (`R::Output`): its shape cannot be
    /// found from the type, so it has to be declared.
    pub(crate) generic_output: Option<Type>,
    /// Whether the function returns `()`, whose value no key can name.
    pub(crate) returns_unit: bool,
    /// Whether `#[async_trait]` already rewrote the method: its body is then
    /// `Box::pin(async move { … })`, and that inner block is what is wrapped.
    pub(crate) async_trait: bool,
    /// Where the return type is written (or the function's name): errors
    /// about the value type point there.
    pub(crate) output_span: Span,
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip(&group.elem),
        Type::Paren(paren) => strip(&paren.elem),
        other => other,
    }
}

/// Whether `ty` is one of `params` (`R`) or a projection from one
/// (`R::Output`, `<R as Trait>::Output`).
fn hangs_on(ty: &Type, params: &[&Ident]) -> bool {
    let Type::Path(TypePath { qself, path }) = strip(ty) else {
        return false;
    };
    if let Some(qself) = qself {
        return hangs_on(&qself.ty, params);
    }
    path.leading_colon.is_none()
        && path.segments.first().is_some_and(|first| {
            first.arguments.is_none() && params.iter().any(|param| first.ident == **param)
        })
}

fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl VisitMut for Finder {
        fn visit_type_impl_trait_mut(&mut self, _: &mut TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type_mut(&mut ty.clone());
    finder.0
}

/// The `async move { … }` inside the `Box::pin(…)` that `#[async_trait]`
/// makes the whole body of a method.
pub(crate) fn async_trait_body(item: &mut ItemFn) -> Option<&mut ExprAsync> {
    let [Stmt::Expr(Expr::Call(call), None)] = item.block.stmts.as_mut_slice() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let is_box_pin = func.path.segments.len() >= 2
        && func
            .path
            .segments
            .iter()
            .rev()
            .nth(1)
            .is_some_and(|s| s.ident == "Box")
        && func.path.segments.last().is_some_and(|s| s.ident == "pin");
    if !is_box_pin || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut() {
        Some(Expr::Async(block)) if block.capture.is_some() => Some(block),
        _ => None,
    }
}

/// `R` of `Pin<Box<dyn Future<Output = R> + Send + 'a>>`.
fn future_output(ty: &Type) -> Option<&Type> {
    let Type::Path(pin) = strip(ty) else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &pin.path.segments.last()?.arguments else {
        return None;
    };
    let Some(GenericArgument::Type(boxed)) = args.args.first() else {
        return None;
    };
    let Type::Path(boxed) = strip(boxed) else {
        return None;
    };
    let PathArguments::AngleBracketed(args) = &boxed.path.segments.last()?.arguments else {
        return None;
    };
    let Some(GenericArgument::Type(Type::TraitObject(object))) = args.args.first() else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let future = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &future.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// Analyses `item`, or explains why the macros cannot wrap it.
pub(crate) fn analyze(item: &mut ItemFn, attribute: &str) -> syn::Result<Analysis> {
    let params = item
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Receiver(_) => Some("self".to_owned()),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(ident) => Some(ident.ident.to_string()),
                _ => None,
            },
        })
        .collect();
    let unit: Type = syn::parse_quote!(());
    let (output, async_trait) = if item.sig.asyncness.is_some() {
        let output = match &item.sig.output {
            ReturnType::Default => unit,
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        (output, false)
    } else {
        let output = match &item.sig.output {
            ReturnType::Type(_, ty) => future_output(ty).cloned(),
            ReturnType::Default => None,
        };
        match output {
            Some(output) if async_trait_body(item).is_some() => (output, true),
            _ => {
                return Err(syn::Error::new_spanned(
                    item.sig.fn_token,
                    format!(
                        "{attribute} needs an `async fn` (or a method of an `#[async_trait]` impl)"
                    ),
                ));
            }
        }
    };
    let type_params: Vec<&Ident> = item.sig.generics.type_params().map(|p| &p.ident).collect();
    let generic_output = hangs_on(&output, &type_params).then(|| output.clone());
    let returns_unit = matches!(strip(&output), Type::Tuple(tuple) if tuple.elems.is_empty());
    let output_span = match &item.sig.output {
        ReturnType::Type(_, ty) if !async_trait => syn::spanned::Spanned::span(ty),
        _ => item.sig.ident.span(),
    };
    let annotate = (!async_trait && !contains_impl_trait(&output)).then_some(output);
    Ok(Analysis {
        name: item.sig.ident.clone(),
        params,
        annotate,
        generic_output,
        returns_unit,
        async_trait,
        output_span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzed(item: &str) -> Analysis {
        let mut item: ItemFn = syn::parse_str(item).expect("a fn");
        analyze(&mut item, "#[cache_put]").expect("analysed")
    }

    #[test]
    fn finds_unit_returns() {
        for item in [
            "async fn f() {}",
            "async fn f() -> () {}",
            "async fn f() -> (()) {}",
        ] {
            assert!(analyzed(item).returns_unit, "{item}");
        }
        for item in ["async fn f() -> u8 {}", "async fn f() -> Result<(), E> {}"] {
            assert!(!analyzed(item).returns_unit, "{item}");
        }
    }

    fn generic_output(item: &str) -> Option<String> {
        let mut item: ItemFn = syn::parse_str(item).expect("a fn");
        let analysis = analyze(&mut item, "#[cacheable]").expect("analysed");
        analysis
            .generic_output
            .map(|ty| quote::ToTokens::to_token_stream(&ty).to_string())
    }

    #[test]
    fn finds_returns_that_hang_on_a_type_parameter() {
        for item in [
            "async fn f<R>() -> R {}",
            "async fn f<R: Tr>() -> R::Output {}",
            "async fn f<R: Tr>() -> <R as Tr>::Output {}",
            "async fn f<'a, R>() -> (R) {}",
        ] {
            assert!(generic_output(item).is_some(), "{item}");
        }
        for item in [
            "async fn f<R>() -> Result<R, E> {}",
            "async fn f<R>() -> Option<R> {}",
            "async fn f<T>() -> R {}",
            "async fn f<R>() -> ::R {}",
            "async fn f<R>() -> Vec<R> {}",
            "async fn f() -> ApiResult<u8> {}",
            "async fn f() {}",
        ] {
            assert_eq!(generic_output(item), None, "{item}");
        }
    }
}
