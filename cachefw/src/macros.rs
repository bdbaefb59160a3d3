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
/// | `key = "user:<id>"` | required: literal text with `<param>` or `<param.field.path>` placeholders, each checked against the parameters at compile time and rendered with `Display` (see [Keys](#keys)); `<result>` is an error here, since the key is read before the body runs |
/// | `ttl = "10m"` | how long a value lives: `"500ms"`, `"45s"`, `"10m"`, `"1h30m"`, `"1d"`; default [`Cache::default_ttl`](crate::Cache::default_ttl). Or `ttl = <expr>`: a `Duration` over `result: &T`, the value about to be stored, evaluated per store (`if result.volatile { Duration::from_secs(5) } else { Duration::from_secs(600) }`); `Duration::ZERO` stores nothing. With background options it may name `result` only |
/// | `tags = ["user:<user_id>", "orders"]` | the entry carries these tags (templates checked and rendered like keys; never `<result>`): [`Cache::evict_tag`](crate::Cache::evict_tag) or a `#[cache_evict(tags = …)]` of any of them makes it a miss, in every process |
/// | `cache = <expr>` | the cache to use, evaluated in the function's scope (`self.cache`, a static, a call): a [`Cache`](crate::Cache), an `Option<Cache>`, or anything that dereferences to one; default: the one given to [`install`](crate::install) (see [Which cache](#which-cache)) |
/// | `cache_none = "30s"` | for `Option<T>` and `Result<Option<T>, E>` returns: also cache `None` (`Ok(None)`), for this long; a compile error on any other shape |
/// | `condition = <bool expr>` | over the parameters; when false the call bypasses the cache (no read, no store) |
/// | `unless = <bool expr>` | over `result: &T`, the value about to be stored; when true it is returned but not stored |
/// | `jitter = "10%"` | take up to this share off each TTL at random, so entries loaded together do not expire together; default [`CacheBuilder::ttl_jitter`](crate::CacheBuilder::ttl_jitter) |
/// | `shape = "result"` | the return shape: `"result"`, `"option"`, `"result_option"` or `"plain"`; required when the return type is a type parameter, checked against the type otherwise (see [Return shapes](#return-shapes)) |
/// | `crate = my_crate::cachefw` | the path to this crate, for a crate that re-exports it: every path the expansion names starts there instead of `::cachefw` |
/// | `refresh_ahead = true` | recompute the entry before it expires, in the background (XFetch); `true` uses the cache's beta (or 1.0), a float such as `2.0` is the beta, `false` turns a cache default off; see [`CacheBuilder::refresh_ahead`](crate::CacheBuilder::refresh_ahead) |
/// | `stale_while_revalidate = "30s"` | serve a value up to this long past its TTL at once, and reload it in the background |
/// | `stale_if_error = "1h"` | when the body fails (or outlasts `load_timeout`), serve a value up to this long past its TTL instead; the body is then not called again for the key for [`CacheBuilder::fail_safe_throttle`](crate::CacheBuilder::fail_safe_throttle) |
/// | `load_timeout = "200ms"` | past this, a caller with a stale value at hand gets it, and the body goes on in the background to fill the cache |
///
/// Each value is checked at compile time: a value of the wrong kind
/// (`ttl = 10`, `key = user`), a malformed TTL, an unknown or repeated
/// argument, or a placeholder that names no parameter is an error on that
/// text, saying what would be valid, and all of them are reported at once.
///
/// # Which cache
///
/// Each attribute uses its own `cache = …`, or else the cache given to
/// [`install`](crate::install): attributes do not share a cache because
/// they sit on one function or one `impl` block. So on methods that keep
/// their cache in a field, **every** attribute must name it, the evictions
/// too: a `#[cache_evict]` without `cache = self.cache` beside reads that
/// have it evicts from the installed cache (or, with none installed, from
/// nothing), and the reads keep serving the old value. Name the cache once
/// for a whole `impl` block with [`cache_config`]:
///
/// ```
/// use cachefw::{Cache, cache_config, cache_evict, cacheable};
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, name: String }
/// # #[derive(Debug)] struct DbError;
///
/// struct UserRepo { cache: Cache }
///
/// #[cache_config(cache = self.cache, ttl = "5m")]
/// impl UserRepo {
///     #[cacheable(key = "user:<id>")]                 // cache = self.cache, ttl = "5m"
///     async fn get(&self, id: u64) -> Result<User, DbError> {
///         Ok(User { id, name: "Ada".into() })
///     }
///
///     #[cache_evict(key = "user:<id>")]               // cache = self.cache
///     async fn rename(&self, id: u64, name: &str) -> Result<(), DbError> {
///         let _ = (id, name);                          // write to the source here
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let repo = UserRepo { cache: Cache::builder().build().await? };
/// repo.get(1).await.ok();
/// assert!(repo.cache.get::<User>("user:1").await?.is_some());
/// repo.rename(1, "Grace").await.ok();
/// assert!(repo.cache.get::<User>("user:1").await?.is_none()); // evicted from self.cache
/// # Ok(()) }
/// ```
///
/// An attribute that names no cache, when none is installed, does nothing:
/// the first call of each such function logs a warning (through `tracing`)
/// that names it, `module::function`, and says what did not happen (a
/// read or store, an eviction).
///
/// # Background options
///
/// `refresh_ahead`, `stale_while_revalidate` and `load_timeout` let the body
/// finish after the call returns, so the expansion runs it in a loader that
/// owns copies of the arguments: a `&T` parameter is copied with
/// `ToOwned` (and reads as `&T` in the body), a parameter taken by value is
/// moved, and `&self` is cloned: on a method the receiver must be
/// `Clone + Send + Sync + 'static` (an `Arc` inside keeps that cheap), and
/// the arguments `Send + 'static` once owned. `&mut` parameters cannot be
/// used with them (a compile error says so). Without these options in the
/// attribute, the body runs as written; cache-wide defaults set on the
/// builder then reach the call in their inline form: the caller that
/// triggers a refresh or a revalidation runs it itself while the others
/// keep hitting, and a load past `load_timeout` is cut off without a fill.
///
/// ```
/// use cachefw::{Cache, cacheable};
/// # #[derive(Debug)] struct DbError;
///
/// #[derive(Clone)]
/// struct Prices { cache: Cache }
///
/// impl Prices {
///     #[cacheable(key = "price:<sku>", ttl = "1m", cache = self.cache,
///                 refresh_ahead = true, stale_while_revalidate = "30s",
///                 stale_if_error = "1h", load_timeout = "200ms")]
///     async fn price(&self, sku: &str) -> Result<u64, DbError> {
///         Ok(sku.len() as u64 * 100) // the slow source
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let prices = Prices { cache: Cache::builder().build().await? };
/// assert_eq!(prices.price("A1").await.ok(), Some(200));
/// prices.cache.shutdown().await;
/// # Ok(()) }
/// ```
///
/// # Return shapes
///
/// | shape | return type | stored |
/// | --- | --- | --- |
/// | `result` | `Result<T, E>` | `Ok(T)` only; an `Err` is returned and never stored |
/// | `option` | `Option<T>` | `Some(T)`; `None` only with `cache_none` |
/// | `result_option` | `Result<Option<T>, E>` | `Ok(Some(T))`; `Ok(None)` only with `cache_none`; never an `Err` |
/// | `plain` | any other `T` | always |
///
/// `T` must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`.
/// Every shape stores the bare `T`, so functions of different return shapes
/// over one key share entries.
///
/// The shape is found from the type, not from how it is written: an alias
/// keeps the shape of what it names, and an `impl Trait` return has the
/// shape of the body's type.
///
/// ```
/// use cachefw::cacheable;
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64 }
/// # #[derive(Debug, PartialEq)] struct ApiError;
///
/// type ApiResult<T> = Result<T, ApiError>;
///
/// #[cacheable(key = "user:<id>", ttl = "10m")]
/// async fn fetch(id: u64) -> ApiResult<User> {  // the shape of a Result: Err never stored
///     if id == 0 { Err(ApiError) } else { Ok(User { id }) }
/// }
///
/// #[cacheable(key = "row:<id>", ttl = "10m", cache_none = "30s")]
/// async fn lookup(id: u64) -> Result<Option<User>, ApiError> {
///     Ok((id > 1).then(|| User { id }))          // Ok(None) stored for 30s
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// cachefw::install(cache.clone());
/// assert_eq!(fetch(0).await, Err(ApiError));
/// assert_eq!(cache.get::<User>("user:0").await?, None);
/// assert_eq!(lookup(1).await, Ok(None));
/// assert_eq!(cache.stats().loads, 2);
/// assert_eq!(lookup(1).await, Ok(None));       // the cached None
/// assert_eq!(cache.stats().loads, 2);
/// # Ok(()) }
/// ```
///
/// Inside a generic function a type parameter `R` is just `R`, whatever a
/// caller makes it, so a return type that is one (or one of its associated
/// types, `R::Output`) has no shape the macro or the compiler can see: such
/// a function must say `shape = "…"`. For a bare `R` that is `"plain"`
/// (every value stored: a caller's `Err` too); return `Result<T, E>` or
/// `Option<T>` over a generic `T` instead to store only `Ok` or `Some`.
/// A declared shape that does not match the return type is a compile error
/// on the `shape` argument.
///
/// ```
/// use cachefw::{Cache, cacheable};
/// use serde::{Serialize, de::DeserializeOwned};
///
/// #[cacheable(key = "config:<name>", ttl = "1m", cache = cache, shape = "plain")]
/// async fn config<R>(cache: &Cache, name: &str, parse: fn(&str) -> R) -> R
/// where
///     R: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
/// {
///     parse(name)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = Cache::builder().build().await?;
/// assert_eq!(config(&cache, "retries", |_| 3u8).await, 3);
/// assert_eq!(config(&cache, "retries", |_| 9u8).await, 3); // cached
/// # Ok(()) }
/// ```
///
/// # Keys
///
/// A placeholder's value is rendered with `Display`, and inside it `%`
/// becomes `%25` and `:` becomes `%3A`, so two calls with different
/// arguments never share an entry through a value that holds the
/// separator: with `key = "a:<x>:<y>"`, `x = "1:2", y = "3"` is stored at
/// `a:1%3A2:3` and `x = "1", y = "2:3"` at `a:1:2%3A3`. Values that render
/// the same under `Display` (a type whose `Display` leaves out a field, or
/// two types printed alike) do share an entry: what a key tells apart is
/// the user's choice, made by the placeholders and their `Display`.
///
/// A placeholder written in another system's syntax that names a parameter
/// (`{id}`, `#id`, `#{id}`, `${id}`) is a compile error showing the `<id>`
/// form; such text naming no parameter stays literal. A key longer than
/// [`max_key_len`](crate::CacheBuilder::max_key_len) (512 bytes) is stored
/// under its head and SHA-256. A free function (no receiver, no generics)
/// also gets `<name>_key(..)`, which renders its key from the parameters
/// the template names, for batch reads and manual evictions (see
/// [`Cache::get_or_load_many`](crate::Cache::get_or_load_many)).
///
/// # Behaviour
///
/// Concurrent misses of one key run the body once, in this process and, through
/// the key's Redis lease, across processes; a value loaded before an eviction
/// of its key is not stored. A cache failure (Redis down or slow, a bad entry)
/// never fails the call: the body runs and its answer is returned. With no
/// cache installed and no `cache = …`, the function runs uncached and one
/// warning naming it is logged (see [Which cache](#which-cache)).
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
///
/// A crate that re-exports `cachefw` lets its users name it through
/// `crate = …`, so they need no dependency on `cachefw` of their own:
///
/// ```
/// mod framework {
///     pub use cachefw; // in a real crate: `pub use cachefw;` at its root
/// }
///
/// #[framework::cachefw::cacheable(crate = framework::cachefw, key = "n:<n>")]
/// async fn double(n: u32) -> u32 { n * 2 }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() { assert_eq!(double(2).await, 4); }
/// ```
pub use cachefw_macros::cacheable;

