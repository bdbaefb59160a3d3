//! The process-wide default cache that the macros use.

use arc_swap::ArcSwapOption;

use crate::cache::{Cache, Handle};

static INSTALLED: ArcSwapOption<Handle> = ArcSwapOption::const_empty();

/// Makes `cache` the process-wide default, used by the macros wherever no
/// `cache = …` is given. Installing again replaces the previous default.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachefw::Error> {
/// let cache = cachefw::Cache::builder().namespace("shop").build().await?;
/// cachefw::install(cache.clone());
/// assert_eq!(cachefw::installed().map(|c| c.namespace().to_owned()).as_deref(), Some("shop"));
/// # Ok(()) }
/// ```
pub fn install(cache: Cache) {
    INSTALLED.store(Some(cache.handle().clone()));
}

/// The cache given to [`install`], if any.
pub fn installed() -> Option<Cache> {
    INSTALLED.load_full().map(Cache::from_handle)
}
