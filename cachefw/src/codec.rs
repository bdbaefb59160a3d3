//! How values are written to the backend: a three-byte header, then the
//! payload in the cache's codec.
//!
//! The header (`0xCF`, format version, codec tag) lets a reader tell our
//! values from anything else stored at the key: a value written by another
//! codec, by an older format, or by a different program reads as a miss that
//! the next load replaces, never as a wrong value or a panic.
//!
//! A header with the absent tag and no payload records "the source has no
//! value" (a cached `None`), whatever the codec. A header with the lease
//! tag and a token marks a key that a caller is loading (see `lease.rs`).

use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: u8 = 0xCF;
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 3;
const BINCODE_TAG: u8 = b'b';
#[cfg(feature = "json")]
const JSON_TAG: u8 = b'j';
const ABSENT_TAG: u8 = b'-';
const LEASE_TAG: u8 = b'L';

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
/// entry written with another codec treats it as a miss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2 through serde: compact and fast. The default.
    #[default]
    Bincode,
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

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Codec {
    fn tag(self) -> u8 {
        match self {
            Self::Bincode => BINCODE_TAG,
            #[cfg(feature = "json")]
            Self::Json => JSON_TAG,
        }
    }

    /// Header and payload, in one exactly-grown buffer.
    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[MAGIC, FORMAT, self.tag()]);
        match self {
            Self::Bincode => {
                bincode::serde::encode_into_std_write(value, &mut out, bincode_config())
                    .map_err(|e| e.to_string())?;
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
            Self::Bincode => {
                let (value, read) =
                    bincode::serde::decode_from_slice::<T, _>(payload, bincode_config())
                        .map_err(|e| DecodeError::Payload(e.to_string()))?;
                // bincode is not self-describing: trailing bytes mean the
                // entry was written for a different type.
                if read != payload.len() {
                    return Err(DecodeError::Payload(format!(
                        "{} trailing bytes after the value",
                        payload.len() - read
                    )));
                }
                Ok(Entry::Value(value))
            }
            #[cfg(feature = "json")]
            Self::Json => serde_json::from_slice(payload)
                .map(Entry::Value)
                .map_err(|e| DecodeError::Payload(e.to_string())),
        }
    }
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
        let bytes = Codec::Bincode.encode(&user()).expect("encodes");
        assert_eq!(&bytes[..3], &[MAGIC, FORMAT, BINCODE_TAG]);
        assert_eq!(
            Codec::Bincode.decode::<User>(&bytes),
            Ok(Entry::Value(user()))
        );
    }

    #[test]
    fn lease_markers_read_as_leased() {
        let marker = lease_marker(b"0123456789abcdef");
        assert!(is_lease(&marker));
        assert_eq!(Codec::Bincode.decode::<User>(&marker), Ok(Entry::Leased));
        assert!(!is_lease(&Codec::encode_absent()));
        assert!(!is_lease(&Codec::Bincode.encode(&user()).expect("encodes")));
    }

    #[test]
    fn absent_marker_reads_as_absent_in_every_codec() {
        let bytes = Codec::encode_absent();
        assert_eq!(Codec::Bincode.decode::<User>(&bytes), Ok(Entry::Absent));
        #[cfg(feature = "json")]
        assert_eq!(Codec::Json.decode::<User>(&bytes), Ok(Entry::Absent));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Codec::Bincode.decode::<User>(&longer).is_err());
    }

    #[test]
    fn foreign_bytes_are_refused() {
        for garbage in [&b""[..], b"\xCF", b"hello world", b"{\"id\":7}"] {
            assert_eq!(
                Codec::Bincode.decode::<User>(garbage),
                Err(DecodeError::Foreign)
            );
        }
    }

    #[test]
    fn other_format_or_codec_is_refused() {
        let mut bytes = Codec::Bincode.encode(&user()).expect("encodes");
        bytes[1] = FORMAT + 1;
        assert!(matches!(
            Codec::Bincode.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
        bytes[1] = FORMAT;
        bytes[2] = b'x';
        assert!(matches!(
            Codec::Bincode.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }

    #[test]
    fn truncated_or_mistyped_payload_is_refused() {
        let bytes = Codec::Bincode.encode(&user()).expect("encodes");
        assert!(matches!(
            Codec::Bincode.decode::<User>(&bytes[..bytes.len() - 2]),
            Err(DecodeError::Payload(_))
        ));
        // A u8 decodes from the first payload byte; the rest is left over.
        assert!(matches!(
            Codec::Bincode.decode::<u8>(&bytes),
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
            Codec::Bincode.decode::<User>(&bytes),
            Err(DecodeError::OtherFormat { .. })
        ));
    }
}
