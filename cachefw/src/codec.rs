//! How values are written to the backend: a three-byte header, then the
//! payload in the cache's codec.
//!
//! The header (`0xCF`, format version, codec tag) lets a reader tell our
//! values from anything else stored at the key: a value written by another
//! codec, by an older format, or by a different program reads as a miss that
//! the next load replaces, never as a wrong value or a panic.
//!
//! Payloads are self-describing (MessagePack with field names by default), so
//! an entry written by another shape of the cached type (a deploy that adds,
//! removes, reorders or retypes a field without bumping the version) is read
//! by field name: either as exactly the value the new type would have (a
//! field removed or reordered, an added `#[serde(default)]` field), or not at
//! all (a miss). Enum variants are stored by name too. Tuples, tuple structs
//! and tuple variants have no names: their fields are stored by position,
//! so swapping two of the same type is the one change that needs a version
//! bump. Decoding reads only the payload's own bytes: a length prefix
//! that claims more than the payload holds fails instead of allocating it.
//! Format 1 (bincode, positional) read a reordered field as another field's
//! value and allocated whatever a stray length prefix claimed; its entries
//! now read as another format: a miss.
//!
//! A header with the absent tag and no payload records "the source has no
//! value" (a cached `None`), whatever the codec. A header with the lease
//! tag and a token marks a key that a caller is loading (see `lease.rs`).
//! An entry may also carry tags, or a compressed payload: see
//! [`extended`].

pub(crate) mod extended;

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: u8 = 0xCF;
const FORMAT: u8 = 2;
const HEADER_LEN: usize = 3;
const MSGPACK_TAG: u8 = b'm';
#[cfg(feature = "json")]
const JSON_TAG: u8 = b'j';
const ABSENT_TAG: u8 = b'-';
const LEASE_TAG: u8 = b'L';
/// The lease tag, for the scripts that must leave leases alone.
pub(crate) const LEASE_TAG_BYTE: u8 = LEASE_TAG;
/// Nesting deeper than this is refused rather than risking the stack of a
/// task on hostile bytes.
const MAX_DEPTH: usize = 256;

// After the header, every value and absent entry carries its metadata:
// when it stops being fresh (ms since the Unix epoch, 8 bytes), how long
// the load that made it took (ms, 4 bytes), and a refresh claim: until
// when (ms, Redis server time, 8 bytes) and by whom (a nonce, 8 bytes).
// The claim lets one caller reload an entry while everyone keeps reading
// it; any write of the key replaces the entry and so voids the claim.
pub(crate) const EXPIRES_AT: usize = HEADER_LEN;
const DELTA_AT: usize = EXPIRES_AT + 8;

/// The header bytes of an expiry `ttl_ms` from now (the writer's clock, as
/// every entry's).
pub(crate) fn expires_at(ttl_ms: u64) -> [u8; 8] {
    crate::clock::now_ms().saturating_add(ttl_ms).to_be_bytes()
}
/// Where the refresh claim starts (the scripts in `backend/scripts.rs`
/// write it in place).
pub(crate) const CLAIM_AT: usize = DELTA_AT + 4;
/// Where the claim's nonce starts.
pub(crate) const NONCE_AT: usize = CLAIM_AT + 8;
/// The header and metadata of a value or absent entry.
pub(crate) const ENTRY_HEADER_LEN: usize = NONCE_AT + 8;

/// What an entry holds: a value, the record that the source had none, or a
/// lease: someone is loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry<T> {
    Value(T),
    Absent,
    Leased,
}

/// When an entry stops being fresh, and how long its load took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Milliseconds since the Unix epoch (the writer's clock).
    pub(crate) expires_ms: u64,
    /// How long the load that produced it took, in milliseconds (0 for a
    /// value written with `set` or a put).
    pub(crate) delta_ms: u32,
}

/// A decoded entry and its metadata (default for a lease marker).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decoded<T> {
    pub(crate) entry: Entry<T>,
    pub(crate) meta: Meta,
}

/// The bytes that mark a key as leased by the holder of `token`.
pub(crate) fn lease_marker(token: &[u8]) -> Vec<u8> {
    let mut marker = Vec::with_capacity(HEADER_LEN + token.len());
    marker.extend_from_slice(&[MAGIC, FORMAT, LEASE_TAG]);
    marker.extend_from_slice(token);
    marker
}

/// Whether stored bytes are a lease marker (anyone's).
pub(crate) fn is_lease(bytes: &[u8]) -> bool {
    bytes.len() > HEADER_LEN && bytes[..HEADER_LEN] == [MAGIC, FORMAT, LEASE_TAG]
}

