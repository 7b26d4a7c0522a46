//! # scorch-udfs
//!
//! Everything that turns an Arrow batch into predictions, for the scorch batch scoring engine:
//!
//! - [`package`]: model packages (a `model.toml` manifest beside its artifacts) and their
//!   SHA-256, verified before use;
//! - [`runtime`]: model runtimes: multilayer perceptrons and ONNX graphs on candle (with the
//!   `ai.onnx.ml` operators native), XGBoost and LightGBM tree ensembles evaluated natively, and
//!   BERT-family sentence encoders with their tokenizers;
//! - [`features`]: Arrow columns to feature matrices, applying the input contract (null, NaN,
//!   out-of-range rows are not scored and get `NULL`);
//! - [`unscored`]: the rows each model declined to score, by reason, tallied per run;
//! - [`rejects`]: the rejected rows themselves, with the job's key columns, kept per run;
//! - [`profile`]: reference profiles (`profile.json`) and drift: PSI and KS from bin counts;
//! - [`functions`]: the DataFusion scalar functions (`predict`, `embed`);
//! - [`init`]: manifests inferred from exported models (`scorch model init`);
//! - [`catalog`]: the model catalog that travels with a plan as a config extension, so remote
//!   processes resolve model names the same way;
//! - [`cache`]: the process-wide model cache (one load per package and device per process);
//! - [`kernels`]: the CPU kernels (matrix multiply, fused element-wise functions) and the
//!   thread budget they share with DataFusion's partitions;
//! - [`device`]: CPU or CUDA (the `cuda` feature, off by default, forwarded to candle).
//!
//! This crate knows nothing of jobs, outputs or commits; `scorch-engine` does.
//!
//! ## Example
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use datafusion::prelude::SessionContext;
//! use scorch_udfs::{LocalResolver, ModelCatalog, ModelLoader, ModelRef, DeviceSpec};
//!
//! let loader = ModelLoader::try_new(Arc::new(LocalResolver), DeviceSpec::Cpu)?;
//! let package = loader.fetch("file:///models/churn").await?;
//! package.verify("churn", &package.sha256)?; // pin a known hash in real jobs
//! let mut catalog = ModelCatalog::new();
//! catalog.insert(ModelRef::from_package("churn", &package));
//!
//! let ctx = SessionContext::new();
//! ctx.register_udf(scorch_udfs::functions::predict_udf(loader, Arc::new(catalog)).as_ref().clone());
//! let df = ctx.sql("SELECT predict('churn', 3.0, 70.5) AS p").await?;
//! df.show().await?;
//! # Ok(()) }
//! ```

pub mod cache;
pub mod catalog;
pub mod device;
pub mod error;
pub mod features;
pub mod functions;
pub mod init;
pub mod kernels;
pub mod package;
pub mod profile;
pub mod rejects;
pub mod runtime;
pub mod unscored;

pub use cache::{LocalResolver, ModelLoader, StoreResolver};
pub use catalog::{ModelCatalog, ModelRef, ScorchOptions};
pub use device::DeviceSpec;
pub use error::{Error, Result};
pub use package::{ModelManifest, ModelPackage};
