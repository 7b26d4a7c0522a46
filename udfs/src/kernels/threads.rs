//! The thread budget: how many threads one scoring call may use.
//!
//! DataFusion already scores `target_partitions` partitions at once, one per core by default.
//! A runtime that also spread each batch over every core would multiply threads by partitions
//! and lose to contention (on this project's 2-core reference machine two single-threaded
//! matrix multiplies do about twice the work of one two-threaded multiply). So each call takes a
//! [`Lease`] for the duration of its work: with as many concurrent calls as cores, each gets one
//! thread; a lone call (a single-file input, a small job) gets all of them.
//!
//! The call runs inside [`Lease::install`]: on a rayon pool of exactly its share of threads, so
//! that every parallel loop in it (scorch's kernels, candle's CPU operators, the tokenizer's
//! batch encoding) is bounded by the share, whatever thread count the library would pick itself.
//! Runtimes split their work by [`rayon::current_num_threads`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

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

    /// Runs `work` on a rayon pool of this lease's threads (the global pool when it has that
    /// many): parallel iterators inside it use no more threads than the share. Each call has a
    /// pool of its own for its duration (pools are kept and reused, never shared by two calls at
    /// once: two one-thread calls on one shared one-thread pool would take turns).
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        if rayon::current_num_threads() == self.threads {
            return work();
        }
        match Pool::take(self.threads) {
            Some(pool) => pool.install(work),
            // A pool that cannot start its threads: the work runs here, on the calling thread's
            // pool.
            None => work(),
        }
    }
}

/// Idle pools by thread count.
static IDLE: OnceLock<Mutex<HashMap<usize, Vec<rayon::ThreadPool>>>> = OnceLock::new();

fn idle() -> std::sync::MutexGuard<'static, HashMap<usize, Vec<rayon::ThreadPool>>> {
    IDLE.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A pool of `threads` threads held by one call; back among the idle ones when dropped.
struct Pool {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

impl Pool {
    fn take(threads: usize) -> Option<Self> {
        let pool = match idle().get_mut(&threads).and_then(Vec::pop) {
            Some(pool) => pool,
            None => rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(move |i| format!("scorch-score-{threads}-{i}"))
                .build()
                .ok()?,
        };
        Some(Self {
            pool: Some(pool),
            threads,
        })
    }

    fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            idle().entry(self.threads).or_default().push(pool);
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
    }

    #[test]
    fn concurrent_calls_run_at_once_on_pools_of_their_own() {
        use std::sync::mpsc;
        use std::time::Duration;
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        // One thread each: the size a pool shared between them would serialise them at.
        let cores = 2;
        let (a, b) = (
            Lease::take_from(&CALLS, cores),
            Lease::take_from(&CALLS, cores),
        );
        // Each call waits, inside its pool, for the other to be inside its own: two calls taking
        // turns on one shared pool would time out.
        let (to_a, from_b) = mpsc::channel();
        let (to_b, from_a) = mpsc::channel();
        let meet = |lease: &Lease, tell: mpsc::Sender<()>, hear: mpsc::Receiver<()>| {
            lease.install(move || {
                tell.send(()).expect("the other call listens");
                hear.recv_timeout(Duration::from_secs(10)).is_ok()
            })
        };
        std::thread::scope(|s| {
            let first = s.spawn(|| meet(&a, to_b, from_b));
            let second = s.spawn(|| meet(&b, to_a, from_a));
            assert!(first.join().expect("runs") && second.join().expect("runs"));
        });
    }

    #[test]
    fn work_inside_a_lease_runs_on_its_share_of_threads() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        // Neither share equals the global pool, so both run on pools of their own.
        let cores = 2 * (rayon::current_num_threads() + 1);
        let alone = Lease::take_from(&CALLS, cores);
        assert_eq!(alone.install(rayon::current_num_threads), cores);
        let second = Lease::take_from(&CALLS, cores);
        assert_eq!(second.install(rayon::current_num_threads), cores / 2);
        // Parallel loops inside stay on the share's threads.
        let names: std::collections::BTreeSet<String> = second.install(|| {
            use rayon::prelude::*;
            (0..64)
                .into_par_iter()
                .map(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    std::thread::current().name().unwrap_or("").to_string()
                })
                .collect()
        });
        assert!(names.len() <= cores / 2, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("scorch-score-")));
    }
}