/// The metadata of a value or absent entry, read from its header alone.
pub(crate) fn meta_of(bytes: &[u8]) -> Option<Meta> {
    if bytes.len() < ENTRY_HEADER_LEN || bytes[0] != MAGIC || bytes[1] != FORMAT {
        return None;
    }
    if bytes[2] == LEASE_TAG {
        return None;
    }
    Some(Meta {
        expires_ms: u64::from_be_bytes(bytes[EXPIRES_AT..DELTA_AT].try_into().ok()?),
        delta_ms: u32::from_be_bytes(bytes[DELTA_AT..CLAIM_AT].try_into().ok()?),
    })
}

/// The refresh claim of a value or absent entry: until when (ms), and the
/// claimant's nonce.
pub(crate) fn claim_of(bytes: &[u8]) -> Option<(u64, [u8; 8])> {
    meta_of(bytes)?;
    let until = u64::from_be_bytes(bytes[CLAIM_AT..NONCE_AT].try_into().ok()?);
    let nonce = bytes[NONCE_AT..ENTRY_HEADER_LEN].try_into().ok()?;
    Some((until, nonce))
}

/// `bytes` with its refresh claim set (for the in-memory backend; Redis
/// does this in a script).
pub(crate) fn with_claim(bytes: &[u8], until_ms: u64, nonce: &[u8; 8]) -> Option<Vec<u8>> {
    meta_of(bytes)?;
    let mut claimed = bytes.to_vec();
    claimed[CLAIM_AT..NONCE_AT].copy_from_slice(&until_ms.to_be_bytes());
    claimed[NONCE_AT..ENTRY_HEADER_LEN].copy_from_slice(nonce);
    Some(claimed)
}

fn header(tag: u8, meta: Meta, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + capacity);
    out.extend_from_slice(&[MAGIC, FORMAT, tag]);
    out.extend_from_slice(&meta.expires_ms.to_be_bytes());
    out.extend_from_slice(&meta.delta_ms.to_be_bytes());
    out.extend_from_slice(&[0; 16]);
    out
}

/// How values are serialized. Chosen with
/// [`CacheBuilder::codec`](crate::CacheBuilder::codec).
///
/// Every entry carries the tag of the codec that wrote it; a cache reading an
/// entry written with another codec treats it as a miss. Both codecs are
/// self-describing: fields are stored by name, so a changed type reads old
/// entries by name or not at all, never as a wrong value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// MessagePack with field names (`rmp-serde`): compact, fast, and
    /// self-describing. The default.
    #[default]
    MessagePack,
    /// JSON, readable with `redis-cli GET` (after the 31-byte header).
    /// Needs the `json` feature.
    #[cfg(feature = "json")]
    Json,
}

/// Why stored bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// No cachefw header: written by something else.
    Foreign,
    /// A cachefw header of another format version or codec.
    OtherFormat { format: u8, tag: u8 },
    /// Our header, but the payload does not decode as the requested type.
    Payload(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Foreign => f.write_str("not a cachefw value (no header)"),
            Self::OtherFormat { format, tag } => write!(
                f,
                "written in another format (format {format}, codec tag {:?})",
                char::from(*tag)
            ),
            Self::Payload(reason) => write!(f, "payload does not decode: {reason}"),
        }
    }
}

impl Codec {
    fn tag(self) -> u8 {
        match self {
            Self::MessagePack => MSGPACK_TAG,
            #[cfg(feature = "json")]
            Self::Json => JSON_TAG,
        }
    }

