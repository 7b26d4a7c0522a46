//! Multilayer perceptrons stored as safetensors, run on candle.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;

use crate::error::{Error, Result};
use crate::features::FeatureMatrix;
use crate::package::{Activation, ModelPackage};
use crate::runtime::Model;

/// A stack of linear layers, each followed by its activation.
#[derive(Debug)]
pub struct MlpModel {
    name: String,
    layers: Vec<(Linear, Activation)>,
    outputs: usize,
    device: Device,
}

impl MlpModel {
    /// Reads `layers.{i}.weight` / `layers.{i}.bias` from the package's safetensors and checks
    /// every shape against the manifest.
    pub fn try_new(name: &str, package: &ModelPackage, device: &Device) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidWeights {
            name: name.to_string(),
            reason,
        };
        let spec = package
            .manifest
            .mlp
            .as_ref()
            .ok_or_else(|| invalid("the manifest has no [mlp] section".into()))?;
        let bytes = package.artifact(&spec.weights)?;
        let tensors = candle_core::safetensors::load_buffer(bytes, device).map_err(|e| {
            invalid(format!(
                "`{}` is not a readable safetensors file: {e}",
                spec.weights
            ))
        })?;
        let mut layers = Vec::with_capacity(spec.activations.len());
        for (i, activation) in spec.activations.iter().enumerate() {
            let (fan_in, fan_out) = (spec.layers[i], spec.layers[i + 1]);
            let get = |suffix: &str, shape: &[usize]| -> Result<Tensor> {
                let key = format!("layers.{i}.{suffix}");
                let t = tensors.get(&key).ok_or_else(|| {
                    invalid(format!("tensor `{key}` is missing from `{}`", spec.weights))
                })?;
                if t.dims() != shape {
                    return Err(invalid(format!(
                        "tensor `{key}` has shape {:?}, expected {shape:?}",
                        t.dims()
                    )));
                }
                t.to_dtype(DType::F32).map_err(Error::candle(name))
            };
            let weight = get("weight", &[fan_out, fan_in])?;
            let bias = get("bias", &[fan_out])?;
            layers.push((Linear::new(weight, Some(bias)), *activation));
        }
        Ok(Self {
            name: name.to_string(),
            outputs: spec.layers[spec.layers.len() - 1],
            layers,
            device: device.clone(),
        })
    }

    fn forward(&self, x: Tensor) -> candle_core::Result<Tensor> {
        let mut x = x;
        for (linear, activation) in &self.layers {
            x = linear.forward(&x)?;
            x = match activation {
                Activation::Linear => x,
                Activation::Relu => x.relu()?,
                Activation::Sigmoid => candle_nn::ops::sigmoid(&x)?,
                Activation::Tanh => x.tanh()?,
                Activation::Gelu => x.gelu_erf()?,
                Activation::Softmax => candle_nn::ops::softmax_last_dim(&x)?,
            };
        }
        Ok(x)
    }
}

impl Model for MlpModel {
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<f32>> {
        let rows = features.scored_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::from_slice(&features.data, (rows, features.cols), &self.device)
            .map_err(Error::candle(&self.name))?;
        let y = self.forward(x).map_err(Error::candle(&self.name))?;
        y.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(Error::candle(&self.name))
    }

    fn num_outputs(&self) -> usize {
        self.outputs
    }
}
