//! The script calls: leases and claims on entries, versioned entries,
//! and commands from outside this crate; each through its node's breaker
//! (`run.rs`).

use bytes::Bytes;
use redis::{Cmd, FromRedisValue, Script, Value};

use super::{RedisBackend, Topology};
use crate::backend::scripts;
use crate::backend::versioned_key::VersionedKey;
use crate::codec::{CLAIM_AT, ENTRY_HEADER_LEN, LEASE_TAG_BYTE, NONCE_AT};
use crate::error::Error;
use crate::slots::slot_of;

/// Leases and refresh claims on entries (see `scripts.rs`).
impl RedisBackend {
    /// Takes the lease on `key` if it is empty or holds exactly `over`;
    /// otherwise returns what it holds (a value or someone else's lease).
    pub(crate) async fn acquire(
        &self,
        key: &str,
        marker: &[u8],
        lease_ms: u64,
        over: Option<&Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        let mut call = self.acquire.key(key);
        call.arg(marker).arg(lease_ms).arg(self.max_value_size);
        if let Some(over) = over {
            call.arg(over.as_ref());
        }
        let held: Option<Vec<u8>> = self.invoke("ACQUIRE", key, &call).await?;
        Ok(held.map(Bytes::from))
    }

    /// Stores `value` if `key` still holds our lease `marker`.
    pub(crate) async fn fill(
        &self,
        key: &str,
        marker: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.fill.key(key);
        call.arg(marker).arg(value).arg(ttl_ms);
        let stored: u8 = self.invoke("FILL", key, &call).await?;
        Ok(stored == 1)
    }

    /// Drops our lease `marker` on `key`, if it is still there.
    pub(crate) async fn release(&self, key: &str, marker: &[u8]) -> Result<(), Error> {
        let mut call = self.release.key(key);
        call.arg(marker);
        self.invoke("RELEASE", key, &call).await
    }

    /// Claims the entry at `key` that expires at `expires_ms` for a reload
    /// (see `scripts::CLAIM`); `true` if we hold the claim now.
    pub(crate) async fn take_reload_lease(
        &self,
        key: &str,
        nonce: &[u8],
        claim_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.claim.key(key);
        call.arg(nonce)
            .arg(claim_ms)
            .arg(CLAIM_AT)
            .arg(ENTRY_HEADER_LEN)
            .arg(LEASE_TAG_BYTE)
            .arg(&expires_ms.to_be_bytes()[..]);
        let claimed: u8 = self.invoke("CLAIM", key, &call).await?;
        Ok(claimed == 1)
    }

    /// Stores `value` if the entry at `key` still carries our claim.
    pub(crate) async fn fill_claimed(
        &self,
        key: &str,
        nonce: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = self.fill_claimed.key(key);
        call.arg(nonce).arg(value).arg(ttl_ms).arg(NONCE_AT);
        let stored: u8 = self.invoke("FILL", key, &call).await?;
        Ok(stored == 1)
    }

    /// Gives our claim on `key` up, if it is still there.
    pub(crate) async fn release_reload_lease(&self, key: &str, nonce: &[u8]) -> Result<(), Error> {
        let mut call = self.unclaim.key(key);
        call.arg(nonce).arg(CLAIM_AT);
        self.invoke("UNCLAIM", key, &call).await
    }
}

/// The scripts of versioned entries, hashed once.
static STORE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::store()));
static EVICT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::evict()));
static SETTLE: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::settle()));
static PEEK: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&scripts::peek()));

/// Versioned entries (see `versioned.rs`), and commands from outside this
/// crate (see `command.rs`): each through the breaker of the node that
/// holds its key, as every command.
impl RedisBackend {
    /// Whether one script may touch both keys: always on one Redis; on a
    /// cluster when they hash to one slot.
    pub(crate) fn same_slot(&self, a: &str, b: &str) -> bool {
        match &self.topology {
            Topology::Single(_) => true,
            Topology::Cluster(_) => slot_of(a.as_bytes()) == slot_of(b.as_bytes()),
        }
    }

    /// Runs `invocation` on the node that holds `key`.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let node = self.node_for(key);
        self.run(op, key, &node, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs `command` on the node that holds `key`; the reply as it came.
    pub(crate) async fn command(
        &self,
        op: &'static str,
        key: &str,
        command: &Cmd,
    ) -> Result<Value, Error> {
        self.query(op, key, command).await
    }

    /// See `scripts::store`: 1 stored, 0 superseded, 2 not the expected
    /// version.
    pub(crate) async fn store_versioned(
        &self,
        at: &VersionedKey,
        value: &[u8],
        ttl_ms: u64,
        version: u64,
        record_ttl_ms: u64,
        expect: Option<u64>,
    ) -> Result<u8, Error> {
        let mut call = STORE.key(&at.entry);
        call.key(&at.record)
            .arg(value)
            .arg(ttl_ms)
            .arg(version)
            .arg(record_ttl_ms)
            .arg(expect.map(|v| v.to_string()).unwrap_or_default());
        self.invoke("STORE", &at.entry, &call).await
    }

    /// See `scripts::evict`: whether the entry was removed.
    pub(crate) async fn evict_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        record_ttl_ms: u64,
    ) -> Result<bool, Error> {
        let mut call = EVICT.key(&at.entry);
        call.key(&at.record).arg(version).arg(record_ttl_ms);
        let removed: u8 = self.invoke("EVICT", &at.entry, &call).await?;
        Ok(removed == 1)
    }

    /// See `scripts::settle`: 1 kept with its TTL, 2 removed, 0 newer.
    pub(crate) async fn settle_versioned(
        &self,
        at: &VersionedKey,
        version: u64,
        ttl_ms: u64,
        record_ttl_ms: u64,
    ) -> Result<u8, Error> {
        let mut call = SETTLE.key(&at.entry);
        call.key(&at.record)
            .arg(version)
            .arg(ttl_ms)
            .arg(record_ttl_ms)
            .arg(&crate::codec::expires_at(ttl_ms)[..])
            .arg(crate::codec::EXPIRES_AT);
        self.invoke("SETTLE", &at.entry, &call).await
    }

    /// See `scripts::peek`: the version's own entry, and the version.
    pub(crate) async fn peek_versioned(
        &self,
        at: &VersionedKey,
    ) -> Result<(Option<Bytes>, Option<u64>), Error> {
        let mut call = PEEK.key(&at.entry);
        call.key(&at.record);
        let (entry, version): (Option<Vec<u8>>, String) =
            self.invoke("PEEK", &at.entry, &call).await?;
        Ok((entry.map(Bytes::from), version.parse().ok()))
    }
}