    /// Header, metadata and payload, in one buffer.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        meta: Meta,
    ) -> Result<Vec<u8>, String> {
        let mut out = header(self.tag(), meta, 64);
        match self {
            Self::MessagePack => {
                rmp_serde::encode::write_named(&mut out, value).map_err(|e| e.to_string())?;
            }
            #[cfg(feature = "json")]
            Self::Json => serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?,
        }
        Ok(out)
    }

    /// The entry recording that the source had no value.
    pub(crate) fn encode_absent(meta: Meta) -> Vec<u8> {
        header(ABSENT_TAG, meta, 0)
    }

    /// The entry in `bytes`; a compressed payload may inflate to at most
    /// `max` bytes (`max_value_size`), or the entry does not decode.
    pub(crate) fn decode<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        max: u64,
    ) -> Result<Decoded<T>, DecodeError> {
        if bytes.first() != Some(&MAGIC) || bytes.len() < HEADER_LEN {
            return Err(DecodeError::Foreign);
        }
        if is_lease(bytes) {
            return Ok(Decoded {
                entry: Entry::Leased,
                meta: Meta::default(),
            });
        }
        let (format, mut tag) = (bytes[1], bytes[2]);
        let Some(meta) = meta_of(bytes) else {
            return Err(DecodeError::OtherFormat { format, tag });
        };
        let parts;
        let payload = if tag == extended::EXTENDED {
            parts = extended::parse(bytes, max)?;
            tag = parts.kind;
            &parts.payload[..]
        } else {
            &bytes[ENTRY_HEADER_LEN..]
        };
        if tag != ABSENT_TAG && tag != self.tag() {
            return Err(DecodeError::OtherFormat { format, tag });
        }
        let entry = if tag == ABSENT_TAG {
            if !payload.is_empty() {
                return Err(DecodeError::Payload(
                    "bytes after an absent entry".to_owned(),
                ));
            }
            Entry::Absent
        } else {
            match self {
                Self::MessagePack => Entry::Value(decode_msgpack(payload)?),
                #[cfg(feature = "json")]
                Self::Json => Entry::Value(
                    serde_json::from_slice(payload)
                        .map_err(|e| DecodeError::Payload(e.to_string()))?,
                ),
            }
        };
        Ok(Decoded { entry, meta })
    }
}

