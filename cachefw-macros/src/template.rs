//! Key templates: literal text with `<param>` and `<param.field.path>`
//! placeholders, checked against the function's parameters at compile time
//! and rendered with `Display` into one buffer.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Ident, Index, LitStr, Member};

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// A parameter and the fields below it (`order.id` → `order`, `[id]`).
    Path(String, Vec<String>),
}

/// A template that passed every check.
pub(crate) struct Template {
    parts: Vec<Part>,
    span: Span,
}

/// Splits `text` into parts, or says what is wrong with it.
fn split(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            return Err(format!(
                "unclosed `<` in key template {text:?}: placeholders look like `<id>` or `<order.id>`"
            ));
        };
        let path = &after[..close];
        let mut segments = path.split('.');
        let root = segments.next().unwrap_or_default();
        let fields: Vec<String> = segments.map(str::to_owned).collect();
        let is_ident = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_alphabetic())
                && s.chars().all(|c| c == '_' || c.is_alphanumeric())
        };
        let is_index = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        if path.is_empty() {
            return Err(format!(
                "empty placeholder `<>` in key template {text:?}: name a parameter, like `<id>`"
            ));
        }
        if !is_ident(root) || !fields.iter().all(|f| is_ident(f) || is_index(f)) {
            return Err(format!(
                "`<{path}>` in key template {text:?} is not a parameter path: \
                 expected `<param>` or `<param.field>`"
            ));
        }
        parts.push(Part::Path(root.to_owned(), fields));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

impl Template {
    /// Parses `lit` and checks each placeholder against `params` (the
    /// function's parameter names, `self` included for methods).
    pub(crate) fn parse(lit: &LitStr, params: &[String]) -> syn::Result<Self> {
        let text = lit.value();
        let parts = split(&text).map_err(|message| syn::Error::new_spanned(lit, message))?;
        for part in &parts {
            if let Part::Path(root, _) = part
                && !params.iter().any(|p| p == root)
            {
                let known = if params.is_empty() {
                    "the function has no parameters".to_owned()
                } else {
                    format!("the parameters are: {}", params.join(", "))
                };
                return Err(syn::Error::new_spanned(
                    lit,
                    format!("no parameter named `{root}` in key template {text:?}; {known}"),
                ));
            }
        }
        Ok(Self {
            parts,
            span: lit.span(),
        })
    }

    /// Bytes to reserve for the rendered key: the text, plus a guess per
    /// placeholder.
    pub(crate) fn capacity(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Path(..) => 16,
            })
            .sum()
    }

    /// Statements appending the key to `writer`, a `KeyWriter`.
    pub(crate) fn render(&self, writer: &Ident) -> TokenStream {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => quote!(#writer.text(#text);),
                Part::Path(root, fields) => {
                    let root = Ident::new(root, self.span);
                    let fields = fields.iter().map(|field| match field.parse::<u32>() {
                        Ok(index) => Member::Unnamed(Index {
                            index,
                            span: self.span,
                        }),
                        Err(_) => Member::Named(Ident::new(field, self.span)),
                    });
                    // Spanned on the template, where a type that is not
                    // `Display` is then reported.
                    quote_spanned!(self.span=> #writer.display(&(#root #(.#fields)*));)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_paths() {
        assert_eq!(
            split("order:<order.id>:<tenant>:<pair.0>!"),
            Ok(vec![
                Part::Text("order:".into()),
                Part::Path("order".into(), vec!["id".into()]),
                Part::Text(":".into()),
                Part::Path("tenant".into(), vec![]),
                Part::Text(":".into()),
                Part::Path("pair".into(), vec!["0".into()]),
                Part::Text("!".into()),
            ])
        );
        assert_eq!(split("a>b"), Ok(vec![Part::Text("a>b".into())]));
        assert_eq!(split(""), Ok(vec![]));
    }

    #[test]
    fn refuses_malformed_placeholders() {
        assert!(split("user:<id").unwrap_err().contains("unclosed `<`"));
        assert!(split("user:<>").unwrap_err().contains("empty placeholder"));
        for bad in ["<a-b>", "<1a>", "<a..b>", "<a.>", "<.a>", "<a b>"] {
            assert!(
                split(bad).unwrap_err().contains("not a parameter path"),
                "{bad}"
            );
        }
    }

    #[test]
    fn checks_roots_against_parameters() {
        let lit = LitStr::new("user:<id>:<who.name>", Span::call_site());
        let params = ["id".to_owned(), "who".to_owned()];
        assert!(Template::parse(&lit, &params).is_ok());
        let err = Template::parse(&lit, &params[..1])
            .err()
            .expect("unknown root");
        assert!(
            err.to_string().contains("no parameter named `who`"),
            "{err}"
        );
        assert!(err.to_string().contains("the parameters are: id"), "{err}");
    }
}
