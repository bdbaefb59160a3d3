//! The Lua scripts of the hash layout. Each runs atomically on the node of
//! its two keys (one cluster slot): `KEYS[1]` the entry, a Redis hash with
//! one field per regular column, and `KEYS[2]` its record, a Redis hash of
//! versions beside it.
//!
//! Internal fields start with byte 0xFF, which no UTF-8 text (so no column
//! name) contains: in the entry, `\xFFr` marks a whole row (a hash without
//! it holds only a reader's lease, `\xFFl`); in the record, `\xFF` is the
//! version of the last write of the whole row (a save, a delete, an
//! eviction), each column's name the version of the last patch of that
//! column, and `\xFFi` the number of increments in flight.
//!
//! The record outlives the entry (it is never removed with it, and lives
//! the entity's TTL plus a margin past each write), so a write that lands
//! late, after a newer one or an eviction, is refused even when the entry
//! is gone. A record with no expiry says that a write-behind write waits
//! for its flush: no reader fills the entry then, since Cassandra does not
//! have the write yet.
//!
//! Versions are decimal strings (microseconds), compared by length and
//! then text, so that any `u64` compares exactly (Lua numbers are doubles).

use std::sync::LazyLock;

use cachefw::__adapter::redis::Script;

const LIB: &str = r"
local ROW, LEASE, WHOLE, INCR = '\255r', '\255l', '\255', '\255i'
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function kind()
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t == 'none' then return 'none' end
  if t ~= 'hash' then return 'other' end
  if redis.call('HEXISTS', KEYS[1], ROW) == 1 then return 'row' end
  return 'partial'
end
local function newest()
  local all = redis.call('HGETALL', KEYS[2])
  local top = nil
  for i = 1, #all, 2 do
    if all[i] ~= INCR and (not top or newer(all[i + 1], top)) then top = all[i + 1] end
  end
  return top
end
local function pending()
  if redis.call('PTTL', KEYS[2]) == -1 then return true end
  return tonumber(redis.call('HGET', KEYS[2], INCR) or '0') > 0
end
local function keep(ms, existed)
  if ms == '0' then redis.call('PERSIST', KEYS[2]) return end
  local left = redis.call('PTTL', KEYS[2])
  if left == -1 and existed then return end
  if left < tonumber(ms) then redis.call('PEXPIRE', KEYS[2], ms) end
end
";

/// The scripts, hashed once.
pub(crate) struct Scripts {
    pub(crate) read: Script,
    pub(crate) fill: Script,
    pub(crate) release: Script,
    pub(crate) patch: Script,
    pub(crate) store: Script,
    pub(crate) evict: Script,
    pub(crate) settle: Script,
    pub(crate) increment_begin: Script,
    pub(crate) increment_end: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    read: with_lib(READ),
    fill: with_lib(FILL),
    release: with_lib(RELEASE),
    patch: with_lib(PATCH),
    store: with_lib(STORE),
    evict: with_lib(EVICT),
    settle: with_lib(SETTLE),
    increment_begin: with_lib(INCREMENT_BEGIN),
    increment_end: with_lib(INCREMENT_END),
});

fn with_lib(body: &str) -> Script {
    Script::new(&format!("{LIB}{body}"))
}

/// `ARGV`: nonce, lease ms, the largest row read, the columns. A whole row
/// whose columns add up to no more than the limit (`HSTRLEN`, nothing
/// copied before): `{1, its PTTL, value…}` in the columns' order. Another reader's
/// lease: `{2}`. A write-behind write or an increment pending: `{3}` (read
/// Cassandra, fill nothing). Otherwise the entry (missing, a row too
/// large or short of a column, another Redis type) becomes our lease: `{0}`.
const READ: &str = r"
local k = kind()
if k == 'row' then
  local size = 0
  for i = 4, #ARGV do size = size + redis.call('HSTRLEN', KEYS[1], ARGV[i]) end
  if size <= tonumber(ARGV[3]) then
    local values = redis.call('HMGET', KEYS[1], unpack(ARGV, 4, #ARGV))
    local whole = true
    for i = 1, #values do if not values[i] then whole = false end end
    if whole then
      table.insert(values, 1, redis.call('PTTL', KEYS[1]))
      table.insert(values, 1, 1)
      return values
    end
  end
elseif k == 'partial' and redis.call('HEXISTS', KEYS[1], LEASE) == 1 then
  return {2}
end
if pending() then return {3} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], LEASE, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0}
";

