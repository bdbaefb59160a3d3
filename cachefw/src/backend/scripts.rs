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
