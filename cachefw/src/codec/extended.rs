//! Entries with an extension after the metadata: the tags an entry
//! carries, and whether its payload is compressed.
//!
//! A plain entry is `header (kind: codec or absent) · metadata · payload`.
//! An extended one has the kind [`EXTENDED`] in its header, so that a
//! version of cachefw that does not know it reads it as another format (a
//! miss), never as a wrong value; after the metadata, whose layout the
//! scripts rely on and which stays where it was, come the real kind, a
//! flags byte, then
//! - with [`TAGGED`]: a count, and per tag its name (u16 length) and the
//!   token (u8 length) the tag had before the value was loaded (see
//!   `tags.rs`);
//! - with [`COMPRESSED`]: the payload as an LZ4 block after its
//!   decompressed size (u32, little-endian: `lz4_flex`'s size-prepended
//!   format). A reader checks that size against `max_value_size` before
//!   allocating anything, and decompresses into a buffer of exactly that
//!   size, so a small entry that claims to inflate past the limit is a
//!   miss that costs nothing.

use std::borrow::Cow;

use bytes::Bytes;

use super::{DecodeError, ENTRY_HEADER_LEN, MAGIC};

/// The header kind of an extended entry.
pub(crate) const EXTENDED: u8 = b'x';
const TAGGED: u8 = 1;
const COMPRESSED: u8 = 2;
const KNOWN: u8 = TAGGED | COMPRESSED;
/// Compressed payloads are kept only when they save at least this much:
/// an incompressible value is stored as it is.
const MIN_SAVING: usize = 64;

/// The tags an entry carries, each with the token it had before the value
/// was loaded (or written): the entry holds while every tag still has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp(pub(crate) Vec<(String, Bytes)>);

/// An extended entry, taken apart.
pub(crate) struct Parts<'a> {
    /// The kind a plain entry would have (codec tag or absent).
    pub(crate) kind: u8,
    /// The payload, decompressed when it was compressed.
    pub(crate) payload: Cow<'a, [u8]>,
}

/// `plain` (a plain entry: header, metadata, payload) carrying `stamp`,
/// with its payload compressed when it is longer than `compress_above`
/// (0: never) and compression saves something. `plain` comes back as it
/// is when there is nothing to add.
pub(crate) fn build(plain: Vec<u8>, stamp: Option<&Stamp>, compress_above: u64) -> Vec<u8> {
    let stamp = stamp.filter(|stamp| !stamp.0.is_empty());
    if plain.len() < ENTRY_HEADER_LEN {
        return plain;
    }
    let payload = &plain[ENTRY_HEADER_LEN..];
    let compressed = (compress_above > 0 && payload.len() as u64 > compress_above)
        .then(|| lz4_flex::block::compress_prepend_size(payload))
        .filter(|block| block.len() + MIN_SAVING <= payload.len());
    if stamp.is_none() && compressed.is_none() {
        return plain;
    }
    let mut flags = 0;
    let mut out = Vec::with_capacity(
        ENTRY_HEADER_LEN + 2 + compressed.as_ref().map_or(payload.len(), Vec::len) + 64,
    );
    out.extend_from_slice(&plain[..ENTRY_HEADER_LEN]);
    out[2] = EXTENDED;
    out.push(plain[2]);
    out.push(0);
    if let Some(stamp) = stamp {
        flags |= TAGGED;
        // Beyond 255 tags, or names and tokens beyond their lengths, the
        // entry is not worth storing tagged: callers check `fits` first.
        out.push(u8::try_from(stamp.0.len()).unwrap_or(u8::MAX));
        for (tag, token) in stamp.0.iter().take(usize::from(u8::MAX)) {
            let name = &tag.as_bytes()[..tag.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name);
            let token = &token[..token.len().min(usize::from(u8::MAX))];
            out.push(token.len() as u8);
            out.extend_from_slice(token);
        }
    }
    match &compressed {
        Some(block) => {
            flags |= COMPRESSED;
            out.extend_from_slice(block);
        }
        None => out.extend_from_slice(payload),
    }
    out[ENTRY_HEADER_LEN + 1] = flags;
    out
}

