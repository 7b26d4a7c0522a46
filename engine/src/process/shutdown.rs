//! Graceful stop on SIGTERM (Kubernetes, systemd, Airflow task timeouts) and SIGINT (Ctrl-C).
//!
//! A run that is still scanning, scoring or writing staged files stops at once: its writes are
//! cancelled, its multipart uploads aborted and its staging files removed, and `scorch` exits
//! with 143 (SIGTERM) or 130 (SIGINT). A run that has reached the commit point finishes
//! committing and publishing first (a few requests), so a signal never leaves a committed but
//! unpublished version behind.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::Notify;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static NOTIFY: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Starts listening for SIGTERM and SIGINT. Call once, inside the runtime.
pub fn install() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, number) in [
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::interrupt(), libc::SIGINT),
        ] {
            match signal(kind) {
                Ok(mut stream) => {
                    tokio::spawn(async move {
                        if stream.recv().await.is_some() {
                            tracing::warn!(signal = number, "stop requested: cancelling the run");
                            SIGNAL.store(number, Ordering::SeqCst);
                            NOTIFY.notify_waiters();
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for signal {number}"),
            }
        }
    }
}

/// The signal that asked the process to stop, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Resolves when a stop is requested.
pub async fn stop_requested() -> i32 {
    loop {
        let notified = NOTIFY.notified();
        if let Some(signal) = requested() {
            return signal;
        }
        notified.await;
    }
}
