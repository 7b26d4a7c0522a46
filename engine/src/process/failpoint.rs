//! Crash points and rendezvous for testing the commit protocol.
//!
//! Compiled in only with the `failpoints` feature, which the end-to-end tests enable and release
//! builds do not: in a production binary [`hit`] is an empty inline function, so no environment
//! variable can kill or stall a run.
//!
//! - `SCORCH_FAILPOINT=<point>`: at `point` the process kills itself with SIGKILL: no
//!   destructor, no cleanup, exactly like an out-of-memory kill or a lost node. With
//!   `<point>=panic` it panics there instead (to test how a bug is reported).
//! - `SCORCH_RENDEZVOUS=<point>:<folder>:<n>`: at `point` the process waits until `n` processes
//!   have arrived (each leaves a file in `folder`), so that races are run, not hoped for.
//!
//! Points, in the order a run reaches them: `before-write`, `write-batch` (after each batch a
//! writer task writes, on whichever process runs it: a cluster executor too), `staged`,
//! `before-commit`, `committed`, `publish-start`, `publish-first-file`,
//! `publish-before-success`, `published`.

/// The environment variable naming the point to crash at.
pub const ENV: &str = "SCORCH_FAILPOINT";

/// The environment variable naming a point where processes wait for each other.
pub const RENDEZVOUS_ENV: &str = "SCORCH_RENDEZVOUS";

/// Crashes (or waits) if the environment asks for it at `point`.
#[cfg(feature = "failpoints")]
pub fn hit(point: &str) {
    if let Ok(spec) = std::env::var(RENDEZVOUS_ENV) {
        rendezvous(point, &spec);
    }
    match std::env::var(ENV) {
        Ok(v) if v == point => {
            tracing::error!(
                point,
                "failpoint reached: killing this process with SIGKILL"
            );
            kill_self();
        }
        Ok(v) if v.strip_suffix("=panic") == Some(point) => {
            panic!("failpoint {point} asked for a panic")
        }
        _ => {}
    }
}

/// Does nothing: failpoints are compiled into test builds only.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_point: &str) {}

#[cfg(feature = "failpoints")]
fn rendezvous(point: &str, spec: &str) {
    let mut parts = spec.rsplitn(3, ':');
    let (Some(n), Some(folder), Some(at)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if at != point {
        return;
    }
    let n: usize = n.parse().unwrap_or(2);
    let folder = std::path::Path::new(folder);
    let _ = std::fs::write(folder.join(std::process::id().to_string()), point);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let arrived = std::fs::read_dir(folder).map(|d| d.count()).unwrap_or(0);
        if arrived >= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracing::warn!(point, "rendezvous timed out; going on alone");
}

#[cfg(feature = "failpoints")]
#[allow(unsafe_code)]
fn kill_self() -> ! {
    // SAFETY: `getpid` and `kill` have no preconditions; SIGKILL cannot be caught, so the call
    // does not return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL terminates the process")
}
