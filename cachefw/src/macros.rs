//! The attribute macros, re-exported from `cachefw-macros` with their
//! documentation (doc-tested here, where `::cachefw` resolves).

/// Caches an `async fn`'s result under a key rendered from its parameters.
///
/// ```
/// use cachefw::cacheable;
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, name: String }
/// # #[derive(Debug)] struct DbError;
///
/// #[cacheable(key = "user:<id>", ttl = "10m")]
/// async fn get_user(id: u64) -> Result<User, DbError> {
///     Ok(User { id, name: "Ada".into() }) // the slow source
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().namespace("shop").build().await?;
/// cachefw::install(cache.clone());
/// assert!(get_user(42).await.is_ok());                       // miss: runs the body
/// assert!(get_user(42).await.is_ok());                       // hit
/// assert!(cache.get::<User>("user:42").await?.is_some());    // stored at shop:v1:user:42
/// assert_eq!(cache.stats().loads, 1);
/// # Ok(()) }
/// ```
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `key = "user:<id>"` | required: literal text with `<param>` or `<param.field.path>` placeholders, each checked against the parameters at compile time and rendered with `Display` |
/// | `ttl = "10m"` | how long a value lives: `"500ms"`, `"45s"`, `"10m"`, `"1h30m"`, `"1d"`; default [`Cache::default_ttl`](crate::Cache::default_ttl) |
/// | `cache = <expr>` | the cache to use, evaluated in the function's scope (`self.cache`, a static, a call): a [`Cache`](crate::Cache), an `Option<Cache>`, or anything that dereferences to one; default: the one given to [`install`](crate::install) |
/// | `cache_none = "30s"` | for `Option<T>` returns: also cache `None`, for this long |
/// | `condition = <bool expr>` | over the parameters; when false the call bypasses the cache (no read, no store) |
/// | `unless = <bool expr>` | over `result: &T`, the value about to be stored; when true it is returned but not stored |
/// | `jitter = "10%"` | take up to this share off each TTL at random, so entries loaded together do not expire together; default [`CacheBuilder::ttl_jitter`](crate::CacheBuilder::ttl_jitter) |
///
/// # What is cached
///
/// - `Result<T, E>`: `Ok(T)` only; an `Err` is returned and never stored.
/// - `Option<T>`: `Some(T)`; `None` only with `cache_none`.
/// - any other `T`: always.
///
/// `T` must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`.
/// Every form stores the bare `T`, so functions of different return shapes
/// over one key share entries.
///
/// Concurrent misses of one key run the body once, in this process and, through
/// the key's Redis lease, across processes; a value loaded before an eviction
/// of its key is not stored. A cache failure (Redis down or slow, a bad entry)
/// never fails the call: the body runs and its answer is returned. With no cache installed and no `cache = …`, the
/// function runs uncached and one warning is logged for the process.
///
/// It works on free functions and methods (`&self`, `&mut self`), generic
/// functions, with `impl Trait`, reference and pattern parameters that are
/// not in the key, and inside `#[async_trait]` impls:
///
/// ```
/// use cachefw::{Cache, cacheable};
///
/// struct Prices { cache: Cache }
///
/// impl Prices {
///     #[cacheable(key = "price:<sku>:<currency>", ttl = "1h", cache = self.cache,
///                 condition = !sku.is_empty(), unless = *result == 0)]
///     async fn price(&self, sku: &str, currency: &str, _trace: impl std::fmt::Debug) -> u64 {
///         if currency == "EUR" { 1_999 } else { 0 }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let prices = Prices { cache: Cache::builder().build().await? };
/// assert_eq!(prices.price("A1", "EUR", ()).await, 1_999);
/// assert_eq!(prices.cache.get::<u64>("price:A1:EUR").await?, Some(1_999));
/// assert_eq!(prices.price("A1", "XXX", ()).await, 0);       // not stored: unless
/// assert_eq!(prices.cache.get::<u64>("price:A1:XXX").await?, None);
/// # Ok(()) }
/// ```
pub use cachefw_macros::cacheable;

/// Evicts cache entries when an `async fn` runs: after it returns `Ok` (or
/// after any return, for a function not returning `Result`), or before its
/// body with `before = true`.
///
/// ```
/// use cachefw::{cache_evict, cacheable};
/// # #[derive(Debug)] struct DbError;
///
/// #[cacheable(key = "user:<id>:name", ttl = "10m")]
/// async fn name(id: u64) -> Result<String, DbError> { Ok(format!("user {id}")) }
///
/// #[cache_evict(key = "user:<id>:name")]
/// async fn rename(id: u64, new_name: &str) -> Result<(), DbError> {
///     let _ = (id, new_name); // write to the source here
///     Ok(())
/// }
///
/// #[cache_evict(prefix = "user:")]        // every entry whose key starts with `user:`
/// #[cache_evict(key = "stats", before = true)]
/// async fn reset() {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// cachefw::install(cache.clone());
/// name(1).await.ok();
/// assert!(cache.get::<String>("user:1:name").await?.is_some());
/// rename(1, "Ada").await.ok();
/// assert!(cache.get::<String>("user:1:name").await?.is_none());
/// reset().await;
/// # Ok(()) }
/// ```
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `key = "user:<id>"` | the one entry to evict (placeholders as in [`cacheable`]) |
/// | `prefix = "user:"` | instead of `key`: every entry whose key starts with it, taken literally (may hold placeholders) |
/// | `before = true` | evict before the body runs, whatever it returns (default `false`) |
/// | `cache = <expr>` | the cache to use, as in [`cacheable`] |
///
/// Several `#[cache_evict]` may stack on one function. A failed eviction
/// (Redis down) is counted and logged, never returned to the caller.
pub use cachefw_macros::cache_evict;

/// Write-through: stores an `async fn`'s result under its key (`Ok` of a
/// `Result`, `Some` of an `Option`, any other value always).
///
/// ```
/// use cachefw::cache_put;
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, name: String }
/// # #[derive(Debug)] struct DbError;
///
/// #[cache_put(key = "user:<u.id>", ttl = "10m")]
/// async fn save_user(u: User) -> Result<User, DbError> {
///     Ok(u) // write to the source, return what it holds now
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// cachefw::install(cache.clone());
/// save_user(User { id: 7, name: "Ada".into() }).await.ok();
/// assert_eq!(cache.get::<User>("user:7").await?.map(|u| u.name).as_deref(), Some("Ada"));
/// # Ok(()) }
/// ```
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `key = "user:<u.id>"` | required, as in [`cacheable`] |
/// | `ttl = "10m"` | as in [`cacheable`] |
/// | `cache = <expr>` | as in [`cacheable`] |
/// | `unless = <bool expr>` | over `result: &T`; when true the value is not stored |
pub use cachefw_macros::cache_put;
