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
