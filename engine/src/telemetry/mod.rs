//! What a run tells the systems that watch it, when it ends: Prometheus metrics
//! ([`metrics`]: a textfile and a Pushgateway push).

pub mod metrics;
