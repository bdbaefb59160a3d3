//! What the macros need to know about the annotated function: its parameter
//! names, the shape of its return type, and whether it is a plain `async fn`
//! or a method that `#[async_trait]` has already rewritten.

use syn::visit_mut::VisitMut;
use syn::{
    Expr, ExprAsync, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeImplTrait, TypeParamBound,
};

/// How the return type maps to cache entries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `Result<T, E>` (by its last path segment, so `io::Result<T>` too).
    Result,
    /// `Option<T>`.
    Option,
    /// Anything else.
    Plain,
}

pub(crate) struct Analysis {
    /// Parameter names a key may name: `self`, and parameters bound to a
    /// plain identifier.
    pub(crate) params: Vec<String>,
    pub(crate) shape: Shape,
    /// The cached value type: `T` of `Result<T, E>` or `Option<T>`, or the
    /// return type itself.
    pub(crate) value: Type,
    /// The return type, to annotate the body with, when it can be written
    /// in a `let` (no `impl Trait`).
    pub(crate) annotate: Option<Type>,
    /// Whether `#[async_trait]` already rewrote the method: its body is then
    /// `Box::pin(async move { … })`, and that inner block is what is wrapped.
    pub(crate) async_trait: bool,
    /// Where the value type is written (or the function's name): errors
    /// about the value type point there.
    pub(crate) output_span: proc_macro2::Span,
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip(&group.elem),
        Type::Paren(paren) => strip(&paren.elem),
        other => other,
    }
}

/// The shape of `ty` and the type that would be cached.
fn shape_of(ty: &Type) -> (Shape, Type) {
    if let Type::Path(path) = strip(ty)
        && path.qself.is_none()
        && let Some(last) = path.path.segments.last()
        && let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(first)) = args.args.first()
    {
        if last.ident == "Result" {
            return (Shape::Result, first.clone());
        }
        if last.ident == "Option" {
            return (Shape::Option, first.clone());
        }
    }
    (Shape::Plain, ty.clone())
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
    let (shape, value) = shape_of(&output);
    let output_span = match &item.sig.output {
        ReturnType::Type(..) if !async_trait => syn::spanned::Spanned::span(&value),
        _ => item.sig.ident.span(),
    };
    let annotate = (!async_trait && !contains_impl_trait(&output)).then_some(output);
    Ok(Analysis {
        params,
        shape,
        value,
        annotate,
        async_trait,
        output_span,
    })
}
