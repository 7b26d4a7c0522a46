//! Crash points for testing the commit protocol.
//!
//! When the environment variable `SCORCH_FAILPOINT` names a point that a run reaches, the
//! process kills itself with SIGKILL right there: no destructor, no cleanup, exactly like an
//! out-of-memory kill or a lost node. The end-to-end tests use it to prove that a crash at any
//! step leaves the committed table intact. Unset, a failpoint costs one environment lookup.
//!
//! `SCORCH_RENDEZVOUS` makes processes wait for each other at a point instead.
//!
//! Points, in the order a run reaches them: `before-write`, `staged`, `before-commit`,
//! `committed`, `publish-start`, `publish-first-file`, `publish-before-success`, `published`.

/// The environment variable naming the point to crash at.
pub const ENV: &str = "SCORCH_FAILPOINT";

/// Crashes the process if `SCORCH_FAILPOINT` equals `point`.
pub fn hit(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        tracing::error!(
            point,
            "failpoint reached: killing this process with SIGKILL"
        );
        kill_self();
    }
}

#[allow(unsafe_code)]
fn kill_self() -> ! {
    // SAFETY: `getpid` and `kill` have no preconditions; SIGKILL cannot be caught, so the call
    // does not return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL terminates the process")
}
