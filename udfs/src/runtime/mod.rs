//! Model runtimes: turn a [`FeatureMatrix`] into predictions.
//!
//! Every runtime implements [`Model`]; [`try_load`] picks the runtime a package's manifest asks
//! for. Runtimes hold their weights on one candle [`Device`] and are shared by all partitions of a
//! process through the [`crate::cache`].

mod mlp;

use std::fmt::Debug;

use candle_core::Device;

pub use mlp::MlpModel;

use crate::error::Result;
use crate::features::FeatureMatrix;
use crate::package::{ModelFormat, ModelPackage};

/// A loaded model, ready to score.
pub trait Model: Send + Sync + Debug {
    /// Scores the rows of `features`, returning `features.scored_rows() * self.num_outputs()`
    /// values in row-major order.
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<f32>>;

    /// Number of values per row.
    fn num_outputs(&self) -> usize;
}

/// Loads the runtime a package's manifest asks for. `name` is the model's name in SQL.
pub fn try_load(name: &str, package: &ModelPackage, device: &Device) -> Result<Box<dyn Model>> {
    match package.manifest.format {
        ModelFormat::Mlp => Ok(Box::new(MlpModel::try_new(name, package, device)?)),
    }
}