/// Evicts cache entries when an `async fn` runs: after it succeeds, or
/// before its body with `before = true`.
///
/// Success follows the [return shape](cacheable#return-shapes): `Ok` of a
/// `Result<T, E>` or `Result<Option<T>, E>` (aliases included), any return
/// of an `Option<T>` or a plain value. The returned value need not be
/// cacheable. A return type that is a type parameter counts as a plain
/// value (evicting after any return) unless `shape = "…"` says otherwise.
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
/// | `key = "user:<id>"` | the one entry to evict (placeholders as in [`cacheable`]; after the body, `<result…>` too, as in [`cache_put`](cache_put#keys-from-the-result)) |
/// | `prefix = "user:"` | instead of `key`: every entry whose key starts with it, taken literally (may hold placeholders) |
/// | `tags = ["user:<user_id>"]` | every entry carrying one of these tags (alone, or with `key`/`prefix`); rendered from the parameters, never `<result>`; see [`Cache::evict_tag`](crate::Cache::evict_tag) |
/// | `before = true` | evict before the body runs, and again after it, whatever it returns (default `false`); its key cannot name `<result>` |
/// | `condition = <bool expr>` | over the parameters, evaluated before the body; when false this eviction is skipped |
/// | `cache = <expr>` | the cache to use, as in [`cacheable`]: the same one as the reads it invalidates (see [Which cache](cacheable#which-cache)) |
/// | `shape = "result"` | the return shape, as in [`cacheable`]; never required |
/// | `crate = my_crate::cachefw` | as in [`cacheable`] |
///
/// Several `#[cache_evict]` may stack on one function, and mix with
/// `#[cache_put]`: see [Stacking](cache_put#stacking). After the body, an
/// eviction whose key names `<result>` evicts nothing when there is no
/// value to name (`None`, `Ok(None)`). A failed eviction (Redis down) is
/// counted and logged, never returned to the caller: it is kept and
/// replayed once Redis answers, and reads of its key bypass Redis until
/// then (see [`CacheBuilder::eviction_journal_capacity`](crate::CacheBuilder::eviction_journal_capacity)).
///
/// An eviction evicts from its own `cache = …`, or the installed cache:
/// beside reads that name their cache (`cache = self.cache`), it must name
/// the same one, or [`cache_config`] must give it to both. Without a cache
/// it evicts nothing, and its first call logs a warning naming the
/// function.
pub use cachefw_macros::cache_evict;