/// Whether a stamp can be written whole (see [`build`]).
pub(crate) fn fits(stamp: &Stamp) -> bool {
    stamp.0.len() <= usize::from(u8::MAX)
        && stamp.0.iter().all(|(tag, token)| {
            tag.len() <= usize::from(u16::MAX) && token.len() <= usize::from(u8::MAX)
        })
}

/// Whether `bytes` is an entry that carries tags: one byte compare for an
/// untagged entry, which is all the hit path pays.
pub(crate) fn is_tagged(bytes: &[u8]) -> bool {
    bytes.len() > ENTRY_HEADER_LEN + 1
        && bytes[2] == EXTENDED
        && bytes[0] == MAGIC
        && bytes[ENTRY_HEADER_LEN + 1] & TAGGED != 0
}

/// The tags of an extended entry and the tokens it carries for them;
/// `None` for bytes that are no such entry.
pub(crate) fn tags_of(bytes: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    if !is_tagged(bytes) {
        return None;
    }
    let mut at = ENTRY_HEADER_LEN + 2;
    read_tags(bytes, &mut at).ok()
}

fn read_tags<'a>(bytes: &'a [u8], at: &mut usize) -> Result<Vec<(&'a str, &'a [u8])>, DecodeError> {
    let short = || DecodeError::Payload("extension cut short".to_owned());
    let mut take = |len: usize| -> Result<&'a [u8], DecodeError> {
        let end = at
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(short)?;
        let taken = &bytes[*at..end];
        *at = end;
        Ok(taken)
    };
    let count = take(1)?[0];
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = take(2)?;
        let name = take(usize::from(u16::from_be_bytes([len[0], len[1]])))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| DecodeError::Payload("a tag name that is not UTF-8".to_owned()))?;
        let len = take(1)?[0];
        tags.push((name, take(usize::from(len))?));
    }
    Ok(tags)
}

/// Takes an extended entry apart; its payload, decompressed, may be at
/// most `max` bytes, or the entry does not decode (without allocating it).
pub(crate) fn parse(bytes: &[u8], max: u64) -> Result<Parts<'_>, DecodeError> {
    if bytes.len() < ENTRY_HEADER_LEN + 2 || bytes[2] != EXTENDED {
        return Err(DecodeError::Payload("extension cut short".to_owned()));
    }
    let kind = bytes[ENTRY_HEADER_LEN];
    let flags = bytes[ENTRY_HEADER_LEN + 1];
    if flags & !KNOWN != 0 {
        return Err(DecodeError::OtherFormat {
            format: bytes[1],
            tag: flags,
        });
    }
    let mut at = ENTRY_HEADER_LEN + 2;
    if flags & TAGGED != 0 {
        read_tags(bytes, &mut at)?;
    }
    let body = &bytes[at..];
    let payload = if flags & COMPRESSED != 0 {
        Cow::Owned(decompress(body, max)?)
    } else {
        Cow::Borrowed(body)
    };
    Ok(Parts { kind, payload })
}

