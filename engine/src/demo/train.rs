//! Training the demo's model: a 12-32-16-1 perceptron (ReLU, ReLU, sigmoid) fitted with AdamW on
//! standardised features, in plain Rust.
//!
//! Every sum runs in one fixed order with IEEE single precision and no fused multiply-add, and
//! the sigmoid uses the demo's own `exp`, so the weights — and the package hash — are the same
//! on every CPU. (A BLAS or SIMD kernel picks its summation order by instruction set; that is why
//! the demo does not train on one.)

use std::fs;
use std::path::Path;

use candle_core::{Device, Tensor};
use scorch_udfs::package::{
    Activation, InputSpec, MlpSpec, ModelFormat, ModelManifest, OutputSpec,
};

use super::FEATURES;
use super::data::{Rng, exp};
use crate::error::{Error, Result};

/// Layer widths.
pub const WIDTHS: [usize; 4] = [12, 32, 16, 1];

/// One dense layer, weights stored input-major (`w[i * fan_out + j]` links input `i` to output
/// `j`), so that the inner loops run over outputs with independent accumulators.
#[derive(Debug, Clone)]
struct Layer {
    w: Vec<f32>,
    b: Vec<f32>,
    fan_in: usize,
    fan_out: usize,
}

/// The trained network, and the standardisation it was trained on.
#[derive(Debug, Clone)]
pub struct Trained {
    layers: Vec<Layer>,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// Rows trained on.
    pub rows: usize,
}

fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + exp(-f64::from(x)))) as f32
}