/// Write-through: stores an `async fn`'s result under its key, as its
/// [return shape](cacheable#return-shapes) says: `Ok(T)`, `Some(T)`,
/// `Ok(Some(T))` or a plain value is stored; `None` or `Ok(None)` removes
/// the entry of that key (the source has no value any more); an `Err`
/// changes nothing.
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
/// The put replaces any lease on its key: a load that began before it (in
/// this process or another) cannot store its older value afterwards.
///
/// # Arguments
///
/// | argument | meaning |
/// | --- | --- |
/// | `key = "user:<u.id>"` | required, as in [`cacheable`], and `<result>` or `<result.field.path>` for the returned value (see [Keys from the result](#keys-from-the-result)) |
/// | `ttl = "10m"` | as in [`cacheable`], `ttl = <expr>` over `result` included |
/// | `tags = ["user:<user_id>"]` | the stored entry carries these tags, as in [`cacheable`] |
/// | `cache = <expr>` | as in [`cacheable`] |
/// | `condition = <bool expr>` | over the parameters, evaluated before the body; when false this put is skipped |
/// | `unless = <bool expr>` | over `result: &T`; when true the value is not stored (the entry is left as it was) |
/// | `jitter = "10%"` | as in [`cacheable`] |
/// | `shape = "result"` | as in [`cacheable`]: required when the return type is a type parameter |
/// | `crate = my_crate::cachefw` | as in [`cacheable`] |
///
/// # Keys from the result
///
/// `<result>` and `<result.field.path>` in the key name the value the
/// function returns: the `T` inside `Ok`, `Some` or `Ok(Some)`, or the plain
/// value (Spring's `#result`). They are checked at compile time like the
/// other placeholders: a field that does not exist, or a value that is not
/// `Display`, is an error on the key. A write that creates a row often
/// learns its id only from the source:
///
/// ```
/// use cachefw::{cache_put, cacheable};
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, email: String }
/// # #[derive(Debug)] struct DbError;
/// # static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(42);
///
/// #[cache_put(key = "user:<result.id>", ttl = "10m")]
/// async fn create_user(email: String) -> Result<User, DbError> {
///     let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst); // the database's
///     Ok(User { id, email })
/// }
///
/// #[cacheable(key = "user:<id>", ttl = "10m")]
/// async fn get_user(id: u64) -> Result<User, DbError> {
///     Err(DbError) // the source, not called: a hit on what create_user stored
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// # let cache = cachefw::Cache::builder().build().await?;
/// # cachefw::install(cache.clone());
/// let ada = create_user("ada@example.com".into()).await.expect("created");
/// assert_eq!(get_user(ada.id).await.ok(), Some(ada));
/// # Ok(()) }
/// ```
///
/// `<result>` is a compile error where there is no returned value to name:
/// in [`cacheable`], in a [`cache_evict`] with `before = true`, and on a
/// function that returns `()`. With `<result>` in its key, a put whose
/// function returns `None` or `Ok(None)` has no key, so it removes nothing.
///
/// # Stacking
///
/// Several `#[cache_put]` and `#[cache_evict]` may be written on one
/// function, in any mix (Spring's `@Caching`). The outermost expands them
/// all as one: the body runs once; the keys from the parameters are
/// rendered, and each `condition` evaluated, before it; evictions with
/// `before = true` run before it; then every write runs after it, in the
/// order written, each under its own arguments (its cache, key, TTL,
/// `condition`, `unless`), and each put replacing any lease of its key.
/// An `Err` writes nothing (`before = true` evictions excepted).
///
/// ```
/// use cachefw::{cache_evict, cache_put, cacheable};
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, email: String, tenant: String }
/// # #[derive(Debug)] struct DbError;
/// struct NewUser { email: String, tenant: String }
///
/// #[cache_put(key = "user:<result.id>", ttl = "10m")]
/// #[cache_put(key = "user-by-email:<result.email>", ttl = "10m")]
/// #[cache_evict(key = "users:<req.tenant>")]
/// async fn create_user(req: NewUser) -> Result<User, DbError> {
///     Ok(User { id: 7, email: req.email, tenant: req.tenant }) // the id comes from the database
/// }
///
/// #[cacheable(key = "users:<tenant>", ttl = "1m")]
/// async fn list_users(tenant: &str) -> Vec<u64> {
///     vec![]
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().build().await?;
/// cachefw::install(cache.clone());
/// list_users("acme").await;                                   // cached
/// let req = NewUser { email: "ada@example.com".into(), tenant: "acme".into() };
/// create_user(req).await.expect("created");
/// assert!(cache.get::<User>("user:7").await?.is_some());
/// assert!(cache.get::<User>("user-by-email:ada@example.com").await?.is_some());
/// assert!(cache.get::<Vec<u64>>("users:acme").await?.is_none()); // evicted
/// # Ok(()) }
/// ```
///
/// The stack is found by name: `cache_put` and `cache_evict`, written alone
/// or through a path ending in `cachefw::`. An attribute imported under
/// another name expands on its own, around the others. A caller cancelled
/// while the writes run leaves none of them undone: the one under way is
/// kept until Redis confirms it, and those not yet begun are turned into
/// evictions that run in the background.
pub use cachefw_macros::cache_put;

