//! Model runtimes: turn a [`FeatureMatrix`] into predictions.
//!
//! Every runtime implements [`Model`]; [`try_load`] picks the runtime a package's manifest asks
//! for. Runtimes are loaded once per process and package and shared by all partitions through
//! the [`crate::cache`].

pub mod compiled;
mod embedder;
pub mod encoder;
mod lightgbm;
mod mlp;
mod onnx;
mod onnx_ml;
pub mod trees;
mod xgboost;

use std::fmt::Debug;

use candle_core::Device;

pub use embedder::EmbedderModel;
pub use lightgbm::parse as trees_from_lightgbm;
pub use mlp::MlpModel;
pub use onnx::OnnxModel;
pub use trees::TreeModel;

use crate::error::{Error, Result};
use crate::features::{FeatureMatrix, MissingPolicy, Precision};
use crate::package::{ModelFormat, ModelPackage, OutputSpec};

/// The values of one declared output for the scored rows: `rows * width` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputColumn {
    /// Floats (scalars or vectors).
    F32(Vec<f32>),
    /// Integer labels.
    I64(Vec<i64>),
    /// String labels.
    Str(Vec<String>),
}

impl OutputColumn {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            OutputColumn::F32(v) => v.len(),
            OutputColumn::I64(v) => v.len(),
            OutputColumn::Str(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded model, ready to score.
pub trait Model: Send + Sync + Debug {
    /// Scores the rows of `features`, returning one column per declared output.
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<OutputColumn>>;

    /// The precision the model wants its numeric features in.
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// What to do with rows whose numeric features are missing.
    fn missing(&self) -> MissingPolicy {
        MissingPolicy::Reject
    }
}

/// Loads the runtime a package's manifest asks for. `name` is the model's name in SQL.
pub fn try_load(name: &str, package: &ModelPackage, device: &Device) -> Result<Box<dyn Model>> {
    Ok(match package.manifest.format {
        ModelFormat::Mlp => Box::new(MlpModel::try_new(name, package, device)?),
        ModelFormat::Xgboost => Box::new(xgboost::load(name, package)?),
        ModelFormat::Lightgbm => Box::new(lightgbm::load(name, package)?),
        ModelFormat::Onnx => Box::new(OnnxModel::try_new(name, package, device)?),
        ModelFormat::Embedder => Box::new(EmbedderModel::try_new(name, package, device)?),
    })
}

/// Splits a row-major `rows x total` matrix into the declared outputs, each taking `width()`
/// consecutive columns, in order.
pub fn split_outputs(
    name: &str,
    values: &[f32],
    rows: usize,
    outputs: &[OutputSpec],
) -> Result<Vec<OutputColumn>> {
    let total: usize = outputs.iter().map(OutputSpec::width).sum();
    if values.len() != rows * total {
        return Err(Error::InvalidWeights {
            name: name.to_string(),
            reason: format!(
                "the model produced {} values for {rows} rows of {total} outputs",
                values.len()
            ),
        });
    }
    let mut start = 0;
    Ok(outputs
        .iter()
        .map(|o| {
            let w = o.width();
            let mut column = Vec::with_capacity(rows * w);
            for r in 0..rows {
                column.extend_from_slice(&values[r * total + start..r * total + start + w]);
            }
            start += w;
            OutputColumn::F32(column)
        })
        .collect())
}
