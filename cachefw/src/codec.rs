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
/// Nesting deeper than this is refused rather than risking the stack of a
/// task on hostile bytes.
const MAX_DEPTH: usize = 256;

/// What an entry holds: a value, the record that the source had none, or a
/// lease: someone is loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry<T> {
    Value(T),
    Absent,
    Leased,
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
    /// JSON, readable with `redis-cli GET` (after the 3-byte header).
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

    /// Header and payload, in one buffer.
    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[MAGIC, FORMAT, self.tag()]);
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
    pub(crate) fn encode_absent() -> Vec<u8> {
        vec![MAGIC, FORMAT, ABSENT_TAG]
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<Entry<T>, DecodeError> {
        let Some((header, payload)) = bytes.split_at_checked(HEADER_LEN) else {
            return Err(DecodeError::Foreign);
        };
        if header[0] != MAGIC {
            return Err(DecodeError::Foreign);
        }
        if header[1] == FORMAT && header[2] == ABSENT_TAG && payload.is_empty() {
            return Ok(Entry::Absent);
        }
        if is_lease(bytes) {
            return Ok(Entry::Leased);
        }
        if header[1] != FORMAT || header[2] != self.tag() {
            return Err(DecodeError::OtherFormat {
                format: header[1],
                tag: header[2],
            });
        }
        match self {
            Self::MessagePack => decode_msgpack(payload).map(Entry::Value),
            #[cfg(feature = "json")]
            Self::Json => serde_json::from_slice(payload)
                .map(Entry::Value)
                .map_err(|e| DecodeError::Payload(e.to_string())),
        }
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
        let bytes = Codec::MessagePack.encode(&user()).expect("encodes");
        assert_eq!(&bytes[..3], &[MAGIC, FORMAT, MSGPACK_TAG]);
        assert_eq!(
            Codec::MessagePack.decode::<User>(&bytes),
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
        let bytes = Codec::MessagePack.encode(&user()).expect("encodes");
        assert_eq!(
            Codec::MessagePack.decode::<Reordered>(&bytes),
            Ok(Entry::Value(Reordered {
                tags: vec!["admin".into()],
                name: "Ada".into(),
                id: 7
            }))
        );
        assert!(matches!(
            Codec::MessagePack.decode::<Added>(&bytes),
            Ok(Entry::Value(Added { id: 7, ref note, .. })) if note.is_empty()
        ));
        assert!(matches!(
            Codec::MessagePack.decode::<Required>(&bytes),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            Codec::MessagePack.decode::<Retyped>(&bytes),
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
        let open = Codec::MessagePack.encode(&Before::Open).expect("encodes");
        let closed = Codec::MessagePack
            .encode(&Before::Closed(3))
            .expect("encodes");
        assert_eq!(
            Codec::MessagePack.decode::<After>(&open),
            Ok(Entry::Value(After::Open))
        );
        assert_eq!(
            Codec::MessagePack.decode::<After>(&closed),
            Ok(Entry::Value(After::Closed(3)))
        );
    }

    #[test]
    fn hostile_lengths_fail_without_allocating_them() {
        // A str32 claiming 4 GiB, an array32 claiming 4 billion items, a
        // bin32 claiming 4 GiB: each header alone, in a 10-byte payload.
        for claim in [0xdb_u8, 0xdd, 0xc6] {
            let mut bytes = vec![MAGIC, FORMAT, MSGPACK_TAG, claim, 0xff, 0xff, 0xff, 0xff];
            bytes.extend_from_slice(&[0, 0]);
            assert!(Codec::MessagePack.decode::<Vec<String>>(&bytes).is_err());
            assert!(Codec::MessagePack.decode::<String>(&bytes).is_err());
            assert!(Codec::MessagePack.decode::<User>(&bytes).is_err());
        }
        // Nesting beyond the depth limit is refused, not recursed into.
        let mut deep = vec![MAGIC, FORMAT, MSGPACK_TAG];
        deep.extend(std::iter::repeat_n(0x91u8, 100_000));
        deep.push(0xc0);
        assert!(
            Codec::MessagePack
                .decode::<serde_json_like::Any>(&deep)
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
        assert_eq!(
            Codec::MessagePack.decode::<User>(&marker),
            Ok(Entry::Leased)
        );
        assert!(!is_lease(&Codec::encode_absent()));
        assert!(!is_lease(
            &Codec::MessagePack.encode(&user()).expect("encodes")
        ));
    }

    #[test]
    fn absent_marker_reads_as_absent_in_every_codec() {
        let bytes = Codec::encode_absent();
        assert_eq!(Codec::MessagePack.decode::<User>(&bytes), Ok(Entry::Absent));
        #[cfg(feature = "json")]
        assert_eq!(Codec::Json.decode::<User>(&bytes), Ok(Entry::Absent));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Codec::MessagePack.decode::<User>(&longer).is_err());
    }

    #[test]
    fn foreign_bytes_are_refused() {
        for garbage in [&b""[..], b"\xCF", b"hello world", b"{\"id\":7}"] {
            assert_eq!(
                Codec::MessagePack.decode::<User>(garbage),
                Err(DecodeError::Foreign)
            );
        }
    }

    #[test]
    fn other_format_or_codec_is_refused() {
        let mut bytes = Codec::MessagePack.encode(&user()).expect("encodes");
        bytes[1] = 1; // format 1: bincode, before field names
        assert!(matches!(
            Codec::MessagePack.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
        bytes[1] = FORMAT;
        bytes[2] = b'x';
        assert!(matches!(
            Codec::MessagePack.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }

    #[test]
    fn truncated_or_mistyped_payload_is_refused() {
        let bytes = Codec::MessagePack.encode(&user()).expect("encodes");
        assert!(matches!(
            Codec::MessagePack.decode::<User>(&bytes[..bytes.len() - 2]),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            Codec::MessagePack.decode::<u8>(&bytes),
            Err(DecodeError::Payload(_))
        ));
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_readable_after_the_header() {
        let bytes = Codec::Json.encode(&user()).expect("encodes");
        assert_eq!(
            std::str::from_utf8(&bytes[3..]).expect("utf-8"),
            r#"{"id":7,"name":"Ada","tags":["admin"]}"#
        );
        assert_eq!(Codec::Json.decode::<User>(&bytes), Ok(Entry::Value(user())));
        assert!(matches!(
            Codec::MessagePack.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }
}
