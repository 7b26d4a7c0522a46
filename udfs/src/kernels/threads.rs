//! The thread budget: how many threads one scoring call may use.
//!
//! DataFusion already scores `target_partitions` partitions at once, one per core by default.
//! A runtime that also spread each batch over every core would multiply threads by partitions
//! and lose to contention (on this project's 2-core reference machine two single-threaded
//! matrix multiplies do about twice the work of one two-threaded multiply). So each call takes a
//! [`Lease`] for the duration of its work: with as many concurrent calls as cores, each gets one
//! thread; a lone call (a single-file input, a small job) gets all of them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Cores available to scoring: `SCORCH_THREADS` when set, else the process's available
/// parallelism.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::env::var("SCORCH_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// A share of the cores, held while one scoring call runs.
#[derive(Debug)]
pub struct Lease {
    threads: usize,
}

impl Lease {
    /// Takes a share: the cores divided by the calls running now, at least one.
    pub fn take() -> Self {
        let active = ACTIVE.fetch_add(1, Ordering::AcqRel) + 1;
        Self {
            threads: (cores() / active).max(1),
        }
    }

    /// Threads this call may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The share as `gemm`'s parallelism setting.
    pub fn parallelism(&self) -> ::gemm::Parallelism {
        if self.threads > 1 {
            ::gemm::Parallelism::Rayon(self.threads)
        } else {
            ::gemm::Parallelism::None
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_calls_split_the_cores() {
        let first = Lease::take();
        let second = Lease::take();
        // Whatever other tests hold, the second lease sees at least two calls running.
        assert!(first.threads() >= 1);
        assert!(second.threads() <= (cores() / 2).max(1));
    }
}
