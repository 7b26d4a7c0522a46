//! What a run tells the systems and people that watch it: Prometheus metrics ([`metrics`]: a
//! textfile and a Pushgateway push, when the run ends) and a self-contained HTML page about a
//! run ([`report`]).

pub mod metrics;
pub mod report;
