//! The Lua scripts of the Redis backend: the lease protocol of `lease.rs`
//! done atomically on the server. Each touches only `KEYS[1]`, so they run
//! unchanged on Redis Cluster.

/// `ARGV`: marker, lease ms, the largest value the caller reads, and
/// optionally bytes to replace. Returns what the key holds, or nil after
/// writing the marker into the key: when it was empty, held exactly the
/// bytes to replace (an entry the caller cannot use), held a key of another
/// Redis type, or held a value larger than the caller reads (sized with
/// `STRLEN`, never copied: it is neither sent back nor loaded here).
pub(crate) const ACQUIRE: &str = r"
local size = redis.pcall('STRLEN', KEYS[1])
if type(size) == 'table' and size.err then
  redis.call('DEL', KEYS[1])
elseif size <= tonumber(ARGV[3]) then
  local held = redis.call('GET', KEYS[1])
  if held and held ~= ARGV[4] then return held end
end
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

/// `ARGV`: nonce (8 bytes), claim ms, the entry header's layout (the
/// claim's offset, the header's length, the lease tag), and the expiry
/// bytes of the entry the caller read. Claims the entry at `KEYS[1]` for a
/// reload while it stays readable: writes "until now + claim ms, by nonce"
/// into its header, if it is still the entry the caller read (a reload
/// that landed meanwhile is not reloaded again), no lease, and no
/// unexpired claim holds it. Returns 1 if it did. Time is the server's, so
/// every client's claims compare alike.
pub(crate) const CLAIM: &str = r"
local offset, len = tonumber(ARGV[3]), tonumber(ARGV[4])
local head = redis.call('GETRANGE', KEYS[1], 0, len - 1)
if string.len(head) < len or string.byte(head, 3) == tonumber(ARGV[5]) then return 0 end
if string.sub(head, 4, 11) ~= ARGV[6] then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local held = 0
for i = offset + 1, offset + 8 do held = held * 256 + string.byte(head, i) end
if held > now then return 0 end
local until_ms = now + tonumber(ARGV[2])
local bytes = {}
for i = 8, 1, -1 do
  bytes[i] = string.char(until_ms % 256)
  until_ms = math.floor(until_ms / 256)
end
redis.call('SETRANGE', KEYS[1], offset, table.concat(bytes) .. ARGV[1])
return 1
";

/// `ARGV`: nonce, value, ttl ms, the nonce's offset. Stores the value only
/// while the entry still carries our claim (no write or eviction came in
/// between); returns 1 if it did.
pub(crate) const FILL_CLAIMED: &str = r"
local at = tonumber(ARGV[4])
if redis.call('GETRANGE', KEYS[1], at, at + 7) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// `ARGV`: nonce, the claim's offset. Gives our claim up, if the entry
/// still carries it.
pub(crate) const UNCLAIM: &str = r"
local at = tonumber(ARGV[2])
if redis.call('GETRANGE', KEYS[1], at + 8, at + 15) == ARGV[1] then
  redis.call('SETRANGE', KEYS[1], at, string.rep('\0', 16))
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

/// `ARGV`: version, entry ttl ms (`0`: drop the entry), record ttl ms, the
/// entry's new expiry (8 bytes, big-endian ms) and where it goes in the
/// header: kept entries become fresh for that TTL, in their own metadata
/// too (the record's digest follows the rewritten bytes).
/// After the write of that version reached the database: gives its own
/// entry the TTL (1), or removes whatever else the entry holds (2), since
/// it is older than the database now, and records the version (so that
/// its own write, landing late, is dropped). A newer version's own write
/// is left alone (0); a fill beside it, which may have read the database
/// before this write reached it, is removed.
pub(crate) fn settle() -> String {
    format!(
        "{VERSION_LIB}
local version, digest = record()
if version ~= '' and newer(version, ARGV[1]) then
  if not holds(digest) then redis.call('DEL', KEYS[1]) end
  return 0
end
if ARGV[2] ~= '0' and version == ARGV[1] and holds(digest) then
  redis.call('SETRANGE', KEYS[1], tonumber(ARGV[5]), ARGV[4])
  put(KEYS[2], version .. ' ' .. redis.sha1hex(redis.call('GET', KEYS[1])), ARGV[3])
  expire(KEYS[1], ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
if version == ARGV[1] then expire(KEYS[2], ARGV[3]) else put(KEYS[2], ARGV[1] .. ' ', ARGV[3]) end
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
