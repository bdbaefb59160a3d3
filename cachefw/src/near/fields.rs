//! Hash entries in the near tier (`cachefw-cassandra`'s `layout =
//! "hash"`): what a whole-row read of a hash returned, held as the
//! adapter packed it, under the same rules as every copy (a ticket taken
//! before the read, dropped by any write of the key: tracking reports an
//! `HSET` of one field as a write of the key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Near, NearCopy, Ticket, weight};

impl Near {
    /// Offers the packed fields a read of the hash `key` under `ticket`
    /// returned, for `life` at most (the entry's TTL's rest; the tier's
    /// cap bounds it too).
    pub(crate) fn offer_fields(&self, key: &str, bytes: Bytes, ticket: Ticket<'_>, life: Duration) {
        let life = life.min(self.cap);
        if life.is_zero() {
            return;
        }
        let held = NearCopy {
            weight: weight(key, &bytes, 0),
            bytes,
            state: ticket.state,
            expires: Instant::now() + life,
            decoded: None,
        };
        self.store(key, held, &ticket);
    }

    /// The packed fields held for the hash `key`, if the tier serves them.
    pub(crate) fn fields(&self, key: &str) -> Option<Bytes> {
        self.get(key).map(|held: Arc<NearCopy>| held.bytes.clone())
    }
}
