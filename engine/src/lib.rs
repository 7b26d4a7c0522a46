//! # scorch-engine
//!
//! Turns a scoring job into a committed prediction table. A job (TOML + SQL, see [`job`]) names
//! its Parquet sources, its models and its output; [`run::run`] binds the job's parameters as
//! typed SQL placeholders, resolves and verifies the models, plans the query ([`plan`]) on DataFusion with
//! partition, statistics and page-index pruning and filter pushdown on, scores every partition
//! in parallel through `scorch-udfs`' functions, writes the stamped rows under a run-scoped
//! staging prefix, checks the quality gates and commits atomically through [`table::Table`].
//!
//! The `scorch` binary is a thin command line over this library.
//!
//! ## Modules, by concern
//! - [`job`]: job files and parameters;
//! - [`store`]: object stores by URL, their options, metering, locations;
//! - [`plan`]: sessions, sources, the query, models, scans, `explain` and `validate`;
//! - [`run`]: executing a planned job: stamps, quality gates, manifests, progress;
//! - [`table`]: the output table: staged writes, the commit log and protocol, schema, `gc`;
//! - [`cluster`]: Ballista scheduler, executors, client and codecs;
//! - [`package`]: `scorch model …` commands over model packages;
//! - [`registry`]: the model registry on an object store (versions, aliases);
//! - [`demo`]: the self-contained demo (data, training, job);
//! - [`process`]: allocator settings, signals, failpoints;
//! - [`telemetry`]: what a run reports when it ends (Prometheus metrics).
//!
//! ## Example
//!
//! ```no_run
//! # async fn example() -> scorch_engine::Result<()> {
//! use std::path::Path;
//! use scorch_engine::{JobSpec, RunOptions};
//!
//! let job = JobSpec::try_from_file(Path::new("jobs/churn.toml"))?;
//! let options = RunOptions {
//!     params: vec![("ds".into(), "2026-11-27".into())],
//!     ..Default::default()
//! };
//! let report = scorch_engine::run::run(&job, &options).await?;
//! println!("{} rows written to {}", report.manifest.rows.written, report.manifest.output.url);
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod demo;
pub mod error;
pub mod job;
pub mod package;
pub mod plan;
pub mod process;
pub mod registry;
pub mod run;
pub mod store;
pub mod table;
pub mod telemetry;

pub use error::{Error, ExitCode, Result};
pub use job::JobSpec;
pub use plan::RunOptions;
