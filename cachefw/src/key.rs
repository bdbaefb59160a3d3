//! The Redis key layout `{namespace}:v{version}:{key}`.

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

    /// The user key of a full backend key, if it belongs to this cache.
    pub(crate) fn user_key<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(&self.prefix)
    }

    /// A Redis `SCAN MATCH` pattern for every entry whose user key starts
    /// with `prefix`, taken literally: glob characters in the namespace or
    /// the prefix only match themselves.
    pub(crate) fn scan_pattern(&self, prefix: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + prefix.len() + 8);
        for c in self.prefix.chars().chain(prefix.chars()) {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_namespace_version_key() {
        let keys = Keys::new("shop", 1);
        assert_eq!(keys.full("user:42"), "shop:v1:user:42");
        assert_eq!(keys.user_key("shop:v1:user:42"), Some("user:42"));
        assert_eq!(keys.user_key("shop:v2:user:42"), None);
    }

    #[test]
    fn scan_pattern_escapes_globs() {
        let keys = Keys::new("s*p", 3);
        assert_eq!(keys.scan_pattern("a*b?[c]\\"), r"s\*p:v3:a\*b\?\[c\]\\*");
        assert_eq!(keys.scan_pattern(""), r"s\*p:v3:*");
    }
}