/// Gives every `#[cacheable]`, `#[cache_put]` and `#[cache_evict]` on the
/// methods of an `impl` block a cache and defaults, unless the method's
/// attribute names its own (Spring's `@CacheConfig`).
///
/// Without it, each attribute names its cache itself, and one that forgets
/// (an eviction beside reads with `cache = self.cache`) silently works on
/// another cache: see [Which cache](cacheable#which-cache).
///
/// ```
/// use cachefw::{Cache, cache_config, cache_evict, cache_put, cacheable};
/// # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct User { id: u64, name: String }
/// # #[derive(Debug)] struct DbError;
///
/// struct UserRepo { cache: Cache }
///
/// #[cache_config(cache = self.cache, ttl = "5m")]
/// impl UserRepo {
///     #[cacheable(key = "user:<id>")]                  // self.cache, 5 minutes
///     async fn get(&self, id: u64) -> Result<User, DbError> {
///         Ok(User { id, name: "Ada".into() })
///     }
///
///     #[cache_put(key = "user:<u.id>", ttl = "1h")]    // self.cache, 1 hour: its own ttl wins
///     async fn save(&self, u: User) -> Result<User, DbError> {
///         Ok(u)
///     }
///
///     #[cache_evict(key = "user:<id>")]                // self.cache (an eviction takes no ttl)
///     async fn remove(&self, id: u64) -> Result<(), DbError> {
///         let _ = id;
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let repo = UserRepo { cache: Cache::builder().build().await? };
/// repo.get(1).await.ok();
/// assert!(repo.cache.ttl("user:1").await?.is_some_and(|left| left.as_secs() <= 300));
/// repo.remove(1).await.ok();
/// assert!(repo.cache.get::<User>("user:1").await?.is_none());
/// # Ok(()) }
/// ```
///
/// # Arguments
///
/// | argument | given to | meaning |
/// | --- | --- | --- |
/// | `cache = <expr>` | every attribute | as in [`cacheable`], evaluated in each method (`self.cache` needs a `self`) |
/// | `ttl = "5m"` | `#[cacheable]`, `#[cache_put]` | as in [`cacheable`] |
/// | `jitter = "10%"` | `#[cacheable]`, `#[cache_put]` | as in [`cacheable`] |
/// | `crate = my_crate::cachefw` | every attribute | as in [`cacheable`] |
///
/// At least one is required. Arguments that speak of one method (`key`,
/// `prefix`, `condition`, `unless`, `shape`, `before`, `cache_none`) cannot
/// be defaults, and the freshness options (`refresh_ahead`,
/// `stale_while_revalidate`, `stale_if_error`, `load_timeout`) are defaults
/// of the whole cache, on its [`CacheBuilder`](crate::CacheBuilder): naming
/// one here, an unknown argument, or `#[cache_config]` on anything but an
/// `impl` block is a compile error on that text.
///
/// # How it works
///
/// The compiler expands `#[cache_config]` before the attributes of the
/// methods, so it rewrites them: each attribute gets the defaults it takes
/// and does not name, written after its own arguments, and then expands as
/// if they had been written there. An error in a default (a `cache`
/// expression of the wrong type) is reported on the default. The
/// attributes are found by name, as [stacked ones](cache_put#stacking)
/// are: `cacheable`, `cache_put` and `cache_evict`, alone or through a
/// path ending in `cachefw::`. It works on inherent and trait impls,
/// `#[async_trait]` ones included.
pub use cachefw_macros::cache_config;
