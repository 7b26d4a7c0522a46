//! Multilayer perceptrons stored as safetensors.
//!
//! On CPU the network runs on scorch's own kernel: rows go through all layers in blocks of
//! [`BLOCK_ROWS`] that stay in cache, each layer one matrix multiply onto its broadcast bias with
//! the activation applied in the same pass. On CUDA it runs on candle.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::FeatureMatrix;
use crate::kernels::dense::Dense;
use crate::kernels::math;
use crate::package::{Activation, ModelPackage, OutputSpec};
use crate::runtime::{Model, OutputColumn, split_outputs};

/// Rows that go through the network together on CPU: a 256-wide hidden layer of this many rows
/// is 512 KiB, well inside a core's L2 cache.
pub const BLOCK_ROWS: usize = 512;

/// A layer and its activation, for the CPU kernel.
#[derive(Debug)]
struct Layer {
    dense: Dense,
    activation: Activation,
}

#[derive(Debug)]
enum Backend {
    Cpu(Vec<Layer>),
    Candle(Vec<(Linear, Activation)>, Device),
}

/// A stack of linear layers, each followed by its activation.
#[derive(Debug)]
pub struct MlpModel {
    name: String,
    backend: Backend,
    outputs: Vec<OutputSpec>,
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
        // Weights are read on the CPU and moved to the model's device afterwards.
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| {
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
            let values = |t: Tensor| {
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(Error::candle(name))
            };
            layers.push(Layer {
                dense: Dense::new(values(weight)?, values(bias)?, fan_in, fan_out),
                activation: *activation,
            });
        }
        let backend = if device.is_cpu() {
            Backend::Cpu(layers)
        } else {
            let on_device = layers
                .into_iter()
                .map(|l| {
                    let Dense {
                        weight,
                        bias,
                        fan_in,
                        fan_out,
                    } = l.dense;
                    let weight = Tensor::from_vec(weight, (fan_out, fan_in), device)?;
                    let bias = Tensor::from_vec(bias, fan_out, device)?;
                    Ok((Linear::new(weight, Some(bias)), l.activation))
                })
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(Error::candle(name))?;
            Backend::Candle(on_device, device.clone())
        };
        Ok(Self {
            name: name.to_string(),
            outputs: package.manifest.outputs.clone(),
            backend,
        })
    }
}

/// Runs `rows` rows of `input` (row-major, `layers[0].fan_in` wide) through the network into
/// `out` (row-major, the last layer's `fan_out` wide), a block of rows at a time.
fn forward_cpu(layers: &[Layer], input: &[f32], out: &mut [f32]) {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return;
    };
    let (in_width, out_width) = (first.dense.fan_in, last.dense.fan_out);
    let widest = layers.iter().map(|l| l.dense.fan_out).max().unwrap_or(0);
    let scratch = || {
        (
            vec![0f32; BLOCK_ROWS * widest],
            vec![0f32; BLOCK_ROWS * widest],
        )
    };
    if rayon::current_num_threads() > 1 {
        input
            .par_chunks(BLOCK_ROWS * in_width)
            .zip(out.par_chunks_mut(BLOCK_ROWS * out_width))
            .for_each_init(scratch, |(a, b), (x, y)| forward_block(layers, x, y, a, b));
    } else {
        let (mut a, mut b) = scratch();
        input
            .chunks(BLOCK_ROWS * in_width)
            .zip(out.chunks_mut(BLOCK_ROWS * out_width))
            .for_each(|(x, y)| forward_block(layers, x, y, &mut a, &mut b));
    }
}

/// One block of rows through every layer; `a` and `b` hold the hidden activations in turn.
fn forward_block(
    layers: &[Layer],
    input: &[f32],
    out: &mut [f32],
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    let rows = input.len() / layers[0].dense.fan_in;
    for (i, layer) in layers.iter().enumerate() {
        let width = layer.dense.fan_out;
        let src: &[f32] = if i == 0 {
            input
        } else {
            &a[..rows * layer.dense.fan_in]
        };
        let dst: &mut [f32] = if i + 1 == layers.len() {
            &mut *out
        } else {
            &mut b[..rows * width]
        };
        layer.dense.forward(src, dst);
        activate(layer.activation, dst, width);
        std::mem::swap(a, b);
    }
}

/// Applies an activation in place to rows `width` wide.
fn activate(activation: Activation, values: &mut [f32], width: usize) {
    match activation {
        Activation::Linear => {}
        Activation::Relu => math::map_in_place::<math::Relu>(values),
        Activation::Sigmoid => math::map_in_place::<math::Sigmoid>(values),
        Activation::Tanh => math::map_in_place::<math::Tanh>(values),
        Activation::Gelu => math::map_in_place::<math::Gelu>(values),
        Activation::Softmax => math::softmax_rows(values, width),
    }
}