/// `ARGV`: nonce, ttl ms, then column and value pairs. Stores the row
/// only over our own lease (any write since removed it); returns 1 if it
/// did.
const FILL: &str = r"
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' or redis.call('HGET', KEYS[1], LEASE) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if pending() then return 0 end
redis.call('HSET', KEYS[1], ROW, '1', unpack(ARGV, 3, #ARGV))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// `ARGV`: nonce. Gives our lease up, if the entry still holds it.
const RELEASE: &str = r"
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], LEASE) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// `ARGV`: version, record ms, `1` for a write-behind patch (the entry
/// and record keep no expiry until the flush settles them), then column
/// and value pairs. Refused when the record holds a write of the whole
/// row or of one of these columns as new or newer: the entry is evicted
/// (0). Otherwise the columns' versions are recorded and, when the entry
/// holds a whole row, only these fields are set (1); a reader's lease is
/// removed, so that it does not fill what it read before (2).
const PATCH: &str = r"
local existed = redis.call('EXISTS', KEYS[2]) == 1
local whole = redis.call('HGET', KEYS[2], WHOLE)
local refused = whole and not newer(ARGV[1], whole)
for i = 4, #ARGV, 2 do
  local seen = redis.call('HGET', KEYS[2], ARGV[i])
  if seen and not newer(ARGV[1], seen) then refused = true end
end
if refused then
  redis.call('DEL', KEYS[1])
  return 0
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
if ARGV[3] == '1' then keep('0', existed) else keep(ARGV[2], existed) end
local k = kind()
if k == 'row' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4, #ARGV))
  if ARGV[3] == '1' then redis.call('PERSIST', KEYS[1]) end
  return 1
end
if k ~= 'none' then redis.call('DEL', KEYS[1]) end
return 2
";

/// `ARGV`: version, record ms, entry ms (`0`: no expiry, a write-behind
/// save), then column and value pairs. Stores the whole row as that
/// version, over whatever the entry holds (a reader's lease included),
/// unless the record holds a write as new or newer: then the entry is
/// evicted (0). Returns 1 when stored.
const STORE: &str = r"
local existed = redis.call('EXISTS', KEYS[2]) == 1
local top = newest()
if top and not newer(ARGV[1], top) then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('HSET', KEYS[2], WHOLE, ARGV[1])
if ARGV[3] == '0' then keep('0', existed) else keep(ARGV[2], existed) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], ROW, '1', unpack(ARGV, 4, #ARGV))
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// `ARGV`: version, record ms. Removes the entry (a lease too) and
/// records the version for the whole row, so that an older write landing
/// later is refused.
const EVICT: &str = r"
local existed = redis.call('EXISTS', KEYS[2]) == 1
local whole = redis.call('HGET', KEYS[2], WHOLE)
if not whole or newer(ARGV[1], whole) then redis.call('HSET', KEYS[2], WHOLE, ARGV[1]) end
keep(ARGV[2], existed)
redis.call('DEL', KEYS[1])
return 1
";

/// `ARGV`: version, entry ms, record ms. After the write-behind write of
/// that version reached Cassandra: when no newer write is recorded, the
/// entry, if it holds a row written behind (no expiry), expires in entry
/// ms (1); anything else there is removed (2), and the record expires.
/// A newer write waiting for its own flush leaves both alone (0).
const SETTLE: &str = r"
local top = newest()
if top and newer(top, ARGV[1]) then return 0 end
local k = kind()
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if k == 'row' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if k ~= 'none' then redis.call('DEL', KEYS[1]) end
return 2
";

/// `ARGV`: record ms. Before an increment is sent: counts it in flight
/// (no reader takes a lease or fills until it ends) and removes a reader's
/// lease, which may have read the counter before it.
const INCREMENT_BEGIN: &str = r"
local existed = redis.call('EXISTS', KEYS[2]) == 1
redis.call('HINCRBY', KEYS[2], INCR, 1)
keep(ARGV[1], existed)
local k = kind()
if k == 'partial' or k == 'other' then redis.call('DEL', KEYS[1]) end
return 1
";

/// `ARGV`: column, amount, and `add` (Cassandra applied it: add it to the
/// cached counter), `keep` (refused: the entry stays) or `evict`
/// (unknown). Ends one increment in flight. Returns 1 when added.
const INCREMENT_END: &str = r"
local left = redis.call('HINCRBY', KEYS[2], INCR, -1)
if left <= 0 then redis.call('HDEL', KEYS[2], INCR) end
local k = kind()
if ARGV[3] == 'add' and k == 'row' then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    local added = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
    if type(added) ~= 'table' then return 1 end
  end
  redis.call('DEL', KEYS[1])
  return 0
end
if ARGV[3] ~= 'keep' and k ~= 'none' then redis.call('DEL', KEYS[1]) end
return 0
";
