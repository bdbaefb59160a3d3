//! Owned copies of a function's arguments, for the background options of
//! `#[cacheable]` (`refresh_ahead`, `stale_while_revalidate`,
//! `load_timeout`): the cache may finish the body after the call returns,
//! so the body runs in a `'static` loader that owns what it uses.
//!
//! Each argument is copied before the call: a reference parameter
//! `name: &T` with `ToOwned` (rebound as `&T` inside the loader, so the body
//! reads as written), a parameter taken by value is moved, `&self` is
//! cloned (the receiver must be `Clone + Send + Sync + 'static`). Inside the
//! loader, `self` is renamed, since a closure cannot bind it.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::{FnArg, ItemFn, Pat, Type};

/// The name `self` takes inside an owned loader.
pub(crate) const SELF: &str = "__cachefw_self";

/// What the expansion needs to build an owned loader.
pub(crate) struct OwnedArgs {
    /// Statements, before the loader, that make the owned copies.
    pub(crate) copies: TokenStream,
    /// Statements, first inside the loader's future, that rebind the
    /// copies under the parameters' names.
    pub(crate) rebinds: TokenStream,
}

/// The owned copies of `function`'s arguments, or the error that says why
/// one cannot be made; `span` is the background option's, where receiver
/// errors point.
pub(crate) fn owned_args(
    function: &ItemFn,
    private: &TokenStream,
    span: Span,
) -> syn::Result<OwnedArgs> {
    let mut copies = TokenStream::new();
    let mut rebinds = TokenStream::new();
    let this = Ident::new(SELF, Span::mixed_site());
    for input in &function.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                if receiver.mutability.is_some() && receiver.reference.is_some() {
                    return Err(syn::Error::new_spanned(
                        receiver,
                        "background options (`refresh_ahead`, `stale_while_revalidate`, \
                         `load_timeout`) need `&self` or `self`: the body may run after the \
                         call, with a clone of the receiver, which `&mut self` cannot give",
                    ));
                }
                if receiver.reference.is_some() {
                    copies.extend(quote_spanned! {span=>
                        let #this = #private::own_receiver(self);
                    });
                    rebinds.extend(quote!(let #this = &#this;));
                } else if receiver.mutability.is_some() {
                    copies.extend(quote!(let mut #this = self;));
                } else {
                    copies.extend(quote!(let #this = self;));
                }
            }
            FnArg::Typed(typed) => {
                let Pat::Ident(pat) = &*typed.pat else {
                    return Err(syn::Error::new_spanned(
                        &typed.pat,
                        "background options (`refresh_ahead`, `stale_while_revalidate`, \
                         `load_timeout`) need each parameter bound to a name: the body runs \
                         in a loader that owns copies of them",
                    ));
                };
                let name = &pat.ident;
                match &*typed.ty {
                    Type::Reference(reference) if reference.mutability.is_some() => {
                        return Err(syn::Error::new_spanned(
                            &typed.ty,
                            "background options (`refresh_ahead`, `stale_while_revalidate`, \
                             `load_timeout`) cannot take a `&mut` parameter: the body may run \
                             after the call returns",
                        ));
                    }
                    Type::Reference(reference) => {
                        let elem = &reference.elem;
                        let owned = format_ident!("__cachefw_owned_{}", name);
                        copies.extend(quote! {
                            let #owned = ::std::borrow::ToOwned::to_owned(#name);
                        });
                        // The body may not use every parameter (the key or the
                        // cache may be all a parameter is for).
                        rebinds.extend(quote! {
                            #[allow(unused_variables)]
                            let #name: &#elem = ::std::borrow::Borrow::borrow(&#owned);
                        });
                    }
                    // Moved into the loader; a `mut` binding stays mutable
                    // there.
                    _ => {}
                }
            }
        }
    }
    Ok(OwnedArgs { copies, rebinds })
}

/// `tokens` with every `self` renamed to the owned loader's name for it.
pub(crate) fn rename_self(tokens: TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "self" => TokenTree::Ident(Ident::new(
                SELF,
                ident.span().resolved_at(Span::mixed_site()),
            )),
            TokenTree::Group(group) => {
                let mut renamed =
                    proc_macro2::Group::new(group.delimiter(), rename_self(group.stream()));
                renamed.set_span(group.span());
                TokenTree::Group(renamed)
            }
            other => other,
        })
        .collect()
}

/// The `unless` closure of an owned call: `'static`, so the parameters it
/// names are copied for it too.
pub(crate) fn owned_unless(
    function: &ItemFn,
    unless: Option<&syn::Expr>,
    private: &TokenStream,
    span: Span,
) -> (TokenStream, TokenStream) {
    let result = Ident::new("result", Span::call_site());
    let Some(expr) = unless else {
        return (TokenStream::new(), quote!(|_: &_| false));
    };
    let mentioned = idents(quote!(#expr));
    let mut copies = TokenStream::new();
    let mut rebinds = TokenStream::new();
    for input in &function.sig.inputs {
        match input {
            FnArg::Receiver(receiver) if mentioned.iter().any(|i| i == "self") => {
                let this = Ident::new(SELF, Span::mixed_site());
                let copy = Ident::new("__cachefw_unless_self", Span::mixed_site());
                if receiver.reference.is_some() {
                    copies.extend(quote_spanned!(span=> let #copy = #private::own_receiver(self);));
                    rebinds.extend(quote!(let #this = &#copy;));
                } else {
                    copies.extend(
                        quote_spanned!(span=> let #copy = ::core::clone::Clone::clone(&self);),
                    );
                    rebinds.extend(quote!(let #this = &#copy;));
                }
            }
            FnArg::Typed(typed) => {
                let Pat::Ident(pat) = &*typed.pat else {
                    continue;
                };
                let name = &pat.ident;
                if !mentioned.iter().any(|i| i == name) {
                    continue;
                }
                let copy = format_ident!("__cachefw_unless_{}", name);
                match &*typed.ty {
                    Type::Reference(reference) => {
                        let elem = &reference.elem;
                        copies.extend(quote!(let #copy = ::std::borrow::ToOwned::to_owned(#name);));
                        rebinds.extend(quote! {
                            let #name: &#elem = ::std::borrow::Borrow::borrow(&#copy);
                        });
                    }
                    _ => {
                        copies.extend(quote!(let #copy = ::core::clone::Clone::clone(&#name);));
                        rebinds.extend(quote!(let #name = #copy;));
                    }
                }
            }
            FnArg::Receiver(_) => {}
        }
    }
    let expr = rename_self(quote!(#expr));
    (
        copies,
        quote!(move |#result: &_| -> bool { #rebinds #expr }),
    )
}

/// Every identifier in `tokens`.
fn idents(tokens: TokenStream) -> Vec<Ident> {
    let mut out = Vec::new();
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) => out.push(ident),
            TokenTree::Group(group) => out.extend(idents(group.stream())),
            _ => {}
        }
    }
    out
}