fn forward_candle(layers: &[(Linear, Activation)], x: Tensor) -> candle_core::Result<Tensor> {
    let mut x = x;
    for (linear, activation) in layers {
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

impl Model for MlpModel {
    fn predict(&self, features: &FeatureMatrix) -> Result<Vec<OutputColumn>> {
        let rows = features.scored_rows();
        if rows == 0 {
            return split_outputs(&self.name, &[], 0, &self.outputs);
        }
        let data = features.numeric.to_f32();
        let values = match &self.backend {
            Backend::Cpu(layers) => {
                let width = layers.last().map_or(0, |l| l.dense.fan_out);
                let mut out = vec![0f32; rows * width];
                forward_cpu(layers, &data, &mut out);
                out
            }
            Backend::Candle(layers, device) => {
                let x = Tensor::from_slice(&data, (rows, features.cols), device)
                    .map_err(Error::candle(&self.name))?;
                forward_candle(layers, x)
                    .and_then(|y| y.flatten_all())
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(Error::candle(&self.name))?
            }
        };
        split_outputs(&self.name, &values, rows, &self.outputs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use bytes::Bytes;

    use super::*;
    use crate::device;
    use crate::features::Numeric;
    use crate::package::{MANIFEST_FILE, ModelPackage};

    /// A 2-3-2 network (ReLU, softmax) with weights chosen by hand.
    fn package() -> ModelPackage {
        let tensors: HashMap<String, Tensor> = HashMap::from([
            (
                "layers.0.weight".to_string(),
                Tensor::new(&[[1.0f32, -1.0], [0.5, 0.5], [-2.0, 1.0]], &Device::Cpu)
                    .expect("tensor"),
            ),
            (
                "layers.0.bias".to_string(),
                Tensor::new(&[0.0f32, 1.0, 0.5], &Device::Cpu).expect("tensor"),
            ),
            (
                "layers.1.weight".to_string(),
                Tensor::new(&[[1.0f32, 0.0, -1.0], [0.0, 2.0, 1.0]], &Device::Cpu).expect("tensor"),
            ),
            (
                "layers.1.bias".to_string(),
                Tensor::new(&[0.25f32, -0.25], &Device::Cpu).expect("tensor"),
            ),
        ]);
        let dir = tempfile::tempdir().expect("temp");
        let weights = dir.path().join("w.safetensors");
        candle_core::safetensors::save(&tensors, &weights).expect("save");
        let manifest = r#"
name = "tiny"
version = "0.1.0"
format = "mlp"
[[inputs]]
name = "a"
type = "float32"
[[inputs]]
name = "b"
type = "float32"
[[outputs]]
name = "p"
type = "float32"
size = 2
[mlp]
weights = "w.safetensors"
layers = [2, 3, 2]
activations = ["relu", "softmax"]
"#;
        let files = BTreeMap::from([
            (MANIFEST_FILE.to_string(), Bytes::from(manifest)),
            (
                "w.safetensors".to_string(),
                Bytes::from(std::fs::read(&weights).expect("read")),
            ),
        ]);
        ModelPackage::try_from_files("mem://tiny", files).expect("valid package")
    }

    fn reference(a: f32, b: f32) -> [f32; 2] {
        let h = [
            (a - b).max(0.0),
            (0.5 * a + 0.5 * b + 1.0).max(0.0),
            (-2.0 * a + b + 0.5).max(0.0),
        ];
        let z = [h[0] - h[2] + 0.25, 2.0 * h[1] + h[2] - 0.25];
        let m = z[0].max(z[1]);
        let e = [(z[0] - m).exp(), (z[1] - m).exp()];
        [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])]
    }

    #[test]
    fn forward_matches_the_reference_on_every_device() {
        let package = package();
        let rows = [[0.0f32, 0.0], [1.0, -1.0], [-0.5, 2.0], [3.0, 0.25]];
        for spec in device::available() {
            let device = spec.try_device().expect("listed devices work");
            let model = MlpModel::try_new("tiny", &package, &device).expect("loads");
            let features =
                FeatureMatrix::from_rows(Numeric::F32(rows.iter().flatten().copied().collect()), 2);
            let out = model.predict(&features).expect("scores");
            let OutputColumn::F32(values) = &out[0] else {
                panic!("float output")
            };
            for (r, row) in rows.iter().enumerate() {
                let want = reference(row[0], row[1]);
                for j in 0..2 {
                    assert!(
                        (values[r * 2 + j] - want[j]).abs() < 1e-6,
                        "{spec}: row {r}: {values:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
