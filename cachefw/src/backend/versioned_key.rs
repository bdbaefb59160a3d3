//! The two keys of a versioned entry (see `versioned.rs`): a leaf, so
//! that the backends and the enum over them all name it without importing
//! each other.

/// The entry, and its version record, in the entry's cluster slot.
pub(crate) struct VersionedKey {
    pub(crate) entry: String,
    pub(crate) record: String,
}
