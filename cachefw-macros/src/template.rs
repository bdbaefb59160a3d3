//! Key templates: literal text with `<param>` and `<param.field.path>`
//! placeholders, checked against the function's parameters at compile time
//! and rendered with `Display` into one buffer; and, where the returned
//! value exists, `<result>` and `<result.field.path>` placeholders, rendered
//! into the places left for them once the body has returned.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Ident, Index, LitStr, Member};

/// The name that stands for the returned value in a placeholder.
const RESULT: &str = "result";

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// A parameter and the fields below it (`order.id` → `order`, `[id]`).
    Path(String, Vec<String>),
}

/// Whether a template may name the returned value (`<result…>`).
pub(crate) enum Results {
    Allowed,
    /// Why not, completing "`<result>` names the value the function
    /// returns, …".
    Refused(String),
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

/// The first placeholder in `text` written in another system's syntax
/// (`{id}` Rust format, `#{id}` and `#id` Spring SpEL, `${id}` shell and
/// JavaScript) whose root names one of `names`: what was written, and the
/// path it names. Text that names no parameter is literal and stays.
fn foreign(text: &str, names: &[&str]) -> Option<(String, String)> {
    let bytes = text.as_bytes();
    let path_at = |start: usize| -> &str {
        let end = text[start..]
            .find(|c: char| !(c == '_' || c == '.' || c.is_alphanumeric()))
            .map_or(text.len(), |end| start + end);
        text[start..end].trim_end_matches('.')
    };
    let names_one = |path: &str| {
        let root = path.split('.').next().unwrap_or_default();
        !root.is_empty() && names.contains(&root)
    };
    for (at, c) in text.char_indices() {
        let (open, braced) = match c {
            '{' => (at + 1, true),
            '#' | '$' if bytes.get(at + 1) == Some(&b'{') => (at + 2, true),
            '#' => (at + 1, false),
            _ => continue,
        };
        // `#{` and `${` are read at their first character, not again at `{`.
        if c == '{' && at > 0 && matches!(bytes[at - 1], b'#' | b'$') {
            continue;
        }
        let path = path_at(open);
        let end = open + path.len();
        if !names_one(path) || (braced && bytes.get(end) != Some(&b'}')) {
            continue;
        }
        let written_end = if braced { end + 1 } else { end };
        return Some((text[at..written_end].to_owned(), path.to_owned()));
    }
    None
}

impl Template {
    /// Parses `lit` and checks each placeholder against `params` (the
    /// function's parameter names, `self` included for methods) and, for
    /// `<result…>`, against `results`.
    pub(crate) fn parse(lit: &LitStr, params: &[String], results: &Results) -> syn::Result<Self> {
        let text = lit.value();
        let parts = split(&text).map_err(|message| syn::Error::new_spanned(lit, message))?;
        let error = |message: String| Err(syn::Error::new_spanned(lit, message));
        let mut names: Vec<&str> = params.iter().map(String::as_str).collect();
        if matches!(results, Results::Allowed) {
            names.push(RESULT);
        }
        for part in &parts {
            let Part::Text(literal) = part else { continue };
            if let Some((written, path)) = foreign(literal, &names) {
                return error(format!(
                    "`{written}` in key template {text:?} names the parameter path `{path}` in \
                     another syntax: cachefw placeholders are written `<{path}>` (to keep the \
                     text literal, rename what it names)"
                ));
            }
        }
        for part in &parts {
            let Part::Path(root, _) = part else { continue };
            let known = || {
                let params = if params.is_empty() {
                    "the function has no parameters".to_owned()
                } else {
                    format!("the parameters are: {}", params.join(", "))
                };
                match results {
                    Results::Allowed => format!("{params}; `<{RESULT}>` names the returned value"),
                    Results::Refused(_) => params,
                }
            };
            match (root == RESULT, results) {
                (true, Results::Refused(why)) => {
                    return error(format!(
                        "`<{RESULT}>` in key template {text:?} names the value the function \
                         returns, {why}; {}",
                        known()
                    ));
                }
                (true, Results::Allowed) if params.iter().any(|p| p == RESULT) => {
                    return error(format!(
                        "`<{RESULT}>` in key template {text:?} names the returned value, so the \
                         parameter `{RESULT}` cannot be named in a key: rename the parameter"
                    ));
                }
                (true, Results::Allowed) => {}
                (false, _) if !params.iter().any(|p| p == root) => {
                    return error(format!(
                        "no parameter named `{root}` in key template {text:?}; {}",
                        known()
                    ));
                }
                (false, _) => {}
            }
        }
        Ok(Self {
            parts,
            span: lit.span(),
        })
    }

    /// The parameters the template names, each once, in order.
    pub(crate) fn roots(&self) -> Vec<&str> {
        let mut roots: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Path(root, _) = part
                && !roots.contains(&root.as_str())
            {
                roots.push(root);
            }
        }
        roots
    }

