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
