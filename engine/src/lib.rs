//! # scorch-engine
//!
//! Turns a scoring job into a committed prediction table. A job (TOML + SQL, see [`job`]) names
//! its Parquet sources, its models and its output; [`run::run`] binds the job's parameters as
//! typed SQL placeholders, resolves and verifies the models, plans the query on DataFusion with
//! partition, statistics and page-index pruning and filter pushdown on, scores every partition
//! in parallel through `scorch-udfs`' functions, writes the stamped rows under a run-scoped
//! staging prefix, checks the quality gates and commits atomically through [`table::Table`].
//!
//! The `scorch` binary is a thin command line over this library.
//!
//! ## Modules
//! - [`job`]: job files, parameters; [`location`]: URLs and paths;
//! - [`registry`]: object stores by URL, with options and metering ([`metered`]);
//!   [`session`]: DataFusion contexts and sources;
//! - [`scan`]: input fingerprints and pruning estimates; [`progress`]: row counting;
//! - [`run`]: prepare / run / explain / validate; [`checks`]: quality gates;
//! - [`writer`]: parallel staged writes; [`cluster`]: Ballista scheduler, executors, client;
//! - [`table`]: the commit log and protocol; [`manifest`]: run manifests;
//! - [`demo`]: the self-contained demo; [`failpoint`]: crash points for tests;
//!   [`shutdown`]: stopping cleanly on SIGTERM.
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

pub mod allocator;
pub mod checks;
pub mod cluster;
pub mod demo;
pub mod error;
pub mod failpoint;
pub mod job;
pub mod location;
pub mod manifest;
pub mod metered;
pub mod progress;
pub mod registry;
pub mod run;
pub mod scan;
pub mod session;
pub mod shutdown;
pub mod table;
pub mod writer;

pub use error::{Error, ExitCode, Result};
pub use job::JobSpec;
pub use run::RunOptions;
