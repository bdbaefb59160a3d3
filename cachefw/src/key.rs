//! The Redis key layout `{namespace}:v{version}:{key}`, and how a value
//! becomes part of a key.
//!
//! A placeholder's value is rendered with `Display`, and inside it `%`
//! becomes `%25` and `:` becomes `%3A`: `:` separates the parts of a key, so
//! without the escape `a:<x>:<y>` would render `x = "1:2", y = "3"` and
//! `x = "1", y = "2:3"` both as `a:1:2:3`. Values without `:` or `%`
//! (numbers, UUIDs, most names) render unchanged.
//!
//! A rendered key longer than the limit (`max_key_len`, 512 bytes by
//! default) is stored under its first 256 bytes (cut back to a character
//! boundary), `#` and the hex SHA-256 of the whole rendered key: Redis keys
//! stay short, the same arguments always reach the same entry, and a prefix
//! eviction of a prefix within those first bytes still finds it. Every
//! path that turns a key into a Redis key (`get`, `set`, `delete`, the
//! macros, tags, batch reads) goes through [`Keys`], so they all agree.

use std::fmt::{self, Display, Write as _};

use sha2::{Digest as _, Sha256};

/// The longest rendered key stored as it is, unless the builder says
/// otherwise.
pub(crate) const DEFAULT_LONG_KEY: usize = 512;
/// How much of a long key is kept in front of its digest.
const LONG_KEY_HEAD: usize = 256;

/// The `{namespace}:v{version}:` prefix shared by every entry of one cache,
/// and the length past which a key is stored under its digest.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    long: usize,
}

impl Keys {
    pub(crate) fn new(namespace: &str, version: u32) -> Self {
        Self::with_limit(namespace, version, DEFAULT_LONG_KEY)
    }

    /// Keys whose rendered part longer than `long` bytes is hashed.
    pub(crate) fn with_limit(namespace: &str, version: u32, long: usize) -> Self {
        Self {
            prefix: format!("{namespace}:v{version}:"),
            long,
        }
    }

    /// The full key prefix of a prefix eviction: never hashed, since it is
    /// matched against the start of stored keys.
    pub(crate) fn prefixed(&self, prefix: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + prefix.len());
        full.push_str(&self.prefix);
        full.push_str(prefix);
        full
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
        self.shorten(self.render_whole(capacity, render))
    }

    /// [`render`](Self::render) without the digest of a long key, for a
    /// key completed later (its `<result>` parts), then [`shorten`]ed.
    ///
    /// [`shorten`]: Self::shorten
    pub(crate) fn render_whole(&self, capacity: usize, render: impl FnOnce(&mut String)) -> String {
        let mut full = String::with_capacity(self.prefix.len() + capacity);
        full.push_str(&self.prefix);
        render(&mut full);
        full
    }

    /// `full` as it is, or, when its rendered part is longer than the
    /// limit, that part's head, `#` and the hex SHA-256 of the whole part.
    pub(crate) fn shorten(&self, mut full: String) -> String {
        let start = self.prefix.len();
        if full.len() - start <= self.long {
            return full;
        }
        let digest = Sha256::digest(&full.as_bytes()[start..]);
        let mut cut = start + LONG_KEY_HEAD.min(self.long);
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        full.truncate(cut);
        full.reserve(1 + 2 * digest.len());
        full.push('#');
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(full, "{byte:02x}");
        }
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

    #[test]
    fn long_keys_are_stored_under_their_digest() {
        let keys = Keys::new("shop", 1);
        let at_limit = "k".repeat(DEFAULT_LONG_KEY);
        assert_eq!(keys.full(&at_limit), format!("shop:v1:{at_limit}"));
        let long = format!("{}x", "k".repeat(1_499));
        let full = keys.full(&long);
        assert_eq!(full.len(), "shop:v1:".len() + LONG_KEY_HEAD + 1 + 64);
        assert!(full.starts_with(&format!("shop:v1:{}#", "k".repeat(LONG_KEY_HEAD))));
        assert_eq!(full, keys.full(&long), "stable");
        let other = format!("{}y", "k".repeat(1_499));
        assert_ne!(keys.full(&other), full, "the digest covers the whole key");
        assert_eq!(
            keys.render(8, |key| key.push_str(&long)),
            full,
            "rendered keys agree"
        );
        // A cut inside a multibyte character moves back to its start.
        let wide = format!("a{}", "é".repeat(400));
        let full = keys.full(&wide);
        assert!(full.starts_with(&format!("shop:v1:a{}#", "é".repeat(127))));
        assert_eq!(keys.prefixed(&long), format!("shop:v1:{long}"));
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
