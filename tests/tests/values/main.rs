//! Values read back from Redis that this cache did not write as they are:
//! garbage of 100 MiB (`hostile_values.rs`), entries of a type that changed
//! in a deploy, and bytes that claim far more than they hold
//! (`schema_drift.rs`). Each read is bounded in what it allocates.
//!
//! This binary installs an allocator that records the largest allocation
//! and the peak of live heap bytes while a read is watched. It sees every
//! thread: each test here holds [`SERIAL`] for its whole run, and a test
//! joins this binary only if it does too.
//!
//! One test binary per area (`tests/README.md`): a new file of this area
//! joins with one `mod` line below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

mod compression;
mod hostile_values;
mod schema_drift;

/// Records, while `WATCHING`, the largest allocation and the peak of the
/// bytes allocated and not yet freed since watching began.
struct Watching;

static WATCHING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grew(by: usize) {
    if WATCHING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(by, Ordering::Relaxed);
        let live = LIVE.fetch_add(by as i64, Ordering::Relaxed) + by as i64;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

fn shrank(by: usize) {
    if WATCHING.load(Ordering::Relaxed) {
        LIVE.fetch_sub(by as i64, Ordering::Relaxed);
    }
}

// SAFETY: defers to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        shrank(layout.size());
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Watching = Watching;

/// Held by each test of this binary for its whole run: another test's
/// allocations would count in this one's peak.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `read` while watching the heap: its result, the largest single
/// allocation and the peak of live bytes it made.
pub async fn watched<T>(read: impl Future<Output = T>) -> (T, usize, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    LIVE.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    let result = read.await;
    WATCHING.store(false, Ordering::SeqCst);
    let peak = usize::try_from(PEAK.load(Ordering::SeqCst)).unwrap_or(0);
    (result, LARGEST.load(Ordering::SeqCst), peak)
}
