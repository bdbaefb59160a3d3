//! Redis Cluster slots: which slot a key hashes to, and the slot layout a
//! `CLUSTER SLOTS` reply describes. A leaf: the backend routes commands by
//! it and the near tier's links follow it, neither through the other.

use redis::{ConnectionAddr, ConnectionInfo, Value};

/// Cluster slots.
pub(crate) const SLOTS: usize = 16_384;

/// A slot range and the `host:port` of the primary that serves it.
pub(crate) type Range = (usize, usize, String);

/// The cluster slot of a key (CRC16 of the key or its `{hash tag}`).
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS as u16
}

/// `CLUSTER SLOTS`: `[start, end, [host, port, id…], replicas…]` per range;
/// sorted, so that two reads of one layout compare equal. A primary that
/// announces no host (an empty string, or `?`) is named by `asked`, the
/// host of the node that answered.
pub(crate) fn parse_slots(reply: Value, asked: &str) -> Option<Vec<Range>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut parsed = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = match primary.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return None,
        };
        let host = if host.is_empty() || host == "?" {
            asked.to_owned()
        } else {
            host
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            return None;
        };
        parsed.push((
            usize::try_from(*start).ok()?,
            usize::try_from(*end).ok()?.min(SLOTS - 1),
            format!("{host}:{port}"),
        ));
    }
    parsed.sort_unstable();
    Some(parsed)
}

/// The host of a `host:port` name (IPv6 hosts keep their colons).
pub(crate) fn host_of(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(host, _)| host)
}

/// `host:port` split; `None` for a name without a port.
pub(crate) fn split_name(name: &str) -> Option<(String, u16)> {
    let (host, port) = name.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// `seed`'s settings (credentials, TLS) for the node called `name`
/// (`host:port`); `None` for a name without a port.
pub(crate) fn node_settings(seed: &ConnectionInfo, name: &str) -> Option<ConnectionInfo> {
    let (host, port) = split_name(name)?;
    let addr = match seed.addr() {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Some(seed.clone().set_addr(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_hash_tags() {
        assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOTS as u16);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
    }

    #[test]
    fn layouts_parse_sorted_and_name_unannounced_hosts() {
        let range = |start: i64, end: i64, host: &str, port: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![
                    Value::BulkString(host.as_bytes().to_vec()),
                    Value::Int(port),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            range(8192, 16383, "10.0.0.2", 7001),
            range(0, 8191, "", 7000),
        ]);
        assert_eq!(
            parse_slots(reply, "10.0.0.9"),
            Some(vec![
                (0, 8191, "10.0.0.9:7000".to_owned()),
                (8192, 16383, "10.0.0.2:7001".to_owned()),
            ])
        );
        assert_eq!(parse_slots(Value::Nil, "h"), None);
        assert_eq!(split_name("::1:7000"), Some(("::1".to_owned(), 7000)));
        assert_eq!(host_of("10.0.0.1:7000"), "10.0.0.1");
    }
}