/// One MessagePack value, read from the payload in place. Strings and blobs
/// are read only from bytes that are there: a claimed length beyond the
/// payload is an error, not an allocation. A value is self-delimiting, so
/// bytes after it (which our writer never leaves) are ignored.
fn decode_msgpack<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(payload);
    deserializer.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut deserializer).map_err(|e| DecodeError::Payload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const META: Meta = Meta {
        expires_ms: 1_700_000_000_000,
        delta_ms: 42,
    };

    /// Encoding and decoding with fixed metadata, for tests of payloads.
    trait Ext {
        fn enc<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String>;
        fn dec<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<Entry<T>, DecodeError>;
    }

    impl Ext for Codec {
        fn enc<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
            self.encode(value, META)
        }

        fn dec<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<Entry<T>, DecodeError> {
            self.decode(bytes, u64::MAX).map(|decoded| decoded.entry)
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn user() -> User {
        User {
            id: 7,
            name: "Ada".into(),
            tags: vec!["admin".into()],
        }
    }

    #[test]
    fn round_trips_with_header() {
        let bytes = Codec::MessagePack.enc(&user()).expect("encodes");
        assert_eq!(&bytes[..3], &[MAGIC, FORMAT, MSGPACK_TAG]);
        assert_eq!(meta_of(&bytes), Some(META));
        assert_eq!(claim_of(&bytes), Some((0, [0; 8])), "no claim");
        let claimed = with_claim(&bytes, 99, &[7; 8]).expect("an entry");
        assert_eq!(claim_of(&claimed), Some((99, [7; 8])));
        assert_eq!(
            Codec::MessagePack.dec::<User>(&claimed),
            Ok(Entry::Value(user()))
        );
        assert_eq!(
            Codec::MessagePack.dec::<User>(&bytes),
            Ok(Entry::Value(user()))
        );
    }

    #[test]
    fn fields_are_read_by_name() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Reordered {
            tags: Vec<String>,
            name: String,
            id: u64,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Added {
            id: u64,
            name: String,
            tags: Vec<String>,
            #[serde(default)]
            note: String,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Required {
            id: u64,
            name: String,
            tags: Vec<String>,
            total: u64,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Retyped {
            id: String,
            name: String,
            tags: Vec<String>,
        }
        let bytes = Codec::MessagePack.enc(&user()).expect("encodes");
        assert_eq!(
            Codec::MessagePack.dec::<Reordered>(&bytes),
            Ok(Entry::Value(Reordered {
                tags: vec!["admin".into()],
                name: "Ada".into(),
                id: 7
            }))
        );
        assert!(matches!(
            Codec::MessagePack.dec::<Added>(&bytes),
            Ok(Entry::Value(Added { id: 7, ref note, .. })) if note.is_empty()
        ));
        assert!(matches!(
            Codec::MessagePack.dec::<Required>(&bytes),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            Codec::MessagePack.dec::<Retyped>(&bytes),
            Err(DecodeError::Payload(_))
        ));
    }

    #[test]
    fn enum_variants_are_read_by_name() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Before {
            Open,
            Closed(u32),
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum After {
            Closed(u32),
            Pending,
            Open,
        }
        let open = Codec::MessagePack.enc(&Before::Open).expect("encodes");
        let closed = Codec::MessagePack.enc(&Before::Closed(3)).expect("encodes");
        assert_eq!(
            Codec::MessagePack.dec::<After>(&open),
            Ok(Entry::Value(After::Open))
        );
        assert_eq!(
            Codec::MessagePack.dec::<After>(&closed),
            Ok(Entry::Value(After::Closed(3)))
        );
    }

    #[test]
    fn hostile_lengths_fail_without_allocating_them() {
        // A str32 claiming 4 GiB, an array32 claiming 4 billion items, a
        // bin32 claiming 4 GiB: each header alone, in a 10-byte payload.
        for claim in [0xdb_u8, 0xdd, 0xc6] {
            let mut bytes = header(MSGPACK_TAG, META, 8);
            bytes.extend_from_slice(&[claim, 0xff, 0xff, 0xff, 0xff]);
            bytes.extend_from_slice(&[0, 0]);
            assert!(Codec::MessagePack.dec::<Vec<String>>(&bytes).is_err());
            assert!(Codec::MessagePack.dec::<String>(&bytes).is_err());
            assert!(Codec::MessagePack.dec::<User>(&bytes).is_err());
        }
        // Nesting beyond the depth limit is refused, not recursed into.
        let mut deep = header(MSGPACK_TAG, META, 0);
        deep.extend(std::iter::repeat_n(0x91u8, 100_000));
        deep.push(0xc0);
        assert!(
            Codec::MessagePack
                .dec::<serde_json_like::Any>(&deep)
                .is_err()
        );
    }

    /// A type that accepts any nesting, to drive the depth limit.
    mod serde_json_like {
        use serde::Deserialize;
        use serde::de::{Deserializer, SeqAccess, Visitor};

        pub(super) struct Any;

        impl<'de> Deserialize<'de> for Any {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Any;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("anything")
                    }
                    fn visit_unit<E>(self) -> Result<Any, E> {
                        Ok(Any)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
                        while seq.next_element::<Any>()?.is_some() {}
                        Ok(Any)
                    }
                }
                d.deserialize_any(V)
            }
        }
    }

    #[test]
    fn lease_markers_read_as_leased() {
        let marker = lease_marker(b"0123456789abcdef");
        assert!(is_lease(&marker));
        assert_eq!(Codec::MessagePack.dec::<User>(&marker), Ok(Entry::Leased));
        assert!(!is_lease(&Codec::encode_absent(META)));
        assert!(!is_lease(
            &Codec::MessagePack.enc(&user()).expect("encodes")
        ));
    }

    #[test]
    fn absent_marker_reads_as_absent_in_every_codec() {
        let bytes = Codec::encode_absent(META);
        assert_eq!(Codec::MessagePack.dec::<User>(&bytes), Ok(Entry::Absent));
        #[cfg(feature = "json")]
        assert_eq!(Codec::Json.dec::<User>(&bytes), Ok(Entry::Absent));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Codec::MessagePack.dec::<User>(&longer).is_err());
    }

    #[test]
    fn foreign_bytes_are_refused() {
        for garbage in [&b""[..], b"\xCF", b"hello world", b"{\"id\":7}"] {
            assert_eq!(
                Codec::MessagePack.dec::<User>(garbage),
                Err(DecodeError::Foreign)
            );
        }
    }

    #[test]
    fn other_format_or_codec_is_refused() {
        let mut bytes = Codec::MessagePack.enc(&user()).expect("encodes");
        bytes[1] = 1; // format 1: bincode, before field names
        assert!(matches!(
            Codec::MessagePack.dec::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
        bytes[1] = FORMAT;
        bytes[2] = b'x';
        assert!(matches!(
            Codec::MessagePack.dec::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }

    #[test]
    fn truncated_or_mistyped_payload_is_refused() {
        let bytes = Codec::MessagePack.enc(&user()).expect("encodes");
        assert!(matches!(
            Codec::MessagePack.dec::<User>(&bytes[..bytes.len() - 2]),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            Codec::MessagePack.dec::<u8>(&bytes),
            Err(DecodeError::Payload(_))
        ));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_readable_after_the_header() {
        let bytes = Codec::Json.enc(&user()).expect("encodes");
        assert_eq!(
            std::str::from_utf8(&bytes[ENTRY_HEADER_LEN..]).expect("utf-8"),
            r#"{"id":7,"name":"Ada","tags":["admin"]}"#
        );
        assert_eq!(Codec::Json.dec::<User>(&bytes), Ok(Entry::Value(user())));
        assert!(matches!(
            Codec::MessagePack.dec::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }
}