/// An LZ4 block after its decompressed size, decompressed into exactly
/// that many bytes, if that is at most `max`.
fn decompress(body: &[u8], max: u64) -> Result<Vec<u8>, DecodeError> {
    let Some((size, block)) = body.split_first_chunk::<4>() else {
        return Err(DecodeError::Payload(
            "compressed payload cut short".to_owned(),
        ));
    };
    let size = u32::from_le_bytes(*size);
    if u64::from(size) > max {
        return Err(DecodeError::Payload(format!(
            "the payload inflates to {size} bytes, more than max_value_size ({max})"
        )));
    }
    let mut out = vec![0; size as usize];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(written) if written == out.len() => Ok(out),
        Ok(written) => Err(DecodeError::Payload(format!(
            "the payload inflates to {written} bytes, not the {size} it claims"
        ))),
        Err(error) => Err(DecodeError::Payload(format!("LZ4: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Entry, Meta};

    const META: Meta = Meta {
        expires_ms: 1_700_000_000_000,
        delta_ms: 7,
    };

    fn stamp() -> Stamp {
        Stamp(vec![
            (
                "user:42".to_owned(),
                Bytes::from_static(b"0123456789abcdef"),
            ),
            ("orders".to_owned(), Bytes::from_static(b"t2")),
        ])
    }

    #[test]
    fn plain_entries_stay_plain() {
        let plain = Codec::MessagePack.encode(&"short", META).expect("encodes");
        assert_eq!(build(plain.clone(), None, 4096), plain);
        assert_eq!(build(plain.clone(), Some(&Stamp::default()), 0), plain);
        assert!(!is_tagged(&plain));
    }

    #[test]
    fn tags_and_compression_round_trip() {
        let value = "abc".repeat(10_000);
        let plain = Codec::MessagePack.encode(&value, META).expect("encodes");
        for (stamp, compress) in [(None, 1), (Some(stamp()), 0), (Some(stamp()), 1)] {
            let bytes = build(plain.clone(), stamp.as_ref(), compress);
            assert_ne!(bytes, plain);
            assert_eq!(is_tagged(&bytes), stamp.is_some());
            if compress > 0 {
                assert!(bytes.len() < plain.len() / 10, "{} bytes", bytes.len());
            }
            let tags = tags_of(&bytes).unwrap_or_default();
            let expected: Vec<(&str, &[u8])> = stamp
                .as_ref()
                .map(|s| s.0.iter().map(|(t, k)| (t.as_str(), &k[..])).collect())
                .unwrap_or_default();
            assert_eq!(tags, expected);
            let decoded = Codec::MessagePack
                .decode::<String>(&bytes, u64::MAX)
                .expect("decodes");
            assert_eq!(decoded.entry, Entry::Value(value.clone()));
            assert_eq!(decoded.meta, META);
        }
        let absent = build(Codec::encode_absent(META), Some(&stamp()), 1);
        assert!(is_tagged(&absent));
        assert_eq!(
            Codec::MessagePack
                .decode::<String>(&absent, u64::MAX)
                .map(|d| d.entry),
            Ok(Entry::Absent)
        );
    }

    #[test]
    fn an_entry_inflating_past_the_limit_is_refused_unallocated() {
        let value = vec![0u8; 1 << 20];
        let plain = Codec::MessagePack.encode(&value, META).expect("encodes");
        let bytes = build(plain, None, 1);
        assert!(bytes.len() < 8 * 1024, "{}", bytes.len());
        assert!(matches!(
            Codec::MessagePack.decode::<Vec<u8>>(&bytes, 64 * 1024),
            Err(DecodeError::Payload(_))
        ));
        // A crafted size of 4 GiB on a tiny block: refused before allocating.
        let mut crafted = bytes[..ENTRY_HEADER_LEN + 2].to_vec();
        crafted.extend_from_slice(&u32::MAX.to_le_bytes());
        crafted.extend_from_slice(&[0x1f, 0, 1, 0]);
        assert!(
            Codec::MessagePack
                .decode::<Vec<u8>>(&crafted, 16 << 20)
                .is_err()
        );
        // A size that lies low: the block does not fit it.
        let mut lying = bytes.clone();
        lying[ENTRY_HEADER_LEN + 2..ENTRY_HEADER_LEN + 6].copy_from_slice(&16u32.to_le_bytes());
        assert!(
            Codec::MessagePack
                .decode::<Vec<u8>>(&lying, u64::MAX)
                .is_err()
        );
    }

    #[test]
    fn cut_or_unknown_extensions_are_refused() {
        let bytes = build(
            Codec::MessagePack.encode(&1u8, META).expect("encodes"),
            Some(&stamp()),
            0,
        );
        for end in ENTRY_HEADER_LEN..bytes.len() - 1 {
            assert!(
                Codec::MessagePack
                    .decode::<u8>(&bytes[..end], u64::MAX)
                    .is_err(),
                "{end}"
            );
        }
        let mut unknown = bytes.clone();
        unknown[ENTRY_HEADER_LEN + 1] |= 0x80;
        assert!(matches!(
            Codec::MessagePack.decode::<u8>(&unknown, u64::MAX),
            Err(DecodeError::OtherFormat { .. })
        ));
    }
}