    /// Whether the template names the returned value.
    pub(crate) fn names_result(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Path(root, _) if root == RESULT))
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

    /// Statements appending the key to `writer`, a `KeyWriter`, before the
    /// body runs: a `<result…>` placeholder leaves a place for its value.
    pub(crate) fn render(&self, writer: &Ident) -> TokenStream {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => quote!(#writer.text(#text);),
                Part::Path(root, _) if root == RESULT => quote!(#writer.result();),
                Part::Path(root, fields) => self.display(writer, root, fields),
            })
            .collect()
    }

    /// A closure rendering the `<result…>` placeholders into `writer`, a
    /// `ResultWriter`, from `result`, a reference to the returned value.
    pub(crate) fn render_result(&self, writer: &Ident) -> TokenStream {
        if !self.names_result() {
            return quote!(|_, _| {});
        }
        let displays = self.parts.iter().filter_map(|part| match part {
            Part::Path(root, fields) if root == RESULT => Some(self.display(writer, root, fields)),
            _ => None,
        });
        // The parameter takes the template's span, as its uses do.
        let result = Ident::new(RESULT, self.span);
        quote!(|#writer, #result| { #(#displays)* })
    }

    fn display(&self, writer: &Ident, root: &str, fields: &[String]) -> TokenStream {
        let root = Ident::new(root, self.span);
        // Reported on the template, but as the macro's tokens: rustc then
        // does not offer to rewrite the literal into a field name.
        let span = self.span.resolved_at(Span::mixed_site());
        let fields = fields.iter().map(|field| match field.parse::<u32>() {
            Ok(index) => Member::Unnamed(Index { index, span }),
            Err(_) => Member::Named(Ident::new(field, span)),
        });
        // Spanned on the template, where a field that does not exist or a
        // type that is not `Display` is then reported.
        quote_spanned!(self.span=> #writer.display(&(#root #(.#fields)*));)
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
    fn foreign_placeholders_naming_a_parameter_are_found() {
        let names = ["id", "order"];
        let found = |text: &str| foreign(text, &names);
        let some = |written: &str, path: &str| Some((written.to_owned(), path.to_owned()));
        assert_eq!(found("product:{id}"), some("{id}", "id"));
        assert_eq!(found("product:#id"), some("#id", "id"));
        assert_eq!(found("#id"), some("#id", "id"));
        assert_eq!(found("p:#{id}"), some("#{id}", "id"));
        assert_eq!(found("p:${id}"), some("${id}", "id"));
        assert_eq!(found("o:{order.id}:x"), some("{order.id}", "order.id"));
        assert_eq!(found("o:#order.id."), some("#order.id", "order.id"));
        // Text that names no parameter stays literal.
        for literal in [
            "{x}", "#x", "${x}", "#{x}", "{ident}", "#idx", "{id", "#", "{}", "{id.}x",
        ] {
            assert_eq!(found(literal), None, "{literal}");
        }
    }

    #[test]
    fn foreign_placeholders_are_compile_errors_showing_the_cachefw_form() {
        let params = ["id".to_owned()];
        for (text, written) in [("p:{id}", "{id}"), ("#id", "#id"), ("${id}", "${id}")] {
            let lit = LitStr::new(text, Span::call_site());
            let err = Template::parse(&lit, &params, &refused())
                .err()
                .expect("refused");
            let message = err.to_string();
            assert!(message.contains(&format!("`{written}`")), "{message}");
            assert!(message.contains("`<id>`"), "{message}");
        }
        let literal = LitStr::new("p:{x}:#y:<id>", Span::call_site());
        assert!(Template::parse(&literal, &params, &refused()).is_ok());
        let result = LitStr::new("u:{result.id}", Span::call_site());
        assert!(Template::parse(&result, &params, &Results::Allowed).is_err());
        assert!(Template::parse(&result, &params, &refused()).is_ok());
    }

    fn refused() -> Results {
        Results::Refused("which is not known yet".to_owned())
    }

    #[test]
    fn checks_roots_against_parameters() {
        let lit = LitStr::new("user:<id>:<who.name>", Span::call_site());
        let params = ["id".to_owned(), "who".to_owned()];
        assert!(Template::parse(&lit, &params, &refused()).is_ok());
        let err = Template::parse(&lit, &params[..1], &refused())
            .err()
            .expect("unknown root");
        assert!(
            err.to_string().contains("no parameter named `who`"),
            "{err}"
        );
        assert!(err.to_string().ends_with("the parameters are: id"), "{err}");
        let err = Template::parse(&lit, &params[..1], &Results::Allowed)
            .err()
            .expect("unknown root");
        assert!(
            err.to_string()
                .ends_with("the parameters are: id; `<result>` names the returned value"),
            "{err}"
        );
    }

    #[test]
    fn result_placeholders_only_where_allowed() {
        let lit = LitStr::new("user:<result.id>:<tenant>", Span::call_site());
        let params = ["tenant".to_owned()];
        let template = Template::parse(&lit, &params, &Results::Allowed).expect("allowed");
        assert!(template.names_result());
        let writer = Ident::new("w", Span::call_site());
        assert_eq!(
            template.render(&writer).to_string(),
            "w . text (\"user:\") ; w . result () ; w . text (\":\") ; w . display (& (tenant)) ;"
        );
        assert_eq!(
            template.render_result(&writer).to_string(),
            "| w , result | { w . display (& (result . id)) ; }"
        );

        let err = Template::parse(&lit, &params, &refused())
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("names the value the function returns, which is not known yet; the parameters are: tenant"),
            "{err}"
        );
        let named = ["result".to_owned()];
        let err = Template::parse(&lit, &named, &Results::Allowed)
            .err()
            .expect("ambiguous");
        assert!(err.to_string().contains("rename the parameter"), "{err}");

        let plain = LitStr::new("user:<tenant>", Span::call_site());
        let template = Template::parse(&plain, &params, &refused()).expect("no result");
        assert!(!template.names_result());
        assert_eq!(template.render_result(&writer).to_string(), "| _ , _ | { }");
    }
}
