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
    active: &'static AtomicUsize,
}

/// The share of `cores` one of `active` concurrent calls gets: at least one thread.
fn share(cores: usize, active: usize) -> usize {
    (cores / active.max(1)).max(1)
}

impl Lease {
    /// Takes a share: the cores divided by the calls running now, at least one.
    pub fn take() -> Self {
        Self::take_from(&ACTIVE, cores())
    }

    fn take_from(active: &'static AtomicUsize, cores: usize) -> Self {
        let now = active.fetch_add(1, Ordering::AcqRel) + 1;
        Self {
            threads: share(cores, now),
            active,
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
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_the_cores_between_concurrent_calls() {
        assert_eq!(share(2, 1), 2, "a lone call gets every core");
        assert_eq!(share(2, 2), 1);
        assert_eq!(share(2, 3), 1, "never zero");
        assert_eq!(share(8, 3), 2);
        assert_eq!(share(16, 4), 4);
    }

    #[test]
    fn leases_count_while_held() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let first = Lease::take_from(&CALLS, 4);
        assert_eq!(first.threads(), 4);
        let second = Lease::take_from(&CALLS, 4);
        assert_eq!(second.threads(), 2);
        drop(first);
        drop(second);
        assert_eq!(CALLS.load(Ordering::Acquire), 0, "released on drop");
        let third = Lease::take_from(&CALLS, 4);
        assert_eq!(
            third.threads(),
            4,
            "a call after the others ended gets every core"
        );
        assert!(matches!(third.parallelism(), ::gemm::Parallelism::Rayon(4)));
    }
}
