//! The Lua scripts of the Redis backend: the lease protocol of `lease.rs`
//! done atomically on the server. Each touches only `KEYS[1]`, so they run
//! unchanged on Redis Cluster.

/// `ARGV`: marker, lease ms, and optionally bytes to replace. Returns what
/// the key holds, or nil after writing the marker into the key: when it was
/// empty, held exactly the bytes to replace (an entry the caller cannot
/// use), or held a key of another Redis type.
pub(crate) const ACQUIRE: &str = r"
local held = redis.pcall('GET', KEYS[1])
if type(held) == 'table' and held.err then
  redis.call('DEL', KEYS[1])
  held = false
end
if held and held ~= ARGV[3] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// `ARGV`: marker, value, ttl ms. Stores the value only over our own
/// marker; returns 1 if it did.
pub(crate) const FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// `ARGV`: marker. Removes the key only while it holds our marker.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

// Versioned entries (see `versioned.rs`): `KEYS[1]` is the entry, `KEYS[2]`
// its version record, `"{version} {sha1 of the entry's bytes}"`, in the
// same cluster slot. The digest tells the version's own write from a fill
// or a lease put in the entry since. Versions are decimal strings, compared
// by length and then text, so any `u64` compares exactly (Lua numbers are
// doubles).
const VERSION_LIB: &str = r"
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function record()
  local held = redis.pcall('GET', KEYS[2])
  if type(held) ~= 'string' then return '', '' end
  local version, digest = string.match(held, '^(%d+) (%x*)$')
  if not version then return '', '' end
  return version, digest
end
local function holds(digest)
  local current = redis.pcall('GET', KEYS[1])
  return type(current) == 'string' and digest ~= '' and redis.sha1hex(current) == digest
end
local function expire(key, ms)
  if ms ~= '0' then redis.call('PEXPIRE', key, ms) end
end
local function put(key, value, ms)
  if ms == '0' then redis.call('SET', key, value) else redis.call('SET', key, value, 'PX', ms) end
end
";

/// `ARGV`: value, entry ttl ms (`0`: no expiry), version, record ttl ms,
/// expected version (empty: any). Stores the value and its version unless
/// the stored version is as new or newer (0; a fill or lease in the entry,
/// which may hold an older row, is removed then) or differs from the
/// expected one (2). Writing the entry voids any reader's lease. Returns 1
/// when stored.
pub(crate) fn store() -> String {
    format!(
        "{VERSION_LIB}
local version, digest = record()
if ARGV[5] ~= '' and version ~= ARGV[5] then return 2 end
if version ~= '' and not newer(ARGV[3], version) then
  if not holds(digest) then redis.call('DEL', KEYS[1]) end
  return 0
end
put(KEYS[1], ARGV[1], ARGV[2])
put(KEYS[2], ARGV[3] .. ' ' .. redis.sha1hex(ARGV[1]), ARGV[4])
return 1
"
    )
}

/// `ARGV`: version, record ttl ms. Removes the entry and records the
/// version (with no write holding it), so that older writes still in
/// flight do not store; a newer write's own entry stays (0). Returns 1
/// when removed.
pub(crate) fn evict() -> String {
    format!(
        "{VERSION_LIB}
local version, digest = record()
if version ~= '' and newer(version, ARGV[1]) then
  if not holds(digest) then redis.call('DEL', KEYS[1]) end
  return 0
end
redis.call('DEL', KEYS[1])
put(KEYS[2], ARGV[1] .. ' ', ARGV[2])
return 1
"
    )
}

/// `ARGV`: version, entry ttl ms (`0`: drop the entry), record ttl ms.
/// After the write of that version reached the database: gives its own
/// entry the TTL (1), or removes whatever else the entry holds (2), since
/// it is older than the database now; a newer version is left alone (0).
pub(crate) fn settle() -> String {
    format!(
        "{VERSION_LIB}
local version, digest = record()
if version ~= '' and newer(version, ARGV[1]) then return 0 end
if ARGV[2] ~= '0' and version == ARGV[1] and holds(digest) then
  expire(KEYS[1], ARGV[2])
  expire(KEYS[2], ARGV[3])
  return 1
end
redis.call('DEL', KEYS[1])
if version ~= '' then expire(KEYS[2], ARGV[3]) end
return 2
"
    )
}

/// No `ARGV`. Returns `{entry, version}`: the entry only when it holds
/// the version's own write (else nil), the version (empty when none).
pub(crate) fn peek() -> String {
    format!(
        "{VERSION_LIB}
local version, digest = record()
if holds(digest) then return {{redis.call('GET', KEYS[1]), version}} end
return {{false, version}}
"
    )
}
