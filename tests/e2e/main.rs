//! End-to-end tests: they drive the `scorch` binary as a scheduler or a user would.

mod support;

mod airflow;
mod backfill;
mod cluster;
mod commit;
mod delta;
mod deploy;
mod drift;
mod errors;
mod explain;
mod formats;
mod lineage;
mod metrics;
mod mlflow;
mod readers;
mod registry;
mod rejects;
mod report;
mod safety;
mod scoring;
mod servers;
mod shadow;
mod stores;
mod wire;
