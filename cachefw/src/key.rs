//! The Redis key layout `{namespace}:v{version}:{key}`, and how a value
//! becomes part of a key.
//!
//! A placeholder's value is rendered with `Display`, and inside it `%`
//! becomes `%25` and `:` becomes `%3A`: `:` separates the parts of a key, so
//! without the escape `a:<x>:<y>` would render `x = "1:2", y = "3"` and
//! `x = "1", y = "2:3"` both as `a:1:2:3`. Values without `:` or `%`
//! (numbers, UUIDs, most names) render unchanged.

use std::fmt::{self, Display, Write as _};

/// The `{namespace}:v{version}:` prefix shared by every entry of one cache.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str, version: u32) -> Self {
        Self {
            prefix: format!("{namespace}:v{version}:"),
        }
    }

    /// The prefix of every key of this cache.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full backend key of a user key: one allocation, exactly sized.
    pub(crate) fn full(&self, key: &str) -> String {
        self.render(key.len(), |full| full.push_str(key))
    }

    /// The full key whose user part `render` appends to the prefix: one
    /// allocation when `capacity` covers the user part.
    pub(crate) fn render(&self, capacity: usize, render: impl FnOnce(&mut String)) -> String {
        let mut full = String::with_capacity(self.prefix.len() + capacity);
        full.push_str(&self.prefix);
        render(&mut full);
        full
    }
}

/// Appends `value`, rendered with `Display`, to a key, escaping `%` and `:`.
pub fn push_part<D: Display + ?Sized>(key: &mut String, value: &D) {
    // Writing to a String cannot fail; a Display impl that reports an error
    // leaves what it wrote, where `format!` would panic instead.
    let _ = write!(Escaped(key), "{value}");
}

/// A writer that escapes what passes through it.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !text.contains([':', '%']) {
            self.0.push_str(text);
            return Ok(());
        }
        for c in text.chars() {
            match c {
                '%' => self.0.push_str("%25"),
                ':' => self.0.push_str("%3A"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_namespace_version_key() {
        let keys = Keys::new("shop", 1);
        assert_eq!(keys.full("user:42"), "shop:v1:user:42");
        assert_eq!(keys.prefix(), "shop:v1:");
    }

    fn part(value: &str) -> String {
        let mut key = String::new();
        push_part(&mut key, value);
        key
    }

    #[test]
    fn parts_escape_separators() {
        assert_eq!(part("42"), "42");
        assert_eq!(part("1:2"), "1%3A2");
        assert_eq!(part("100%"), "100%25");
        assert_eq!(part("%3A"), "%253A");
        assert_eq!(part("é:ü"), "é%3Aü");
        let render = |x: &str, y: &str| format!("a:{}:{}", part(x), part(y));
        assert_ne!(render("1:2", "3"), render("1", "2:3"));
        assert_eq!(render("1:2", "3"), "a:1%3A2:3");
    }
}