impl Trained {
    /// The logit of one standardised row; `acts` receives every layer's output (after ReLU).
    fn forward(layers: &[Layer], x: &[f32], acts: &mut [Vec<f32>]) -> f32 {
        acts[0].copy_from_slice(x);
        for (l, layer) in layers.iter().enumerate() {
            let (input, output) = acts.split_at_mut(l + 1);
            let (input, h) = (&input[l], &mut output[0]);
            h.copy_from_slice(&layer.b);
            for (i, xi) in input.iter().enumerate() {
                let row = &layer.w[i * layer.fan_out..(i + 1) * layer.fan_out];
                for (hj, wij) in h.iter_mut().zip(row) {
                    *hj += wij * xi;
                }
            }
            if l + 1 < layers.len() {
                h.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        acts[layers.len()][0]
    }

    /// Churn probabilities of raw (not standardised) rows.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Vec<f32> {
        let mut acts = activations();
        rows.iter()
            .map(|r| {
                let x = standardise(r, &self.mean, &self.std);
                sigmoid(Self::forward(&self.layers, &x, &mut acts))
            })
            .collect()
    }
}

fn activations() -> Vec<Vec<f32>> {
    WIDTHS.iter().map(|w| vec![0.0; *w]).collect()
}

fn standardise(row: &[f32], mean: &[f64], std: &[f64]) -> Vec<f32> {
    row.iter()
        .enumerate()
        .map(|(j, v)| ((f64::from(*v) - mean[j]) / std[j]) as f32)
        .collect()
}

/// Adam's moments of one parameter vector.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Trains on `rows` (features, label) for `epochs` passes in shuffled batches of 512.
pub fn train(rows: &[(Vec<f32>, bool)], epochs: usize, seed: u64) -> Result<Trained> {
    let n = rows.len();
    if n == 0 {
        return Err(Error::Training("no complete rows to train on".into()));
    }
    let d = FEATURES.len();
    let mut mean = vec![0f64; d];
    let mut var = vec![0f64; d];
    for (r, _) in rows {
        for (j, v) in r.iter().enumerate() {
            mean[j] += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    for (r, _) in rows {
        for (j, v) in r.iter().enumerate() {
            var[j] += (f64::from(*v) - mean[j]).powi(2);
        }
    }
    let std: Vec<f64> = var
        .iter()
        .map(|v| (v / n as f64).sqrt().max(1e-6))
        .collect();
    let x: Vec<Vec<f32>> = rows
        .iter()
        .map(|(r, _)| standardise(r, &mean, &std))
        .collect();

    let mut rng = Rng(seed ^ 0x5EED);
    let mut layers: Vec<Layer> = WIDTHS
        .windows(2)
        .map(|w| {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = (6.0 / fan_in as f64).sqrt();
            Layer {
                w: (0..fan_in * fan_out)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect(),
                b: vec![0.0; fan_out],
                fan_in,
                fan_out,
            }
        })
        .collect();
    let zeros = |len: usize| Moments {
        m: vec![0.0; len],
        v: vec![0.0; len],
    };
    let mut moments: Vec<(Moments, Moments)> = layers
        .iter()
        .map(|l| (zeros(l.w.len()), zeros(l.b.len())))
        .collect();
    let (lr, weight_decay, beta1, beta2, eps) = (0.005f32, 1e-4f32, 0.9f32, 0.999f32, 1e-8f32);
    let (mut beta1_t, mut beta2_t) = (1.0f32, 1.0f32);

    let mut grads: Vec<(Vec<f32>, Vec<f32>)> = layers
        .iter()
        .map(|l| (vec![0.0; l.w.len()], vec![0.0; l.b.len()]))
        .collect();
    let mut acts = activations();
    let mut deltas: Vec<Vec<f32>> = WIDTHS[1..].iter().map(|w| vec![0.0; *w]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for batch in order.chunks(512) {
            for (gw, gb) in &mut grads {
                gw.iter_mut().for_each(|g| *g = 0.0);
                gb.iter_mut().for_each(|g| *g = 0.0);
            }
            for &row in batch {
                let logit = Trained::forward(&layers, &x[row], &mut acts);
                let label = if rows[row].1 { 1.0 } else { 0.0 };
                // d(binary cross-entropy)/d(logit), averaged over the batch.
                let last = deltas.len() - 1;
                deltas[last][0] = (sigmoid(logit) - label) / batch.len() as f32;
                for l in (0..layers.len()).rev() {
                    let layer = &layers[l];
                    let (gw, gb) = &mut grads[l];
                    let input = &acts[l];
                    for (i, xi) in input.iter().enumerate() {
                        let row = &mut gw[i * layer.fan_out..(i + 1) * layer.fan_out];
                        for (g, dj) in row.iter_mut().zip(&deltas[l]) {
                            *g += xi * dj;
                        }
                    }
                    for (g, dj) in gb.iter_mut().zip(&deltas[l]) {
                        *g += dj;
                    }
                    if l > 0 {
                        let (before, after) = deltas.split_at_mut(l);
                        let (previous, current) = (&mut before[l - 1], &after[0]);
                        for (i, p) in previous.iter_mut().enumerate() {
                            let row = &layer.w[i * layer.fan_out..(i + 1) * layer.fan_out];
                            let mut sum = 0.0f32;
                            for (wij, dj) in row.iter().zip(current) {
                                sum += wij * dj;
                            }
                            // ReLU: no gradient where the unit was off.
                            *p = if input[i] > 0.0 { sum } else { 0.0 };
                        }
                    }
                }
            }
            beta1_t *= beta1;
            beta2_t *= beta2;
            for ((layer, (gw, gb)), (mw, mb)) in layers.iter_mut().zip(&grads).zip(&mut moments) {
                for (params, g, mom, decay) in [
                    (&mut layer.w, gw, mw, weight_decay),
                    (&mut layer.b, gb, mb, 0.0),
                ] {
                    for k in 0..params.len() {
                        mom.m[k] = beta1 * mom.m[k] + (1.0 - beta1) * g[k];
                        mom.v[k] = beta2 * mom.v[k] + (1.0 - beta2) * g[k] * g[k];
                        let m_hat = mom.m[k] / (1.0 - beta1_t);
                        let v_hat = mom.v[k] / (1.0 - beta2_t);
                        params[k] -= lr * (m_hat / (v_hat.sqrt() + eps) + decay * params[k]);
                    }
                }
            }
        }
    }
    Ok(Trained {
        layers,
        mean,
        std,
        rows: n,
    })
}

/// Writes the package: safetensors weights as `torch.nn.Linear` stores them (`[out, in]`), with
/// the standardisation folded into the first layer so the package scores raw features, and the
/// manifest with the input contract.
pub fn write_package(dir: &Path, trained: &Trained) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let candle = |e: candle_core::Error| Error::Training(e.to_string());
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tensors = std::collections::HashMap::new();
    for (l, layer) in trained.layers.iter().enumerate() {
        // Input-major to output-major.
        let mut w = vec![0f32; layer.w.len()];
        let mut b = layer.b.clone();
        for i in 0..layer.fan_in {
            for j in 0..layer.fan_out {
                w[j * layer.fan_in + i] = layer.w[i * layer.fan_out + j];
            }
        }
        if l == 0 {
            // (x - mean) / std folded in: W' = W / std, b' = b - W' · mean.
            for j in 0..layer.fan_out {
                let mut shift = 0f64;
                for i in 0..layer.fan_in {
                    let scaled = (f64::from(w[j * layer.fan_in + i]) / trained.std[i]) as f32;
                    w[j * layer.fan_in + i] = scaled;
                    shift += f64::from(scaled) * trained.mean[i];
                }
                b[j] = (f64::from(b[j]) - shift) as f32;
            }
        }
        tensors.insert(
            format!("layers.{l}.weight"),
            Tensor::from_vec(w, (layer.fan_out, layer.fan_in), &Device::Cpu).map_err(candle)?,
        );
        tensors.insert(
            format!("layers.{l}.bias"),
            Tensor::from_vec(b, layer.fan_out, &Device::Cpu).map_err(candle)?,
        );
    }
    let weights = dir.join("weights.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(candle)?;
    let contract = |name: &str| -> (Option<f64>, Option<f64>) {
        match name {
            "age" => (Some(0.0), Some(120.0)),
            "discount_pct" => (Some(0.0), Some(100.0)),
            "is_autopay" => (Some(0.0), Some(1.0)),
            _ => (Some(0.0), None),
        }
    };
    let mut manifest = ModelManifest::new("churn", semver::Version::new(1, 0, 0), ModelFormat::Mlp);
    manifest.description =
        Some("Probability that a customer churns within 30 days (scorch demo).".into());
    manifest.inputs = FEATURES
        .iter()
        .map(|f| {
            let (min, max) = contract(f);
            InputSpec {
                min,
                max,
                ..InputSpec::float32(f)
            }
        })
        .collect();
    manifest.outputs = vec![OutputSpec::float32("churn_probability")];
    manifest.mlp = Some(MlpSpec {
        weights: "weights.safetensors".into(),
        layers: WIDTHS.to_vec(),
        activations: vec![Activation::Relu, Activation::Relu, Activation::Sigmoid],
    });
    let path = dir.join(scorch_udfs::package::MANIFEST_FILE);
    fs::write(&path, manifest.to_toml()).map_err(io(&path))?;
    Ok(())
}

/// Area under the ROC curve (Mann-Whitney U with average ranks for ties); `None` when the
/// labels hold one class only.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = rank;
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        assert_eq!(auc(&[0.5, 0.6], &[true, true]), None);
    }

    #[test]
    fn training_learns_and_repeats_exactly() {
        let mut rng = Rng(3);
        let rows: Vec<(Vec<f32>, bool)> = (0..4000)
            .map(|_| {
                let row: Vec<f32> = (0..FEATURES.len()).map(|_| rng.normal() as f32).collect();
                let label = row[0] + 0.5 * row[3] > 0.0;
                (row, label)
            })
            .collect();
        let a = train(&rows, 3, 1).expect("trains");
        let b = train(&rows, 3, 1).expect("trains");
        assert_eq!(
            a.layers[0].w, b.layers[0].w,
            "same data and seed, same weights"
        );
        let features: Vec<Vec<f32>> = rows.iter().map(|(r, _)| r.clone()).collect();
        let labels: Vec<bool> = rows.iter().map(|(_, y)| *y).collect();
        let score = auc(&a.predict(&features), &labels).expect("two classes");
        assert!(score > 0.95, "a separable problem is learnt: AUC {score}");
    }
}
