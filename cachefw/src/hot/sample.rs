//! The read path's half of hot keys: one read in [`SAMPLE`] counted in a
//! map of this process, drained by the flusher (`hot/mod.rs`); and the
//! decaying scores the in-memory backend keeps in the process. A leaf: the
//! cache's shared state holds a [`Hot`] without importing the flusher.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::{CAPACITY, HALF_LIFE_SECS, PENDING_KEYS, RESCALE_AT, SAMPLE};

/// A cache's hot-key bookkeeping.
#[derive(Default)]
pub(crate) struct Hot {
    /// Sampled reads since the last flush, by full key.
    pending: Mutex<HashMap<Box<str>, u32>>,
    /// The scores, for a cache without Redis.
    pub(super) local: Mutex<Local>,
}

thread_local! {
    static DICE: Cell<u32> = const { Cell::new(0x9E37_79B9) };
}

/// Whether this read is one of the sampled: xorshift32, per thread.
#[inline]
pub(super) fn sampled() -> bool {
    DICE.with(|dice| {
        let mut x = dice.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        dice.set(x);
        x & (SAMPLE - 1) == 0
    })
}

impl Hot {
    /// A read of `full` (hit or miss).
    #[inline]
    pub(crate) fn note(&self, full: &str) {
        if sampled() {
            self.count(full);
        }
    }

    #[cold]
    #[inline(never)]
    fn count(&self, full: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = pending.get_mut(full) {
            *count = count.saturating_add(SAMPLE);
        } else if pending.len() < PENDING_KEYS {
            pending.insert(full.into(), SAMPLE);
        }
    }

    /// The counts since the last flush, as rendered keys (the cache's
    /// prefix cut off) and weights.
    pub(super) fn drain(&self, prefix: &str) -> Vec<(String, u32)> {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        pending
            .into_iter()
            .filter_map(|(full, count)| Some((full.strip_prefix(prefix)?.to_owned(), count)))
            .collect()
    }
}

/// Scores kept in the process (in-memory backend), with the same decay.
pub(super) struct Local {
    started: Instant,
    landmark: f64,
    pub(super) scores: HashMap<String, f64>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            landmark: 0.0,
            scores: HashMap::new(),
        }
    }
}

impl Local {
    pub(super) fn add(&mut self, counts: Vec<(String, u32)>) {
        let now = self.started.elapsed().as_secs_f64();
        let mut exponent = (now - self.landmark).max(0.0) / HALF_LIFE_SECS;
        if exponent > RESCALE_AT {
            let factor = (-exponent).exp2();
            self.scores.values_mut().for_each(|score| *score *= factor);
            self.landmark = now;
            exponent = 0.0;
        }
        let scale = exponent.exp2();
        for (key, weight) in counts {
            *self.scores.entry(key).or_default() += f64::from(weight) * scale;
        }
        if self.scores.len() > CAPACITY {
            let mut ranked: Vec<(String, f64)> = self.scores.drain().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(CAPACITY);
            self.scores = ranked.into_iter().collect();
        }
    }

    pub(super) fn top(&self, n: usize) -> Vec<String> {
        let mut ranked: Vec<(&String, &f64)> = self.scores.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        ranked
            .into_iter()
            .take(n)
            .map(|(key, _)| key.clone())
            .collect()
    }
}
