//! Process-wide settings and signals: the allocator's settings, stopping cleanly on SIGTERM and
//! SIGINT, and (in test builds) crash points for the commit protocol's tests.

pub mod allocator;
pub mod failpoint;
pub mod shutdown;
